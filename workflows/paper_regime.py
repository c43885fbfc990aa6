"""Paper-regime fine-tuning (issue #16 items 2, 5): the authors' checkpoint on ~8,600 frames per molecule.

Runs the ``paper_regime`` and ``paper_recipe`` runs of a session config (without its grid) with
``workflows/gpu_session.py``'s driver, then writes ``results_paper_regime.md``. ``--report-only``
only rebuilds the report from the run folders (e.g. unpacked results of an accelerator session);
``--add-root`` adds the runs of further session folders (one run per molecule and kind in all).
A run's decision is written into its folder (``ship_decision.json``) and reused by later reports,
so a report rebuilt after shipping still compares against the default it replaced.

``--ship`` makes a paper-regime model the package's default for its molecule when it beats the
current default **on validation**: both are evaluated on the new run's validation frames (drawn
outside ``train_01`` and ``test_01``, so neither model trained on them); ``test_01`` is never used to
choose. The frames come from the packs of ``--data-dir`` (``workflows/pack_gpu_data.py``).

Examples (from the repository root)::

    PYTHONPATH=$PWD python workflows/paper_regime.py workflows/configs/gpu_session.yaml
    PYTHONPATH=$PWD python workflows/paper_regime.py --report-only --root runs/gpu_session --ship --readme README.md
    # one report (and figure) of the CPU runs of several session folders:
    PYTHONPATH=$PWD python workflows/paper_regime.py --report-only --root runs/paper_regime_cpu_ew001 \
        --add-root runs/paper_regime_cpu_ew001_ethanol --add-root runs/paper_regime_cpu_ew001_uracil \
        --report-dir docs --report-name results_paper_regime_cpu_ew001
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
log = logging.getLogger("paper_regime")
#: Written into a paper-regime run folder by ``--ship``: the decision stands for later reports.
DECISION_FILE = "ship_decision.json"


def ship_if_better(root: Path, data_dir: Path, dest: Path) -> list[dict[str, Any]]:
    """Validation comparison and shipping of every finished paper-regime run under ``root``."""
    from emgp_md.atomic import atomic_write_json
    from emgp_md.data.packed import load_packed, pack_path
    from emgp_md.reproduce.shipping import ship_checkpoint, validation_comparison

    index_path = dest / "index.json"
    index = json.loads(index_path.read_text()) if index_path.exists() else {}  # before this root's shipping
    decisions = []
    for run in sorted((root / "paper_regime").glob("*/model.pt")):
        mol = run.parent.name
        recorded = run.parent / DECISION_FILE
        if recorded.exists():  # decided before: asking again would compare the run with itself once shipped
            decision = json.loads(recorded.read_text())
            log.info("%s: decided on %s (%s), not compared again", mol, decision.get("decided"), recorded)
            decisions.append(decision)
            continue
        metrics = json.loads((run.parent / "metrics.json").read_text())
        split = json.loads((run.parent / "split.json").read_text())
        pack = load_packed(pack_path(data_dir, mol))
        rows = np.searchsorted(pack.old_indices, np.asarray(split["val_old_indices"]))
        if not np.array_equal(pack.old_indices[rows], split["val_old_indices"]):
            raise ValueError(f"{data_dir}: pack of {mol} lacks some validation frames of {run.parent}")
        frames = pack.frames(rows, "paper-regime validation")
        old = dest / f"{mol}.pt"
        new_val, old_val = (
            validation_comparison(run, old, frames)
            if old.exists()
            else (validation_comparison(run, run, frames)[0], {"force_mae_kcal_mol_A": float("inf")})
        )
        better = new_val["force_mae_kcal_mol_A"] < old_val["force_mae_kcal_mol_A"]
        decision = {
            "molecule": mol,
            "new_val_force": new_val["force_mae_kcal_mol_A"],
            "old_val_force": old_val["force_mae_kcal_mol_A"],
            "old_test_force": ((index.get(mol) or {}).get("test") or {}).get("force_mae_kcal_mol_A"),
            "shipped": better,
            "finished": metrics.get("finished"),
            "decided": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        }
        if better:
            training = (
                f"fine-tuned {metrics['steps']} steps ({metrics['epochs']:.0f} epochs, "
                f"{metrics['train_wall_s']:.0f} s on {metrics['device']}) on {metrics['n_train']} rMD17 "
                f"frames outside `test_01`"
            )
            ship_checkpoint(run, mol, training, dest)
        atomic_write_json(recorded, decision)
        log.info(
            "%s: new val F %.4f vs shipped %.4f -> %s",
            mol,
            decision["new_val_force"],
            decision["old_val_force"],
            "shipped" if better else "kept the current default",
        )
        decisions.append(decision)
    return decisions


def main(argv: list[str] | None = None) -> int:
    from gpu_session import report_parser, session_root

    parser = report_parser(__doc__, "packs (for the validation frames)")
    parser.add_argument("--ship", action="store_true", help="ship paper-regime models that win on validation")
    parser.add_argument("--dest", type=Path, help="package-data folder (default: emgp_md/pretrained)")
    parser.add_argument("--readme", type=Path, help="with --ship: rewrite the shipped-models table of this README")
    parser.add_argument(
        "--report-name", default="results_paper_regime", help="the report's file name, without extension"
    )
    parser.add_argument(
        "--add-root",
        type=Path,
        action="append",
        default=[],
        help="another session folder whose long runs join the report (and --ship); repeatable",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    root = session_root(parser, args, {"grid": {"molecules": []}})
    from emgp_md.reproduce.md17_report import SCHNET_F
    from emgp_md.reproduce.paper_regime_report import write_paper_regime_report
    from emgp_md.reproduce.shipping import PACKAGE_DATA, models_table, update_readme

    dest = args.dest or PACKAGE_DATA
    index_path = dest / "index.json"
    shipped_before = json.loads(index_path.read_text()) if index_path.exists() else {}
    roots = [root, *args.add_root]
    decisions = [d for r in roots for d in ship_if_better(r, args.data_dir, dest)] if args.ship else None
    log.info(
        "wrote %s", write_paper_regime_report(roots, args.report_dir, shipped_before, decisions, name=args.report_name)
    )
    if (
        args.ship
        and args.readme
        and update_readme(args.readme, models_table(json.loads(index_path.read_text()), SCHNET_F))
    ):
        log.info("updated the shipped-models table of %s", args.readme)
    return 0


if __name__ == "__main__":
    sys.exit(main())
