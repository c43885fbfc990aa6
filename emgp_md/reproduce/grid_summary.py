"""Summaries of a data-efficiency grid shared by its reports (:mod:`emgp_md.reproduce.session_report`,
:mod:`emgp_md.reproduce.fair_scratch_report`).

- :func:`recipe_text`: the training recipe of a set of runs, read from each run folder's ``config.json``.
- :func:`init_recipes`: the same per init.
- :func:`labels_saved`: per molecule, the fewest pretrained frames that match scratch at its best.
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
