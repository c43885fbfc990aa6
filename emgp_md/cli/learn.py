"""``emgp-md learn``: a model for a new molecule by committee active learning, with its report."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: options that override a LearnConfig key (option dest = key)
_OVERRIDES = (
    "labeller",
    "max_labels",
    "n_initial",
    "n_per_round",
    "n_test",
    "committee",
    "epochs",
    "refine_epochs",
    "temperature_K",
    "stability_ps",
    "probe_ps",
    "disagreement_eV_A",
    "pretrained",
    "workers",
    "dask_scheduler",
    "seed",
)


def learn_config(args: argparse.Namespace) -> Any:
    """The YAML file (if any) with the command-line options on top."""
    from emgp_md.config import from_dict, load_yaml
    from emgp_md.learn.settings import LearnConfig

    overrides = {k: getattr(args, k) for k in _OVERRIDES if getattr(args, k, None) is not None}
    return load_yaml(LearnConfig, args.config, overrides) if args.config else from_dict(LearnConfig, overrides)


def write_report(out: Path, result: Any, cfg: Any, spec: str) -> Path:
    """``out/report.md`` with the figures: error vs labels, disagreement along MD, the final run's analysis."""
    from emgp_md.analysis.trajectory import analyze_trajectory
    from emgp_md.learn.labelling import load_store
    from emgp_md.plots import save_figure
    from emgp_md.plots.learn import plot_disagreement, plot_error_vs_labels
    from emgp_md.plots.md import plot_md_analysis

    save_figure(plot_error_vs_labels(result.rounds, result.level_of_theory), out / "error_vs_labels.png")
    round_dirs = sorted(out.glob("round_*"), key=lambda p: int(p.name.split("_")[1]))
    save_figure(plot_disagreement(round_dirs, cfg.timestep_fs, cfg.disagreement_eV_A), out / "disagreement.png")
    lines = [
        f"# emgp-md learn: {spec}",
        "",
        f"Status: **{result.status}**"
        + ("" if result.status == "converged" else " (the label budget ran out first: this model is not called done)"),
        (
            f"Level of theory: {result.level_of_theory}; labels used: {result.n_labels} "
            f"({result.labels_failed} failed and skipped); wall time {result.wall_s:.0f} s (all invocations)."
        ),
        "",
        "| round | labels | test force MAE (meV/Å) | committee range | probe | disagreement p95 (eV/Å) |",
        "|---|---|---|---|---|---|",
    ]
    for r in result.rounds:
        members = r.get("test_force_mae_meV_A_members") or []
        rng = f"{min(members):.1f}–{max(members):.1f}" if members else "n/a"
        probe = r.get("probe") or {}
        f = r["test_force_mae_meV_A"]
        lines.append(
            f"| {r['round']} | {r['n_labels']} | {'n/a' if f is None else f'{f:.1f}'} | {rng} | "
            f"{'intact' if probe.get('intact') else 'stopped at step ' + str(probe.get('steps'))} | "
            f"{probe.get('disagreement_p95_eV_A') or float('nan'):.3f} |"
        )
    lines += ["", "![error vs labels](error_vs_labels.png)", "", "![disagreement](disagreement.png)", ""]
    if result.stability:
        s = result.stability
        lines.append(
            f"Stability run: {s['length_ps']} ps at {s['temperature_K']} K, stable for {s['stable_time_ps']:.2f} ps "
            f"(largest bond deviation {s['max_bond_deviation_A']:.2f} Å; criterion 0.5 Å): "
            f"{'stable' if s['stable'] else 'NOT stable'}."
        )
        traj = Path(s["trajectory"])
        reference = load_store(out / "labels_train").to_frames()
        analysis = analyze_trajectory(traj, traj.with_suffix(".csv"), reference_frames=reference)
        save_figure(plot_md_analysis(analysis, f"{spec}: final stability run"), out / "stability_run.png")
        lines += ["", "![stability run: energies, bonds and h(r) against the labelled frames](stability_run.png)", ""]
    if result.test:
        t = result.test
        lines.append(
            f"Test ({t['n_frames']} labelled frames never trained on): energy MAE {t['energy_mae_meV']:.1f} meV, "
            f"force MAE {t['force_mae_meV_A']:.1f} meV/Å."
        )
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def learn_command(args: argparse.Namespace) -> int:
    """Run ``emgp-md learn``; exit 0 when converged, 4 when the label budget ran out first."""
    from emgp_md.learn.active import learn

    out = Path(args.out)
    if out.exists() and any(out.iterdir()) and not args.resume:
        raise ValueError(f"{out} exists and is not empty: pass --resume to continue that run, or choose another --out")
    cfg = learn_config(args)
    result = learn(args.input, out, cfg, max_rounds=args.max_rounds)
    try:
        print(f"report: {write_report(out, result, cfg, args.input)}")
    except Exception as exc:  # noqa: BLE001 - a failed figure must not lose the finished model
        log.warning("report failed: %s", exc)
    print(json.dumps({k: v for k, v in result.to_dict().items() if k != "rounds"}, indent=2))
    return 0 if result.status == "converged" else 4


def register(sub: Any) -> None:
    """Add ``learn`` to the CLI's sub-parsers."""
    p = sub.add_parser(
        "learn",
        help="a model for a new molecule from few labels (committee active learning from the pretrained backbone)",
    )
    p.add_argument("input", help="SMILES or a structure file (any ASE format)")
    p.add_argument("--out", required=True, help="output folder (model.pt, report.md, labels, rounds)")
    p.add_argument("config", nargs="?", help="YAML file of LearnConfig keys (optional)")
    p.add_argument("--labeller", choices=["xtb", "pyscf"], help="xtb (GFN2-xTB, default) or pyscf (PBE/def2-SVP)")
    p.add_argument("--max-labels", dest="max_labels", type=int, help="label budget (default 300)")
    p.add_argument("--n-initial", dest="n_initial", type=int, help="labels of round 0 (default 40)")
    p.add_argument("--n-per-round", dest="n_per_round", type=int, help="labels added per round (default 30)")
    p.add_argument("--n-test", dest="n_test", type=int, help="held-out labelled test frames (default 50)")
    p.add_argument("--committee", type=int, help="models in the committee (default 4)")
    p.add_argument("--epochs", type=int, help="fine-tuning epochs per member in round 0 (default 60)")
    p.add_argument(
        "--refine-epochs",
        dest="refine_epochs",
        type=int,
        help="epochs per member in later rounds continuing from the round before (default 0: restart from the backbone)",
    )
    p.add_argument("--temperature-K", dest="temperature_K", type=float, help="MD temperature (default 500 K)")
    p.add_argument("--stability-ps", dest="stability_ps", type=float, help="final stability run (default 20 ps)")
    p.add_argument("--probe-ps", dest="probe_ps", type=float, help="committee MD per round (default 2 ps)")
    p.add_argument("--disagreement-eV-A", dest="disagreement_eV_A", type=float, help="agreement threshold")
    p.add_argument("--pretrained", help="backbone: shipped name (authors-3dmgp), checkpoint path, or 'none'")
    p.add_argument("--workers", type=int, help="labelling processes (default 1)")
    p.add_argument(
        "--dask-scheduler",
        dest="dask_scheduler",
        help="label on a running dask.distributed cluster (scheduler address, e.g. tcp://host:8786)",
    )
    p.add_argument("--seed", type=int)
    p.add_argument("--max-rounds", dest="max_rounds", type=int, default=12)
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.set_defaults(func=learn_command)
