"""Figure 3 analogue: pretrain every backbone, fine-tune each from scratch and pretrained, then the report.

Runs the campaign of ``workflows/configs/figure3.yaml`` (EGNN, SchNet, ET and SE3Set pretrained at
one small CPU budget, then fine-tuned on rMD17 aspirin and ethanol) and writes
``docs/results_figure3.md`` and ``docs/figures/figure3_backbones.png``. Resumable: finished runs
are skipped and interrupted ones resumed, so rerunning the command continues where it stopped.

Examples::

    python workflows/figure3.py workflows/configs/figure3.yaml --dry-run
    python workflows/figure3.py workflows/configs/figure3.yaml
    python workflows/figure3.py workflows/configs/figure3.yaml --only pre_se3set se3set_scratch
    python workflows/figure3.py workflows/configs/figure3.yaml --report-only
"""

from __future__ import annotations

import argparse
import logging
import sys

from emgp_md.reproduce.campaign import (
    CampaignConfig,
    finetune_jobs,
    load_campaign,
    pretrain_jobs,
    run_and_list_failures,
)

log = logging.getLogger("figure3")


def check_jobs(cfg: CampaignConfig) -> list[str]:
    """Parse every job's config strictly and build its model; returns one summary line per job.

    Raises
    ------
    ValueError
        A job whose config has unknown keys or a model that cannot be built (the job is named).
    """
    from emgp_md.config import FinetuneConfig, PretrainConfig, from_dict
    from emgp_md.models import build_model

    lines = []
    for job in pretrain_jobs(cfg) + finetune_jobs(cfg):
        kind = PretrainConfig if job.command == "pretrain" else FinetuneConfig
        try:
            conf = from_dict(kind, job.config)
            n = sum(p.numel() for p in build_model(conf.model).parameters())
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{job.name}/{job.molecule or ''}: {exc}") from exc
        extra = f", budget {conf.cpu_budget_s:g} CPU-s" if conf.cpu_budget_s is not None else ""
        extra += f" from {conf.pretrained}" if getattr(conf, "pretrained", None) else ""
        lines.append(
            f"{job.command} {job.name}{'/' + job.molecule if job.molecule else ''}: "
            f"{conf.model.backbone}, {n} parameters, {conf.epochs} epoch(s){extra}"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="campaign YAML (workflows/configs/figure3.yaml)")
    parser.add_argument("--only", nargs="+", help="run only these run names")
    parser.add_argument("--jobs", type=int, help="processes side by side (default: the config's)")
    parser.add_argument("--dry-run", action="store_true", help="check every job's config and list what would run")
    parser.add_argument("--report-only", action="store_true", help="only rebuild the table and figure")
    parser.add_argument("--report-dir", default="docs", help="where results_figure3.md and figures/ go")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = load_campaign(args.config)
    if args.jobs:
        cfg.jobs = args.jobs
    if args.dry_run:
        for line in check_jobs(cfg):
            log.info("config ok: %s", line)
    failed = [] if args.report_only else run_and_list_failures(cfg, args.dry_run, args.only)
    if not args.dry_run:
        from emgp_md.reproduce.figure3_report import write_report

        for path in write_report(cfg, args.report_dir):
            log.info("wrote %s", path)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
