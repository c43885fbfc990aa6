"""Reports of a GPU session, rebuilt from its run folders (:mod:`emgp_md.reproduce.gpu_session`).

- :func:`write_data_efficiency_report`: ``results_data_efficiency.md`` (molecule × N × init, mean ± std
  of the ``test_01`` force and energy MAE over the finished seeds, the gain scratch / pretrained per N)
  and ``figures/data_efficiency.png`` (log-log force MAE against N, both inits, min–max bars over seeds,
  budgets in the title).

The paper-regime report is :mod:`emgp_md.reproduce.paper_regime_report`.

Only runs with ``finished: true`` enter the means; cut runs are counted and listed.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from emgp_md.reproduce.grid_summary import (
    data_efficiency_table,
    fill_cells,
    init_recipes,
    labels_saved,
    plateau_note,
)

log = logging.getLogger(__name__)


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


def collect_grid(root: str | Path) -> list[dict[str, Any]]:
    """One record per grid run folder with a ``metrics.json``: molecule, N, init, seed, metrics."""
    root = Path(root)
    records = []
    for m in sorted((root / "grid").glob("*/N*/*/seed*/metrics.json")):
        mol, n, init, seed = m.parent.relative_to(root / "grid").parts
        r = read_json(m)
        records.append(
            {
                "molecule": mol,
                "n_train": int(n[1:]),
                "init": init,
                "seed": int(seed[4:]),
                "finished": bool(r.get("finished")),
                "steps": r.get("steps"),
                "max_steps": r.get("max_steps"),
                "batch_size": r.get("batch_size"),
                "n_val": r.get("n_val"),
                "train_wall_s": r.get("train_wall_s"),
                "device": r.get("device"),
                "test": r.get("test"),
                "val": r.get("val"),
                "run": str(m.parent),
            }
        )
    return records


def aggregate_grid(records: list[dict[str, Any]]) -> dict[tuple[str, int, str], dict[str, Any]]:
    """(molecule, N, init) → statistics over the finished seeds of the test_01 MAEs (kcal/mol(/Å))."""
    groups: dict[tuple[str, int, str], list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault((r["molecule"], r["n_train"], r["init"]), []).append(r)
    stats = {}
    for key, runs in sorted(groups.items()):
        done = [r for r in runs if r["finished"] and r["test"]]
        f = np.array([r["test"]["force_mae_kcal_mol_A"] for r in done])
        e = np.array([r["test"]["energy_mae_kcal_mol"] for r in done])
        stats[key] = {
            "n": len(done),
            "n_cut": len(runs) - len(done),
            "seeds": sorted(r["seed"] for r in done),
            "cut_seeds": sorted(r["seed"] for r in runs if r not in done),
            "force_mean": float(f.mean()) if len(f) else float("nan"),
            "force_std": float(f.std(ddof=1)) if len(f) > 1 else 0.0,
            "force_min": float(f.min()) if len(f) else float("nan"),
            "force_max": float(f.max()) if len(f) else float("nan"),
            "energy_mean": float(e.mean()) if len(e) else float("nan"),
            "energy_std": float(e.std(ddof=1)) if len(e) > 1 else 0.0,
            "steps": sorted({r["steps"] for r in done}),
            "train_wall_s": float(np.mean([r["train_wall_s"] for r in done])) if done else float("nan"),
        }
    return stats


def budget_text(records: list[dict[str, Any]], session: dict[str, Any]) -> str:
    steps: dict[int, set[int]] = {}
    for r in records:
        if r["max_steps"]:
            steps.setdefault(r["n_train"], set()).add(r["max_steps"])
    step_text = ", ".join(f"N={n}: {'/'.join(map(str, sorted(s)))}" for n, s in sorted(steps.items()))
    batches = sorted({r["batch_size"] for r in records if r["batch_size"]})
    devices = sorted({r["device"] for r in records if r["device"]})
    walls = [r["train_wall_s"] for r in records if r["train_wall_s"]]
    extra = ""
    if session:
        extra = (
            f"; session: {session.get('workers', '?')} workers on one device, MPS {session.get('mps')}, "
            f"grid step scale {session.get('step_scale', float('nan')):.2f}"
        )
    return (
        f"optimizer steps per run: {step_text}; batch {batches} (capped at N); device {', '.join(devices)}; "
        f"training wall per run {min(walls, default=0):.0f}-{max(walls, default=0):.0f} s{extra}"
    )


def session_facts(root: Path) -> dict[str, Any]:
    gos = sorted(root.glob("go_*.json"))
    if not gos:
        return {}
    go = read_json(gos[-1])
    return {
        "mps": go.get("mps"),
        "step_scale": go.get("step_scale"),
        "workers": len(go.get("bench", [])),
        "median_step_ms": 1000 * go.get("median_step_s", float("nan")),
    }


def write_data_efficiency_report(
    root: str | Path,
    report_dir: str | Path,
    zero_force: dict[str, float] | None = None,
    name: str = "results_data_efficiency",
    fill_from: str | Path | None = None,
    molecules: list[str] | None = None,
) -> list[Path]:
    """Write ``<name>.md``/``.json`` and a figure (``figures/data_efficiency.png`` for the default name,
    else ``figures/<name>.png``) from ``root``.

    ``fill_from``: an earlier report's JSON whose cells, for ``root``'s molecules, stand in for cells with
    no finished run under ``root`` or add their seeds to this root's
    (:func:`~emgp_md.reproduce.grid_summary.fill_cells`); the report names them, with that report's budget.
    The JSON lists every run of ``root`` (``runs``: seed, steps, wall, test/validation MAEs) as an archive.
    ``molecules``: report only these (default: every molecule with runs under ``root``); naming one
    without runs there is an error.

    ``zero_force``: molecule → force MAE of predicting zero forces on ``test_01`` (kcal/mol/Å), to mark
    runs that never left the zero-force plateau. The recipe of each init is read from its runs'
    ``config.json`` (:func:`emgp_md.reproduce.grid_summary.recipe_text`).
    """
    zero_force = zero_force or {}
    from emgp_md.plots import save_figure
    from emgp_md.plots.reports import plot_data_efficiency

    root, report_dir = Path(root), Path(report_dir)
    records = collect_grid(root)
    if molecules:
        missing = sorted(set(molecules) - {r["molecule"] for r in records})
        if missing:
            raise ValueError(f"no grid runs for {', '.join(missing)} under {root / 'grid'}: drop them from molecules")
        records = [r for r in records if r["molecule"] in molecules]
    if not records:
        raise FileNotFoundError(f"no grid runs with metrics under {root / 'grid'}")
    stats = aggregate_grid(records)
    filled, fill_lines, fill_facts = fill_cells(stats, fill_from) if fill_from else ({}, [], {})
    stats = {**stats, **filled}
    session = session_facts(root)
    budget = budget_text(records, session)
    recipes = init_recipes(records)
    same = _same_recipe(records, fill_facts)
    title = (
        f"EGNN 7×128 from the authors' 3D-EMGP checkpoint vs from scratch, {_RECIPE_WORD[same]}, "
        f"same steps per N; mean over seeds, bars min–max. {budget}"
        + (
            f". Cells or seeds from {Path(fill_from).name}: {fill_facts.get('budget', 'budget as that report states')}"
            if filled
            else ""
        )
    )
    figure = "data_efficiency" if name == "results_data_efficiency" else name
    fig_path = report_dir / "figures" / f"{figure}.png"
    fig_path.parent.mkdir(parents=True, exist_ok=True)
    save_figure(plot_data_efficiency(stats, title, zero_force), fig_path)
    cut = [r["run"] for r in records if not r["finished"]]
    md = [
        "# Data efficiency: the authors' checkpoint vs scratch (issue #16 item 1)",
        "",
        (
            f"Generated by `workflows/data_efficiency.py --report-only` from `{root}`. EGNN 7 × 128, rMD17, "
            f"test on `test_01` (1,000 frames). For each seed, a permutation of `train_01` gives "
            f"{'/'.join(str(v) for v in sorted({r['n_val'] for r in records if r['n_val']}))} validation "
            "frames and the next N training frames (nested over N, the same frames for both inits). "
            + ("One recipe for both inits" if same else "Recipes")
            + " (from each run's `config.json`): "
            + "; ".join(f"{i}: {text}" for i, text in recipes.items())
            + " (MSE for the first 20 % of the steps when mse_then_l1), best-validation weights tested."
        ),
        "",
        f"Budgets: {budget}.",
        "",
        *_fill_note(fill_lines, fill_facts),
        (
            "Force MAE kcal/mol/Å, energy MAE kcal/mol, mean ± standard deviation over the finished seeds; "
            "gain = scratch / pretrained (> 1: the checkpoint helps)."
        ),
        "",
        data_efficiency_table(stats, zero_force),
        "",
        *plateau_note(stats, zero_force),
        "Labels pretraining saves (force MAE, means over the finished seeds):",
        "",
        *labels_saved(stats),
        "",
        f"![data efficiency](figures/{fig_path.name})",
        "",
        f"Runs cut by the session deadline (not in the means): {len(cut)}" + (":" if cut else "."),
    ]
    md += [f"- `{c}`" for c in cut]
    md_path = report_dir / f"{name}.md"
    md_path.write_text("\n".join(md) + "\n")
    json_path = report_dir / f"{name}.json"
    json_path.write_text(
        json.dumps(
            {
                "budget": budget,
                "session": session,
                "zero_force_mae": zero_force,
                "recipes": recipes,
                "filled_from": {"cells": fill_lines, **fill_facts} if fill_lines else None,
                "stats": [{"molecule": m, "n_train": n, "init": i, **v} for (m, n, i), v in sorted(stats.items())],
                "runs": [_run_entry(r) for r in records],
            },
            indent=2,
        )
    )
    return [md_path, json_path, fig_path]


_RECIPE_WORD = {True: "same recipe", False: "own recipe", None: "recipes as the report states"}


def _run_entry(record: dict[str, Any]) -> dict[str, Any]:
    """One run of the report's JSON: what it was and its test/validation MAEs (no local path)."""
    keep = ("molecule", "n_train", "init", "seed", "finished", "steps", "max_steps", "batch_size", "n_val")
    return {
        **{k: record[k] for k in keep},
        "train_wall_s": record["train_wall_s"],
        "device": record["device"],
        "test": record["test"],
        "val": record["val"],
    }


