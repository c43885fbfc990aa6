"""Data efficiency against a fair scratch baseline: new scratch runs beside an earlier session's pretrained ones.

The H200 session's scratch runs (PyTorch's default init) all sat on the zero-force plateau
(``docs/results_data_efficiency.md``). The scratch side was run again with the ``unit_distance``
init (:func:`emgp_md.models.unit_distance_init_`), the same grid recipe and the same optimizer steps
per N. :func:`write_fair_scratch_report` puts those runs (a grid folder) beside the pretrained
statistics of the earlier report's JSON and writes ``<name>.md``/``.json`` and ``figures/<name>.png``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from emgp_md.reproduce.session_report import (
    aggregate_grid,
    budget_text,
    collect_grid,
    data_efficiency_table,
    plateau_note,
    session_facts,
)

Stats = dict[tuple[str, int, str], dict[str, Any]]


def baseline_pretrained(baseline_json: str | Path, molecules: set[str]) -> tuple[Stats, str]:
    """The pretrained statistics of ``molecules`` from an earlier report's JSON, and its budget text.

    Raises
    ------
    ValueError
        When the JSON has no pretrained cell for one of ``molecules``.
    """
    data = json.loads(Path(baseline_json).read_text())
    stats = {
        (s["molecule"], s["n_train"], "pretrained"): {
            k: v for k, v in s.items() if k not in ("molecule", "n_train", "init")
        }
        for s in data["stats"]
        if s["init"] == "pretrained" and s["molecule"] in molecules
    }
    missing = molecules - {m for m, _, _ in stats}
    if missing:
        raise ValueError(f"{baseline_json} has no pretrained runs of {sorted(missing)}: run the grid's pretrained side")
    return stats, data["budget"]


def scratch_recipe(records: list[dict[str, Any]]) -> str:
    """The scratch runs' recipe, read from each run folder's ``config.json`` (one text per distinct recipe,
    naming its molecules when they differ), e.g. ``init unit_distance, lr 0.001 cosine to 1e-06, ...``."""
    texts: dict[str, list[str]] = {}
    for r in records:
        path = Path(r["run"]) / "config.json"
        if not path.exists():
            continue
        c = json.loads(path.read_text())["config"]
        text = (
            f"init `{c['init']}`, Adam lr {c['lr']:g} {c['scheduler']} to {c['min_lr']:g}, loss {c['loss']} "
            f"{c['energy_weight']:g} E + {c['force_weight']:g} F, normalisation {c['normalisation']}"
        )
        if r["molecule"] not in texts.setdefault(text, []):
            texts[text].append(r["molecule"])
    if len(texts) == 1:
        return next(iter(texts))
    return "; ".join(f"{', '.join(sorted(mols))}: {text}" for text, mols in texts.items())


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


def write_fair_scratch_report(
    root: str | Path,
    baseline_json: str | Path,
    report_dir: str | Path,
    zero_force: dict[str, float] | None = None,
    name: str = "results_data_efficiency_fair_scratch",
) -> list[Path]:
    """Write the report of the scratch runs under ``root`` against the pretrained cells of ``baseline_json``.

    Only (molecule, N) cells with a finished scratch run are shown; gains are scratch / pretrained.
    """
    from emgp_md.plots import save_figure
    from emgp_md.plots.reports import plot_data_efficiency

    root, report_dir = Path(root), Path(report_dir)
    records = [r for r in collect_grid(root) if r["init"] == "scratch"]
    scratch = {k: v for k, v in aggregate_grid(records).items() if v["n"]}
    if not scratch:
        raise FileNotFoundError(f"no finished scratch grid runs under {root / 'grid'}")
    cells = {(m, n) for m, n, _ in scratch}
    pretrained, base_budget = baseline_pretrained(baseline_json, {m for m, _ in cells})
    stats = {**{k: v for k, v in pretrained.items() if k[:2] in cells}, **scratch}
    budget = budget_text(records, session_facts(root))
    fig_path = report_dir / "figures" / f"{name}.png"
    fig_path.parent.mkdir(parents=True, exist_ok=True)
    title = (
        "EGNN 7×128: authors' checkpoint (H200 session) vs scratch with the unit_distance init (CPU), "
        f"same steps per N; mean over seeds, bars min–max. Scratch: {scratch_recipe(records)}; {budget}"
    )
    save_figure(plot_data_efficiency(stats, title, zero_force), fig_path)
    seeds = "; ".join(
        f"{mol} {sorted({r['seed'] for r in records if r['finished'] and r['molecule'] == mol})}"
        for mol in sorted({m for m, _ in cells})
    )
    md = [
        "# Data efficiency against a fair scratch baseline (issue #16 item 1)",
        "",
        (
            f"Generated by `workflows/data_efficiency.py --report-only --baseline {baseline_json}` from `{root}`. "
            "Pretrained: the cells of the earlier report (the grid recipe: Adam lr 1e-3 cosine to 1e-6, loss "
            "mse_then_l1 0.2 E + 0.8 F, normalisation force_rms; its budget: "
            f"{base_budget}). Scratch: {scratch_recipe(records)} (MSE for the first 20 % of the steps when "
            "mse_then_l1; best-validation weights; `unit_distance`: the squared-distance input of every layer at "
            "unit variance, zero energy readout, PyTorch's default elsewhere), the same seeds' frames and the "
            "same optimizer "
            f"steps per N. Scratch seeds finished: {seeds}."
        ),
        "",
        f"Scratch budget: {budget}.",
        "",
        (
            "Force MAE kcal/mol/Å, energy MAE kcal/mol on `test_01`; mean ± standard deviation over the "
            "finished seeds; gain = scratch / pretrained."
        ),
        "",
        data_efficiency_table(stats, zero_force),
        "",
        *plateau_note(stats, zero_force or {}),
        "Labels pretraining saves (force MAE, means over the finished seeds; every pretrained N of the baseline):",
        "",
        *labels_saved({**pretrained, **scratch}),  # every pretrained N, also those without a scratch cell
        "",
        f"![data efficiency, fair scratch](figures/{fig_path.name})",
        "",
    ]
    cut = [r["run"] for r in records if not r["finished"]]
    md.append(f"Scratch runs cut by the deadline (not in the means): {len(cut)}" + (":" if cut else "."))
    md += [f"- `{c}`" for c in cut]
    md_path = report_dir / f"{name}.md"
    md_path.write_text("\n".join(md) + "\n")
    json_path = report_dir / f"{name}.json"
    rows = [{"molecule": m, "n_train": n, "init": i, **v} for (m, n, i), v in sorted(stats.items())]
    json_path.write_text(json.dumps({"budget": budget, "baseline": str(baseline_json), "stats": rows}, indent=2))
    return [md_path, json_path, fig_path]
