"""Reproduce the MD17 tables: every pretraining and fine-tuning run of a campaign, then the report.

Resumable: finished runs are skipped and interrupted ones resumed, so rerunning the same command
after a stop continues where it left off. ``--report-only`` rebuilds tables and figure from the runs.

Examples::

    python workflows/reproduce_md17.py workflows/configs/reproduce_md17.yaml
    python workflows/reproduce_md17.py workflows/configs/reproduce_md17.yaml --only official
    python workflows/reproduce_md17.py workflows/configs/reproduce_md17.yaml --report-only
    python workflows/reproduce_md17.py workflows/configs/reproduce_md17.yaml --report-only --ship official ours \
        --readme README.md

``--ship`` copies the lowest-validation run per molecule into the package data, only when its
``test_01`` force MAE beats SchNet's published 1000-frame value (the shipping bar).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from emgp_md.reproduce.campaign import CampaignConfig, load_campaign, run_and_list_failures

log = logging.getLogger("reproduce_md17")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="campaign YAML (workflows/configs/reproduce_md17.yaml)")
    parser.add_argument("--only", nargs="+", help="run only these run names")
    parser.add_argument("--jobs", type=int, help="processes side by side (default: the config's)")
    parser.add_argument("--dry-run", action="store_true", help="list what would run")
    parser.add_argument("--report-only", action="store_true", help="only rebuild the tables and figure")
    parser.add_argument("--report-dir", default="docs", help="where results_md17.md/.json and the figure go")
    parser.add_argument(
        "--ship",
        nargs="*",
        metavar="SPEC",
        help="ship the best run per molecule (lowest validation force MAE) among these pretrained "
        "specs (default: official ours) as the package's default models",
    )
    parser.add_argument("--readme", help="with --ship: rewrite the shipped-models table of this README")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = load_campaign(args.config)
    if args.jobs:
        cfg.jobs = args.jobs
    failed = [] if args.report_only else run_and_list_failures(cfg, args.dry_run, args.only)
    if not args.dry_run:
        from emgp_md.reproduce.md17_report import write_report

        for path in write_report(cfg, args.report_dir):
            log.info("wrote %s", path)
    if args.ship is not None and not args.dry_run:
        ship_best(cfg, args.ship or ["official", "ours"], Path(args.readme) if args.readme else None)
    return 1 if failed else 0


def ship_best(cfg: CampaignConfig, specs: list[str], readme: Path | None) -> None:
    """Ship the lowest-validation run per molecule among ``specs`` when it beats SchNet's bar on ``test_01``."""
    from emgp_md.reproduce.md17_report import SCHNET_F, collect
    from emgp_md.reproduce.shipping import PACKAGE_DATA, misses_bar, models_table, select_best, ship, update_readme

    results = collect(cfg)
    test_by_run = {entry["run"]: entry["test"] for runs in results.values() for entry in runs.values()}
    for mol, run in select_best(results, specs).items():
        test_f = test_by_run[run]["force_mae_kcal_mol_A"]
        if misses_bar(test_f, SCHNET_F.get(mol)):
            log.warning(
                "not shipped: %s (%s) has test force MAE %.3f kcal/mol/Å, not below SchNet's %.2f",
                mol,
                run,
                test_f,
                SCHNET_F[mol],
            )
            continue
        ship(Path(run), mol)
        log.info("shipped %s from %s: test force MAE %.3f kcal/mol/Å", mol, run, test_f)
    if readme is not None:
        index = json.loads((PACKAGE_DATA / "index.json").read_text())
        if update_readme(readme, models_table(index, SCHNET_F)):
            log.info("updated the shipped-models table of %s", readme)
        else:
            log.warning("%s has no shipped-models markers; table not written", readme)


if __name__ == "__main__":
    sys.exit(main())