def _same_recipe(records: list[dict[str, Any]], fill_facts: dict[str, Any]) -> bool | None:
    """Whether every run and every filled cell had one recipe; None when filled cells' recipes are unrecorded."""
    texts = set(init_recipes(records, with_init=False).values())
    if fill_facts.get("inits"):
        if not fill_facts.get("recipes"):
            return None
        texts |= {t.split(", ", 1)[-1] for t in fill_facts["recipes"].values()}
    if "not recorded" in texts:
        return None
    return len(texts) == 1


def _fill_note(lines: list[str], facts: dict[str, Any]) -> list[str]:
    """The paragraph naming the cells taken from an earlier report's JSON (empty without any)."""
    if not lines:
        return []
    inits = set(facts["inits"])
    recipes = {i: t for i, t in (facts.get("recipes") or {}).items() if i in inits}
    recipe = (
        "; ".join(f"{i}: {t}" for i, t in recipes.items())
        if recipes
        else f"not recorded in that JSON (see `{Path(facts['path']).with_suffix('.md')}`)"
    )
    return [
        (
            f"**Cells from an earlier report** (`{facts['path']}`; their run folders are not under this root, "
            "so their seeds enter as that report's mean and spread, merged exactly with this root's seeds "
            f"where both have some): {'; '.join(lines)}. Their recipe: {recipe}. Their budget: {facts['budget']}."
        ),
        "",
    ]
