"""Training commands: ``finetune``, ``pretrain``, ``pretrain-report``, ``evaluate``, ``import-official``.

Register the commands with :func:`register`; each command parses, calls the library and reports.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _run_distributed(job: Callable[[Any], dict[str, Any]]) -> int:
    """Run ``job(info)`` in this torchrun process (or alone); print the result on rank 0."""
    from emgp_md.training.distributed import cleanup, exit_process, init_distributed

    info = init_distributed()
    try:
        result = job(info)
    finally:
        cleanup(info)
    if info.is_main:
        print(json.dumps(result, indent=2))
    if info.world_size > 1:
        exit_process(0)
    return 0


def finetune_command(args: argparse.Namespace) -> int:
    """Run ``emgp-md finetune`` (torchrun for data parallel); print the result."""
    from emgp_md.config import FinetuneConfig, load_yaml
    from emgp_md.training.finetune import finetune

    overrides = {"epochs": args.epochs} if args.epochs else {}
    cfg = load_yaml(FinetuneConfig, args.config, overrides)
    return _run_distributed(lambda info: finetune(cfg, args.out, resume=args.resume, info=info))


def pretrain_command(args: argparse.Namespace) -> int:
    """Run ``emgp-md pretrain`` (torchrun for data parallel); print the result."""
    from emgp_md.config import PretrainConfig, load_yaml
    from emgp_md.pretrain.data import load_split
    from emgp_md.pretrain.trainer import pretrain

    overrides = {"epochs": args.epochs} if args.epochs else {}
    cfg = load_yaml(PretrainConfig, args.config, overrides)
    train, val = load_split(cfg.data, cfg.n_val_molecules, cfg.seed, cfg.max_conformers)
    return _run_distributed(lambda info: pretrain(cfg, train, val, args.out, resume=args.resume, info=info))


def pretrain_report_command(args: argparse.Namespace) -> int:
    """Run ``emgp-md pretrain-report``: per-level table (or JSON) and an optional plot."""
    import torch

    from emgp_md.config import ModelConfig, from_dict
    from emgp_md.models import hypergraph_options, needs_hypergraph
    from emgp_md.plots import save_figure
    from emgp_md.plots.pretraining import plot_diagnostics
    from emgp_md.pretrain.data import load_split
    from emgp_md.pretrain.diagnostics import level_diagnostics
    from emgp_md.pretrain.hypergraphs import HypergraphCache, HypergraphSamples
    from emgp_md.pretrain.noise import noise_levels
    from emgp_md.training.transfer import load_any_checkpoint

    _, val = load_split(args.data, args.n_val_molecules, args.seed)
    n_conf = min(args.n_conformers, len(val))
    confs = [val[i] for i in range(n_conf)]
    diags = {}
    for path in args.checkpoints:
        model, meta = load_any_checkpoint(path)
        sigmas = torch.tensor(meta.get("sigmas_A") or noise_levels().tolist(), dtype=torch.float64)
        model_cfg = from_dict(ModelConfig, meta["model"])
        used = confs
        if needs_hypergraph(model_cfg):  # SE3Set: hypergraphs as in pretraining; unfragmentable molecules left out
            with_hg = HypergraphSamples(val, HypergraphCache(hypergraph_options(model_cfg)))
            used = [s for s in (with_hg[i] for i in range(n_conf)) if s is not None]
        diags[Path(path).name] = level_diagnostics(model, used, sigmas, seed=args.seed)
    if args.json:
        print(json.dumps({k: d.to_dict() for k, d in diags.items()}, indent=2))
    else:
        for name, d in diags.items():
            print(f"{name} ({d.n_conformers} validation conformers)")
            print("  level  sigma_A  INP_acc  INP_±2  cos_Riemann  cos_Gaussian")
            for level, row in enumerate(
                zip(d.sigma_A, d.inp_accuracy, d.inp_within_2, d.cosine_riemann, d.cosine_gaussian)
            ):
                print(f"  {level:5d}  {row[0]:7.4f}  {row[1]:7.3f}  {row[2]:6.3f}  {row[3]:11.3f}  {row[4]:12.3f}")
    if args.plot:
        save_figure(plot_diagnostics(diags), args.plot)
    return 0


def evaluate_command(args: argparse.Namespace) -> int:
    """Run ``emgp-md evaluate``: energy and force MAE of a checkpoint on rMD17 frames."""
    from emgp_md.data.convert import topology_for_atoms
    from emgp_md.data.rmd17 import load_frames
    from emgp_md.models.checkpoint import load_checkpoint
    from emgp_md.training.evaluate import evaluate

    model, meta = load_checkpoint(args.checkpoint)
    frames = load_frames(args.data, args.label_set)
    from ase import Atoms

    topo = topology_for_atoms(
        Atoms(numbers=frames.z, positions=frames.coords[0]),
        meta.get("topology"),
        hypergraph_options=getattr(model.backbone, "fragment_options", None),
    )
    import torch

    m = evaluate(model, topo, frames, dtype={"float32": torch.float32, "float64": torch.float64}[args.dtype])
    print(f"{Path(args.checkpoint).name} on {args.data} ({m['n_frames']} frames):")
    print(f"  energy MAE {m['energy_mae_kcal_mol']:.4f} kcal/mol   {m['energy_mae_meV']:.3f} meV")
    print(f"  force  MAE {m['force_mae_kcal_mol_A']:.4f} kcal/mol/Å {m['force_mae_meV_A']:.3f} meV/Å")
    if args.json:
        print(json.dumps(m))
    return 0


def import_official_command(args: argparse.Namespace) -> int:
    """Run ``emgp-md import-official``: convert the authors' checkpoint."""
    from emgp_md.models.official import import_official

    import_official(args.input, args.output)
    print(f"wrote {args.output}")
    return 0


def register(sub: Any) -> None:
    """Add the training commands to the CLI's sub-parsers (``sub = parser.add_subparsers(...)``)."""
    for name, func, text in (
        ("finetune", finetune_command, "fine-tune on rMD17 energies and forces from a YAML config"),
        ("pretrain", pretrain_command, "3D-EMGP pretraining on a conformer set (torchrun for data parallel)"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("config", help="YAML file (unknown keys are errors)")
        p.add_argument("--out", required=True, help="output folder")
        p.add_argument("--resume", action="store_true", help="continue from OUT/state.pt")
        p.add_argument("--epochs", type=int, help="override the number of epochs")
        p.set_defaults(func=func)

    p = sub.add_parser("pretrain-report", help="INP accuracy and force/target cosine per noise level")
    p.add_argument("checkpoints", nargs="+", help="pretrained checkpoints (ours or the authors' raw file)")
    p.add_argument("--data", required=True, help="conformer set folder (its validation molecules are used)")
    p.add_argument("--n-conformers", dest="n_conformers", type=int, default=200)
    p.add_argument("--n-val-molecules", dest="n_val_molecules", type=int, default=500)
    p.add_argument("--seed", type=int, default=2021)
    p.add_argument("--plot", help="PNG path for the per-level plot")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=pretrain_report_command)

    p = sub.add_parser("evaluate", help="energy and force MAE of a checkpoint on rMD17 frames")
    p.add_argument("checkpoint")
    p.add_argument("data", help="rMD17 .npz file")
    p.add_argument("--label-set", dest="label_set", choices=["rmd17", "md17"], default="rmd17")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=evaluate_command)

    p = sub.add_parser("import-official", help="convert the authors' checkpoint-3dmgp into an emgp-md checkpoint")
    p.add_argument("input")
    p.add_argument("output")
    p.set_defaults(func=import_official_command)
