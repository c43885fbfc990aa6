"""One table and one figure over finished ``emgp-md learn`` runs (issue #15 item 6): labels to a
stable model, cost, test errors and the same labels from scratch.

Reads, for every ``NAME_learn.json`` in FOLDER, the ``NAME_scratch_comparison.json`` (same epochs)
and ``NAME_scratch_comparison_600ep.json`` (10× the epochs) beside it, i.e. the files
``learn.json`` / ``scratch_comparison*.json`` of each run folder copied under one name. Writes
``FOLDER/summary.md`` and ``FOLDER/summary.png``.

Example (from the repository root)::

    PYTHONPATH=$PWD python workflows/learn_summary.py docs/figures/learn
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger("learn_summary")


def _n_atoms(smiles: str) -> int | None:
    try:
        from rdkit import Chem
    except ImportError:
        return None
    mol = Chem.MolFromSmiles(smiles)
    return None if mol is None else Chem.AddHs(mol).GetNumAtoms()


def _load(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def summary_rows(folder: Path) -> list[dict[str, Any]]:
    """One dict per ``*_learn.json`` in ``folder`` (sorted by name)."""
    rows = []
    for learn_path in sorted(folder.glob("*_learn.json")):
        name = learn_path.name.removesuffix("_learn.json")
        learn = json.loads(learn_path.read_text())
        same = _load(folder / f"{name}_scratch_comparison.json")
        long = _load(folder / f"{name}_scratch_comparison_600ep.json")
        smiles = (same or {}).get("input", "")
        rows.append(
            {
                "name": name,
                "smiles": smiles,
                "n_atoms": _n_atoms(smiles) if smiles else None,
                "status": learn["status"],
                "labels": learn["n_labels"],
                "stable_ps": learn.get("stability", {}).get("stable_time_ps"),
                "pretrained": learn["test"]["force_mae_meV_A"],
                "pretrained_energy": learn["test"]["energy_mae_meV"],
                "scratch": same["scratch"]["force_mae_meV_A"] if same else None,
                "scratch_energy": same["scratch"]["energy_mae_meV"] if same else None,
                "scratch_10x": long["scratch"]["force_mae_meV_A"] if long else None,
                "zero_force": same.get("zero_force_mae_meV_A") if same else None,
                "wall_s": learn.get("wall_s"),
            }
        )
    return rows


def _fmt(value: Any, spec: str = ".1f") -> str:
    return "–" if value is None else format(value, spec)


def summary_table(rows: list[dict[str, Any]]) -> str:
    """Markdown table of :func:`summary_rows`."""
    head = (
        "| run | SMILES | atoms | labels | status | stable at 500 K (ps) | test F MAE (meV/Å) | test E MAE (meV) "
        "| scratch, same epochs F / E | scratch, 10× epochs F | F = 0 baseline | wall (s, last invocation) |"
    )
    lines = [head, "|" + "---|" * 12]
    for r in rows:
        lines.append(
            f"| {r['name']} | `{r['smiles']}` | {_fmt(r['n_atoms'], 'd')} | {r['labels']} | {r['status']} "
            f"| {_fmt(r['stable_ps'])} | {_fmt(r['pretrained'])} | {_fmt(r['pretrained_energy'])} "
            f"| {_fmt(r['scratch'])} / {_fmt(r['scratch_energy'])} | {_fmt(r['scratch_10x'])} "
            f"| {_fmt(r['zero_force'])} | {_fmt(r['wall_s'], '.0f')} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="folder of NAME_learn.json and NAME_scratch_comparison*.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from emgp_md.atomic import atomic_write_text
    from emgp_md.plots.reports import plot_learn_vs_scratch

    rows = summary_rows(args.folder)
    if not rows:
        raise SystemExit(f"no *_learn.json in {args.folder}")
    table = summary_table(rows)
    atomic_write_text(args.folder / "summary.md", table + "\n")
    fig = plot_learn_vs_scratch(
        [{**r, "name": f"{r['name']}\n{_fmt(r['n_atoms'], 'd')} atoms, {r['labels']} labels"} for r in rows],
        "emgp-md learn: test force MAE on 50 held-out frames of each run's level of theory; "
        "same labels, EGNN 7 × 128, from the authors' checkpoint vs from scratch",
    )
    fig.savefig(args.folder / "summary.png", dpi=120)
    log.info("wrote %s and %s", args.folder / "summary.md", args.folder / "summary.png")
    print(table)


if __name__ == "__main__":
    main()
