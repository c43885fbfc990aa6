"""Data-efficiency curves (issue #16 item 1): the authors' checkpoint vs scratch against N.

Runs the ``grid`` of a session config (without its paper-regime runs) with
``workflows/gpu_session.py``'s driver, then writes ``results_data_efficiency.md``/``.json`` and
``figures/data_efficiency.png`` from the run folders. ``--report-only`` only rebuilds the report
(e.g. from the unpacked results of an accelerator session).

Examples (from the repository root)::

    PYTHONPATH=$PWD python workflows/data_efficiency.py workflows/configs/gpu_session.yaml
    PYTHONPATH=$PWD python workflows/data_efficiency.py --report-only --root runs/gpu_session --report-dir docs
    # the scratch side again on CPU with the unit_distance init, against the H200 session's pretrained cells:
    PYTHONPATH=$PWD python workflows/data_efficiency.py workflows/configs/data_efficiency_scratch_cpu.yaml
    PYTHONPATH=$PWD python workflows/data_efficiency.py --report-only --root runs/de_scratch_cpu \
        --baseline docs/results_data_efficiency.json --report-dir docs
    # both inits with the force-weighted loss on CPU (uracil, aspirin), one folder, one report:
    PYTHONPATH=$PWD python workflows/data_efficiency.py --report-only --root runs/de_scratch_cpu_ew001 \
        --report-dir docs --report-name results_data_efficiency_cpu_ew001
    # the same, with an earlier report's cells whose run folders are gone (whole cells, or its seeds beside these):
    PYTHONPATH=$PWD python workflows/data_efficiency.py --report-only --root runs/de_scratch_cpu_ew001 \
        --fill-from docs/results_data_efficiency_cpu_ew001.json --report-dir docs \
        --report-name results_data_efficiency_cpu_ew001_all
    # only some of the root's molecules (here: the two whose whole grid ran in that root):
    PYTHONPATH=$PWD python workflows/data_efficiency.py --report-only --root runs/de_scratch_cpu_ew001 \
        --molecules ethanol malonaldehyde --report-dir docs \
        --report-name results_data_efficiency_cpu_ew001_ethanol_malonaldehyde
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
log = logging.getLogger("data_efficiency")


def zero_force_baseline(data_dir: Path) -> dict[str, float]:
    """Molecule → force MAE (kcal/mol/Å) of predicting F = 0 on its test_01 frames; empty without packs."""
    import numpy as np

    from emgp_md.data.packed import load_packed

    out = {}
    for path in sorted(Path(data_dir).glob("rmd17_*_packed.npz")):
        pack = load_packed(path)
        out[path.name.split("_")[1]] = float(np.abs(pack.test01().forces).mean())
    if not out:
        log.warning("no packed frames in %s: plateau runs are not marked", data_dir)
    return out


def main(argv: list[str] | None = None) -> int:
    from gpu_session import report_parser, session_root

    parser = report_parser(
        __doc__, "packed frames (workflows/pack_gpu_data.py): the zero-force baseline that marks plateau runs"
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        help="an earlier report's results_data_efficiency.json: report this run's scratch cells against its "
        "pretrained ones (results_data_efficiency_fair_scratch.md)",
    )
    parser.add_argument(
        "--report-name",
        help="the report's file name, without extension (default results_data_efficiency, with --baseline "
        "results_data_efficiency_fair_scratch)",
    )
    parser.add_argument(
        "--fill-from",
        type=Path,
        help="an earlier plain report's JSON: for this root's molecules, its cells stand in for cells with no "
        "finished run here (run folders that are gone) or add their seeds to this root's (seeds in both are an "
        "error); the report names them",
    )
    parser.add_argument(
        "--molecules", nargs="+", help="report only these molecules (default: every molecule with runs in the root)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    root = session_root(parser, args, {"paper_regime": {"molecules": []}, "paper_recipe": {"molecules": []}})
    from emgp_md.reproduce.fair_scratch_report import write_fair_scratch_report
    from emgp_md.reproduce.session_report import write_data_efficiency_report

    zero_force = zero_force_baseline(args.data_dir)
    if args.baseline:
        name = args.report_name or "results_data_efficiency_fair_scratch"
        paths = write_fair_scratch_report(root, args.baseline, args.report_dir, zero_force, name=name)
    else:
        name = args.report_name or "results_data_efficiency"
        paths = write_data_efficiency_report(
            root, args.report_dir, zero_force, name=name, fill_from=args.fill_from, molecules=args.molecules
        )
    for path in paths:
        log.info("wrote %s", path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
