"""Training commands: ``finetune``, ``pretrain``, ``pretrain-report``, ``evaluate``, ``import-official``.

Register the commands with :func:`register`; each command parses, calls the library and reports.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


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


#: ``emgp-md finetune`` options that override a config key (option dest = config key)
_FINETUNE_OVERRIDES = (
    "data",
    "val_data",
    "test_data",
    "data_format",
    "energy_key",
    "forces_key",
    "energy_unit",
    "n_train",
    "n_val",
    "n_test",
    "split",
    "epochs",
    "cpu_budget_s",
    "pretrained",
    "seed",
    "compile_step",
)


def finetune_config(args: argparse.Namespace) -> Any:
    """The fine-tuning config of the command line: the YAML file (if any), then the options given.

    Without a file the defaults fine-tune from the shipped pretrained backbone (the authors' 3D-EMGP
    checkpoint); ``--pretrained none`` trains from scratch.
    """
    from emgp_md.config import FinetuneConfig, from_dict, load_yaml
    from emgp_md.pretrained import DEFAULT_BACKBONE

    overrides = {k: getattr(args, k) for k in _FINETUNE_OVERRIDES if getattr(args, k, None) is not None}
    if overrides.get("pretrained") in ("none", "scratch"):
        overrides["pretrained"] = None
    if args.config:
        return load_yaml(FinetuneConfig, args.config, overrides)
    if "data" not in overrides:
        raise ValueError("emgp-md finetune needs --data FILE (or a YAML config with a 'data' key)")
    return from_dict(FinetuneConfig, {"pretrained": DEFAULT_BACKBONE, **overrides})


def finetune_command(args: argparse.Namespace) -> int:
    """Run ``emgp-md finetune`` (torchrun for data parallel); print the result and draw the learning curve."""
    from emgp_md.training.finetune import finetune

    cfg = finetune_config(args)
    code = _run_distributed(lambda info: finetune(cfg, args.out, resume=args.resume, info=info))
    log_csv = Path(args.out) / "log.csv"
    if log_csv.is_file():
        try:
            from emgp_md.plots.md import plot_learning_curve, save_figure

            save_figure(plot_learning_curve(log_csv), Path(args.out) / "learning_curve.png")
        except Exception as exc:  # noqa: BLE001 - a failed plot must not turn a finished training into a failure
            log.warning("learning-curve plot failed: %s", exc)
    return code


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


def _read_args(p: argparse.ArgumentParser) -> None:
    """Options of a labelled-data file (format, keys, unit)."""
    p.add_argument("--format", dest="data_format", help="file format when the suffix does not tell")
    p.add_argument("--energy-key", dest="energy_key", help="key of the energies (default: energy)")
    p.add_argument("--forces-key", dest="forces_key", help="key of the forces (default: forces)")
    p.add_argument(
        "--energy-unit",
        dest="energy_unit",
        help="unit of the file's energies (forces: per Å): eV, meV, kcal/mol, kJ/mol, Hartree; "
        "required for .npz files without units, ASE files default to eV",
    )


def molecule_table(metrics: dict[str, Any]) -> str:
    """Per-molecule MAE table (energy per molecule and per atom in meV, forces in meV/Å) and the overall line."""
    lines = [f"{'molecule':<16} {'atoms':>5} {'frames':>6} {'E MAE meV':>10} {'E/atom meV':>10} {'F MAE meV/Å':>12}"]
    rows = metrics.get("molecules") or []
    for r in [*rows, {**metrics, "molecule": "all", "n_atoms": ""}]:
        lines.append(
            f"{r['molecule']:<16} {r['n_atoms']!s:>5} {r['n_frames']:>6} {r['energy_mae_meV']:>10.3f} "
            f"{r['energy_mae_per_atom_meV']:>10.3f} {r['force_mae_meV_A']:>12.3f}"
        )
    return "\n".join(lines)


def evaluate_command(args: argparse.Namespace) -> int:
    """Run ``emgp-md evaluate CKPT FILE``: per-molecule energy and force MAE table and a parity plot."""
    import torch
    from ase import Atoms

    from emgp_md.data.convert import topology_for_atoms
    from emgp_md.data.readers import read_dataset
    from emgp_md.models.checkpoint import load_checkpoint
    from emgp_md.training.data import group_topologies
    from emgp_md.training.evaluate import dataset_metrics, predict_dataset
    from emgp_md.units import ARBITRARY

    model, meta = load_checkpoint(args.checkpoint)
    unit = meta["units"]["energy"]
    if unit == ARBITRARY:
        raise ValueError(
            f"{args.checkpoint}: a pretraining checkpoint (arbitrary energy units) has no errors to measure"
        )
    data = read_dataset(
        args.data,
        format=args.data_format,
        energy_key=args.energy_key or "energy",
        forces_key=args.forces_key or "forces",
        energy_unit=args.energy_unit,
        label_set=args.label_set,
    ).to_unit(unit)
    options = getattr(model.backbone, "fragment_options", None)
    if meta.get("topology") is None:  # a many-molecule model: graphs perceived as in its training
        topologies = group_topologies(data, options)
    else:  # a one-molecule model: each group mapped onto its bond graph (any atom order), others refused
        topologies = [
            topology_for_atoms(Atoms(numbers=g.z, positions=g.coords[0]), meta["topology"], hypergraph_options=options)
            for g in data.groups
        ]
    dtype = {"float32": torch.float32, "float64": torch.float64}[args.dtype]
    predictions = predict_dataset(model, topologies, data, dtype=dtype)
    m = dataset_metrics(predictions, data)
    print(f"{Path(args.checkpoint).name} on {args.data}: {len(data)} frames of {data.n_molecules} molecule(s)")
    print(molecule_table(m))
    print(
        f"overall: energy MAE {m['energy_mae_kcal_mol']:.4f} kcal/mol ({m['energy_mae_meV']:.3f} meV), "
        f"force MAE {m['force_mae_kcal_mol_A']:.4f} kcal/mol/Å ({m['force_mae_meV_A']:.3f} meV/Å)"
    )
    if args.plot != "none":
        from emgp_md.plots import save_figure
        from emgp_md.plots.evaluation import plot_parity

        plot = args.plot or f"{Path(args.data).stem}_parity.png"
        title = f"{Path(args.checkpoint).name} on {Path(args.data).name}"
        atom_ref = model.atom_ref or None  # a many-molecule model: energies above its element references
        print(f"parity plot: {save_figure(plot_parity(predictions, data, title, atom_ref=atom_ref), plot)}")
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
    p = sub.add_parser(
        "finetune",
        help="fine-tune on energies and forces of your frames (any ASE format, rMD17, .npz)",
        description="Fine-tune on labelled frames. Without CONFIG the defaults fine-tune from the shipped "
        "pretrained backbone (the authors' 3D-EMGP checkpoint); options override CONFIG's keys.",
    )
    p.add_argument("config", nargs="?", help="YAML file (optional; unknown keys are errors)")
    p.add_argument("--data", help="labelled frames for training (validation/test drawn from it unless given)")
    p.add_argument("--val", dest="val_data", help="validation frames (default: --n-val drawn from --data)")
    p.add_argument("--test", dest="test_data", help="test frames (default: --n-test drawn from --data)")
    _read_args(p)
    p.add_argument("--n-train", dest="n_train", type=int, help="training frames (default: all the rest)")
    p.add_argument("--n-val", dest="n_val", type=int, help="validation frames or molecules (default 50)")
    p.add_argument("--n-test", dest="n_test", type=int, help="test frames or molecules held out (default 0)")
    p.add_argument("--split", choices=["frames", "molecules"], help="hold out frames (default) or molecules")
    p.add_argument("--pretrained", help="checkpoint or shipped backbone name to start from; 'none' for scratch")
    p.add_argument("--epochs", type=int, help="epochs (default 1500, the paper's)")
    p.add_argument("--cpu-budget-s", dest="cpu_budget_s", type=float, help="stop training after this CPU time")
    p.add_argument("--seed", type=int, help="seed of the split and the fresh heads")
    p.add_argument(
        "--compile",
        dest="compile_step",
        action="store_const",
        const=True,
        help="torch.compile the EGNN training step (~1.2x faster steps after a 1-2 min compile; needs a C++ compiler)",
    )
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--resume", action="store_true", help="continue from OUT/state.pt")
    p.set_defaults(func=finetune_command)

    p = sub.add_parser("pretrain", help="3D-EMGP pretraining on a conformer set (torchrun for data parallel)")
    p.add_argument("config", help="YAML file (unknown keys are errors)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--resume", action="store_true", help="continue from OUT/state.pt")
    p.add_argument("--epochs", type=int, help="override the number of epochs")
    p.set_defaults(func=pretrain_command)

    p = sub.add_parser("pretrain-report", help="INP accuracy and force/target cosine per noise level")
    p.add_argument("checkpoints", nargs="+", help="pretrained checkpoints (ours or the authors' raw file)")
    p.add_argument("--data", required=True, help="conformer set folder (its validation molecules are used)")
    p.add_argument("--n-conformers", dest="n_conformers", type=int, default=200)
    p.add_argument("--n-val-molecules", dest="n_val_molecules", type=int, default=500)
    p.add_argument("--seed", type=int, default=2021)
    p.add_argument("--plot", help="PNG path for the per-level plot")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=pretrain_report_command)

    p = sub.add_parser("evaluate", help="energy and force MAE of a checkpoint per molecule, with a parity plot")
    p.add_argument("checkpoint", help="a model file (model.pt of emgp-md finetune)")
    p.add_argument("data", help="labelled frames: extxyz, ASE database, rMD17 or other .npz")
    _read_args(p)
    p.add_argument("--label-set", dest="label_set", choices=["rmd17", "md17"], default="rmd17")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("--plot", help="parity plot path (default DATA-STEM_parity.png; 'none' for no plot)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=evaluate_command)

    p = sub.add_parser("import-official", help="convert the authors' checkpoint-3dmgp into an emgp-md checkpoint")
    p.add_argument("input")
    p.add_argument("output")
    p.set_defaults(func=import_official_command)
