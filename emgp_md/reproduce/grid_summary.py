"""Summaries of a data-efficiency grid shared by its reports (:mod:`emgp_md.reproduce.session_report`,
:mod:`emgp_md.reproduce.fair_scratch_report`).

- :func:`recipe_text`: the training recipe of a set of runs, read from each run folder's ``config.json``.
- :func:`init_recipes`: the same per init.
- :func:`labels_saved`: per molecule, the fewest pretrained frames that match scratch at its best.
- :func:`data_efficiency_table`, :func:`plateau_note`: the table of both inits per (molecule, N) and
  the note on runs that never left the zero-force plateau (:func:`on_plateau`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

Stats = dict[tuple[str, int, str], dict[str, Any]]


def run_recipe(run: str | Path, with_init: bool = True) -> str | None:
    """One run's recipe from its ``config.json`` (None without one), e.g. ``init `unit_distance`, Adam lr
    0.001 cosine to 1e-06, loss mse_then_l1 0.01 E + 0.99 F, normalisation force_rms``."""
    path = Path(run) / "config.json"
    if not path.exists():
        return None
    c = json.loads(path.read_text())["config"]
    text = (
        f"Adam lr {c['lr']:g} {c['scheduler']} to {c['min_lr']:g}, loss {c['loss']} "
        f"{c['energy_weight']:g} E + {c['force_weight']:g} F, normalisation {c['normalisation']}"
    )
    if not with_init:
        return text
    init = "the authors' checkpoint" if c.get("pretrained") else f"`{c['init']}`"
    return f"init {init}, {text}"


def recipe_text(records: list[dict[str, Any]], with_init: bool = True) -> str:
    """The runs' recipe (:func:`run_recipe`), one text per distinct recipe, naming its molecules when
    they differ; empty when no run has a ``config.json``."""
    texts: dict[str, list[str]] = {}
    for r in records:
        text = run_recipe(r["run"], with_init)
        if text is not None and r["molecule"] not in texts.setdefault(text, []):
            texts[text].append(r["molecule"])
    if len(texts) <= 1:
        return next(iter(texts), "")
    return "; ".join(f"{', '.join(sorted(mols))}: {text}" for text, mols in texts.items())


def init_recipes(records: list[dict[str, Any]], with_init: bool = True) -> dict[str, str]:
    """Init → its runs' recipe text ("not recorded" when no run of it has a ``config.json``), pretrained first."""
    inits = sorted({r["init"] for r in records}, key=lambda i: (i != "pretrained", i))
    return {i: recipe_text([r for r in records if r["init"] == i], with_init) or "not recorded" for i in inits}


def labels_saved(stats: Stats) -> list[str]:
    """Per molecule, the fewest pretrained frames whose mean force MAE is at least as good as the best
    scratch mean at any N, as Markdown bullet lines ("pretrained with 25 frames ≤ scratch with 950"),
    each naming how many scratch seeds that best mean has."""
    lines = []
    for mol in sorted({m for m, _, _ in stats}):
        scr = {n: v["force_mean"] for (m, n, i), v in stats.items() if m == mol and i == "scratch" and v.get("n")}
        pre = {n: v["force_mean"] for (m, n, i), v in stats.items() if m == mol and i == "pretrained" and v.get("n")}
        if not scr or not pre:
            continue
        n_best = min(scr, key=scr.get)
        good = sorted(n for n, f in pre.items() if f <= scr[n_best])
        k = stats[(mol, n_best, "scratch")]["n"]
        seeds = f"{k} scratch seed{'s' if k != 1 else ''}"
        if good:
            lines.append(
                f"- {mol}: pretrained with **{good[0]}** frames ({pre[good[0]]:.2f}) is at least as good as "
                f"scratch's best mean, with {n_best} frames ({scr[n_best]:.2f} kcal/mol/Å, {seeds}): "
                f"{'≥ ' if good[0] == min(pre) else ''}{n_best / good[0]:.3g}× fewer labels at these step budgets"
                + (" (the smallest N run)." if good[0] == min(pre) else ".")
            )
        else:
            lines.append(
                f"- {mol}: no pretrained cell reaches scratch's best mean ({scr[n_best]:.2f} at N={n_best}, {seeds})."
            )
    return lines


PLATEAU_FRACTION = 0.95


