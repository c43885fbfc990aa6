"""Reproduce the MD17 tables: every pretraining and fine-tuning run of a campaign, then the report.

Resumable: finished runs are skipped and interrupted ones resumed, so rerunning the same command
after a stop continues where it left off. ``--report-only`` rebuilds tables and figure from the runs.

Examples::

    python workflows/reproduce_md17.py workflows/configs/reproduce_md17.yaml
    python workflows/reproduce_md17.py workflows/configs/reproduce_md17.yaml --only official
    python workflows/reproduce_md17.py workflows/configs/reproduce_md17.yaml --report-only
    python workflows/reproduce_md17.py workflows/configs/reproduce_md17.yaml --report-only --ship official ours
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from emgp_md.training.campaign import load_campaign, run_and_list_failures

log = logging.getLogger("reproduce_md17")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="campaign YAML (workflows/configs/reproduce_md17.yaml)")
    parser.add_argument("--only", nargs="+", help="run only these run names")
    parser.add_argument("--jobs", type=int, help="processes side by side (default: the config's)")
    parser.add_argument("--dry-run", action="store_true", help="list what would run")
    parser.add_argument("--report-only", action="store_true", help="only rebuild the tables and figure")
    parser.add_argument("--report-dir", default="docs", help="where results_md17.md/.json and the figure go")
    parser.add_argument("--ship", nargs="*", metavar="SPEC",
                        help="ship the best run per molecule (lowest validation force MAE) among these pretrained "
                        "specs (default: official ours) as the package's default models")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = load_campaign(args.config)
    if args.jobs:
        cfg.jobs = args.jobs
    failed = [] if args.report_only else run_and_list_failures(cfg, args.dry_run, args.only)
    if not args.dry_run:
        from emgp_md.training.md17_report import write_report

        for path in write_report(cfg, args.report_dir):
            log.info("wrote %s", path)
    if args.ship is not None and not args.dry_run:
        from emgp_md.training.md17_report import collect
        from emgp_md.training.shipping import select_best, ship

        for mol, run in select_best(collect(cfg), args.ship or ["official", "ours"]).items():
            entry = ship(Path(run), mol)
            log.info("shipped %s from %s: test force MAE %.3f kcal/mol/Å", mol, run,
                     entry["test"]["force_mae_kcal_mol_A"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