def on_plateau(force_mae: float, zero_force_mae: float | None) -> bool:
    """A model whose force MAE is within 5 % of predicting zero forces has not learnt forces (the plateau)."""
    return zero_force_mae is not None and force_mae >= PLATEAU_FRACTION * zero_force_mae


def _is_flat(x: dict[str, Any] | None, zero_force_mae: float | None) -> bool:
    return bool(x and x["n"] and on_plateau(x["force_mean"], zero_force_mae))


def _cell(x: dict[str, Any] | None, kind: str, flat: bool) -> str:
    """``mean ± std`` of ``kind`` ("force" or "energy"), "(plateau)" after a flat force cell."""
    if not x or not x["n"]:
        return "–"
    text = f"{x[kind + '_mean']:.3f} ± {x[kind + '_std']:.3f}"
    return text + " (plateau)" if kind == "force" and flat else text


def _gain(p: dict[str, Any] | None, s: dict[str, Any] | None, kind: str, bracket: bool) -> str:
    """Scratch / pretrained mean of ``kind``, in brackets where a plateau makes it unfair."""
    if not (p and s and p["n"] and s["n"]):
        return "–"
    text = f"{s[kind + '_mean'] / p[kind + '_mean']:.2f}×"
    return f"({text})" if bracket else text


def data_efficiency_table(stats: Stats, zero_force: dict[str, float] | None = None) -> str:
    """Markdown table: one row per (molecule, N), both inits, gain = scratch / pretrained force MAE.

    ``zero_force`` (molecule → MAE of predicting F = 0 on the test frames, kcal/mol/Å) marks runs on
    the zero-force plateau; their gains are not a measure of pretraining and are shown in brackets.
    """
    zero_force = zero_force or {}
    lines = [
        "| molecule | N | pretrained F | scratch F | gain (F) | pretrained E | scratch E | gain (E) | seeds (pre/scr) | steps |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    cells = sorted({(m, n) for m, n, _ in stats})
    for mol, n in cells:
        p, s = stats.get((mol, n, "pretrained")), stats.get((mol, n, "scratch"))

        fp, fs = _is_flat(p, zero_force.get(mol)), _is_flat(s, zero_force.get(mol))
        seeds = f"{p['n'] if p else 0}/{s['n'] if s else 0}"
        cut = (p["n_cut"] if p else 0) + (s["n_cut"] if s else 0)
        if cut:
            seeds += f" ({cut} cut)"
        steps = sorted(set((p or {}).get("steps", [])) | set((s or {}).get("steps", [])))
        lines.append(
            f"| {mol} | {n} | {_cell(p, 'force', fp)} | {_cell(s, 'force', fs)} | "
            f"{_gain(p, s, 'force', fp or fs)} | {_cell(p, 'energy', fp)} | {_cell(s, 'energy', fs)} | "
            f"{_gain(p, s, 'energy', fp or fs)} | {seeds} | {'/'.join(map(str, steps)) or '–'} |"
        )
    return "\n".join(lines)


def plateau_note(stats: Stats, zero_force: dict[str, float]) -> list[str]:
    """A paragraph saying which cells sat on the zero-force plateau (their gains are not fair)."""
    if not zero_force:
        return ["(Zero-force baseline not given: plateau runs are not marked.)", ""]
    base = ", ".join(f"{m} {v:.2f}" for m, v in sorted(zero_force.items()))
    flat = sorted(
        {(m, i) for (m, n, i), v in stats.items() if v["n"] and on_plateau(v["force_mean"], zero_force.get(m))}
    )
    if not flat:
        return [f"No run sat on the zero-force plateau (force MAE of predicting F = 0: {base} kcal/mol/Å).", ""]
    listing = ", ".join(f"{m} {i}" for m, i in flat)
    return [
        (
            f"**Not a fair comparison where marked (plateau):** these runs ended within "
            f"{100 * (1 - PLATEAU_FRACTION):.0f} % of the force MAE of predicting zero forces ({base} kcal/mol/Å), "
            f"i.e. they never learnt forces: {listing}. Their gains (in brackets) measure the recipe's failure "
            "to leave the zero-force plateau from scratch at this step budget, not what pretraining saves."
        ),
        "",
    ]


def merge_seeds(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """One cell's statistics over the seeds of two disjoint cells (an earlier report's and this root's).

    Exact for the mean, the sample standard deviation (ddof = 1), min and max: each cell's sum and sum of
    squares follow from its n, mean and standard deviation. ``steps`` is the union; ``train_wall_s`` the
    mean over all seeds; ``n_cut`` counts this root's cut seeds that the earlier report does not cover.

    Raises
    ------
    ValueError
        When the two cells share a seed (the earlier mean cannot be split).
    """
    both = set(old["seeds"]) & set(new["seeds"])
    if both:
        raise ValueError(
            f"seeds {sorted(both)} are in both the earlier report and this root: their mean cannot be split; "
            "report this root without --fill-from, or run the other seeds into it"
        )
    n = old["n"] + new["n"]
    out: dict[str, Any] = {"n": n, "seeds": sorted(old["seeds"] + new["seeds"])}
    for kind in ("force", "energy"):
        m1, m2 = old[f"{kind}_mean"], new[f"{kind}_mean"]
        s1, s2 = old[f"{kind}_std"], new[f"{kind}_std"]
        mean = (old["n"] * m1 + new["n"] * m2) / n
        squares = (old["n"] - 1) * s1**2 + old["n"] * m1**2 + (new["n"] - 1) * s2**2 + new["n"] * m2**2
        out[f"{kind}_mean"] = mean
        out[f"{kind}_std"] = max(squares - n * mean**2, 0.0) ** 0.5 / (n - 1) ** 0.5 if n > 1 else 0.0
    out["force_min"] = min(old["force_min"], new["force_min"])
    out["force_max"] = max(old["force_max"], new["force_max"])
    out["steps"] = sorted(set(old.get("steps", [])) | set(new.get("steps", [])))
    out["train_wall_s"] = (old["n"] * old["train_wall_s"] + new["n"] * new["train_wall_s"]) / n
    out["n_cut"] = len(set(new.get("cut_seeds", [])) - set(old["seeds"]))
    out["cut_seeds"] = sorted(set(new.get("cut_seeds", [])) - set(old["seeds"]))
    return out


def fill_cells(stats: Stats, baseline_json: str | Path) -> tuple[Stats, list[str], dict[str, Any]]:
    """The cells of an earlier report's JSON, for the molecules ``stats`` has, that stand in for or
    complete this root's: run folders that are gone still count, named as such.

    A cell with no finished run here is taken whole; a cell with finished runs here takes the earlier
    report's seeds beside them (:func:`merge_seeds`; some shared seeds are an error); a cell here with
    every seed of the earlier one stands as it is.

    Returns the replaced cells, one line per (molecule, init) naming what came from where, and the
    baseline's facts (``path``, ``budget``, ``inits`` and, where that report recorded them, ``recipes``).

    Raises
    ------
    ValueError
        When the JSON has no ``stats`` list (not a data-efficiency report), or a cell shares seeds.
    """
    data = json.loads(Path(baseline_json).read_text())
    if not isinstance(data.get("stats"), list):
        raise ValueError(f"{baseline_json} is not a data-efficiency report's JSON (no 'stats' list)")
    molecules = {m for m, _, _ in stats}
    added: Stats = {}
    parts: dict[tuple[str, str], list[str]] = {}
    for s in data["stats"]:
        key = (s["molecule"], s["n_train"], s["init"])
        if s["molecule"] not in molecules or not s.get("n"):
            continue
        old = {k: v for k, v in s.items() if k not in ("molecule", "n_train", "init")}
        here = stats.get(key)
        if here and set(old["seeds"]) <= set(here["seeds"]):
            continue  # this root has every seed the earlier report had: its own runs stand
        if here and here.get("n"):
            try:
                added[key] = merge_seeds(old, here)
            except ValueError as err:
                raise ValueError(f"{s['molecule']} N={s['n_train']} {s['init']}: {err}") from None
            text = f"N={key[1]} seeds {_seeds(old['seeds'])} there + {_seeds(here['seeds'])} here"
        else:
            added[key] = old
            text = f"N={key[1]}"
        parts.setdefault((key[0], key[2]), []).append(text)
    lines = [f"{m} {i}: " + ", ".join(t) for (m, i), t in sorted(parts.items())]
    facts = {
        "path": str(baseline_json),
        "budget": data.get("budget", "not recorded"),
        "recipes": data.get("recipes"),
        "inits": sorted({i for _, i in parts}),
    }
    return added, lines, facts


def _seeds(seeds: list[int]) -> str:
    return ",".join(str(s) for s in seeds)
