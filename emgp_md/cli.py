"""``emgp-md`` command line: parse, build a config, call the library. No logic lives here."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger("emgp_md.cli")


EXIT_BOND_CHANGE = 3  # `md` stopped because the bond graph changed
EXIT_INTERRUPTED = 130  # `md` stopped by Ctrl-C (128 + SIGINT, as shells report it)
MD_SUFFIXES = (".traj", ".csv", ".json", ".png")


def _bond_change_path(out: str | Path) -> Path:
    """Where ``md`` writes the geometry whose bonds changed: ``OUT_bond_change.xyz``."""
    return Path(out).with_name(Path(out).name + "_bond_change.xyz")


def _bond_text(pairs: list[tuple[int, int]], symbols: list[str]) -> str:
    return ", ".join(f"{symbols[i]}{i}-{symbols[j]}{j}" for i, j in pairs) or "none"


def _md_stopped(result: Any, args: argparse.Namespace, png: Path | None) -> int:
    """Report an MD run that ended early (Ctrl-C or a bond change); the exit code says which."""
    from emgp_md.errors import BondChangeError

    exc = result.stopped_by
    written = ", ".join(str(p) for p in (result.trajectory, result.log_csv, png) if p is not None)
    kept = (f"wrote {written} with the frames up to step {result.last_frame_step}" if result.last_frame_step >= 0
            else f"no frame was written ({written} are empty)")
    if isinstance(exc, BondChangeError):
        import ase.io

        symbols = result.atoms.get_chemical_symbols()
        xyz = _bond_change_path(args.out)
        ase.io.write(xyz, result.atoms.copy())  # the geometry whose bonds changed (no calculator results)
        step = 0 if result.last_frame_step < 0 else result.steps + 1  # forces of step n+1 are computed in step n
        log.error("MD stopped at step %d of %d: the bond graph changed (broken: %s; formed: %s): %s. %s; the "
                  "geometry that changed them is in %s", step, args.steps,
                  _bond_text(exc.broken, symbols), _bond_text(exc.formed, symbols), exc, kept, xyz)
        return EXIT_BOND_CHANGE
    log.error("MD interrupted (Ctrl-C) after step %d of %d; %s", result.steps, args.steps, kept)
    return EXIT_INTERRUPTED


def _md(args: argparse.Namespace) -> int:
    from emgp_md.calculator import EMGPCalculator
    from emgp_md.errors import BondChangeError
    from emgp_md.md import run_md
    from emgp_md.outputs import check_outputs
    from emgp_md.plots.md import plot_md_log, save_figure
    from emgp_md.pretrained import load_structure

    out = Path(args.out)
    check_outputs([*(out.with_suffix(s) for s in MD_SUFFIXES), _bond_change_path(out)], args.overwrite)
    _bond_change_path(out).unlink(missing_ok=True)  # replaced (--overwrite): never mistaken for this run's
    atoms = load_structure(args.structure)
    atoms.calc = EMGPCalculator(model=args.model, dtype=args.dtype, compile=args.compile)
    result = run_md(atoms, args.out, args.ensemble, args.temperature_K, args.timestep_fs, args.steps,
                    args.friction_per_fs, args.seed, args.interval, progress=not args.quiet,
                    stop_on=(KeyboardInterrupt, BondChangeError))
    png: Path | None = out.with_suffix(".png")
    if result.last_frame_step >= 0:
        save_figure(plot_md_log(result.log_csv), png)
    else:
        png = None
    if result.stopped_by is not None:
        return _md_stopped(result, args, png)
    log.info("wrote %s, %s and %s", result.trajectory, result.log_csv, png)
    return 0


def _relax(args: argparse.Namespace) -> int:
    import ase.io

    from emgp_md.calculator import EMGPCalculator
    from emgp_md.outputs import check_outputs, structure_format
    from emgp_md.pretrained import load_structure
    from emgp_md.relaxation import relax

    out = Path(args.out)
    fmt = structure_format(out)
    check_outputs([out], args.overwrite)
    atoms = load_structure(args.structure)
    atoms.calc = EMGPCalculator(model=args.model, dtype=args.dtype)
    res = relax(atoms, args.fmax_eV_per_A, args.steps, args.optimizer, logfile="-" if not args.quiet else None)
    out.parent.mkdir(parents=True, exist_ok=True)
    ase.io.write(out, res.atoms, format=fmt)
    log.info("converged=%s in %d steps, E=%.6f eV, max force %.4f eV/Å; wrote %s",
                 res.converged, res.steps, res.energy_eV, res.fmax_eV_per_A, args.out)
    return 0 if res.converged else 1


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


def _finetune(args: argparse.Namespace) -> int:
    from emgp_md.config import FinetuneConfig, load_yaml
    from emgp_md.training.finetune import finetune

    overrides = {"epochs": args.epochs} if args.epochs else {}
    cfg = load_yaml(FinetuneConfig, args.config, overrides)
    return _run_distributed(lambda info: finetune(cfg, args.out, resume=args.resume, info=info))


def _pretrain(args: argparse.Namespace) -> int:
    from emgp_md.config import PretrainConfig, load_yaml
    from emgp_md.pretrain.data import load_split
    from emgp_md.pretrain.trainer import pretrain

    overrides = {"epochs": args.epochs} if args.epochs else {}
    cfg = load_yaml(PretrainConfig, args.config, overrides)
    train, val = load_split(cfg.data, cfg.n_val_molecules, cfg.seed, cfg.max_conformers)
    return _run_distributed(lambda info: pretrain(cfg, train, val, args.out, resume=args.resume, info=info))


def _pretrain_report(args: argparse.Namespace) -> int:
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
            for level, row in enumerate(zip(d.sigma_A, d.inp_accuracy, d.inp_within_2, d.cosine_riemann,
                                            d.cosine_gaussian)):
                print(f"  {level:5d}  {row[0]:7.4f}  {row[1]:7.3f}  {row[2]:6.3f}  {row[3]:11.3f}  {row[4]:12.3f}")
    if args.plot:
        save_figure(plot_diagnostics(diags), args.plot)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from emgp_md.data.convert import topology_for_atoms
    from emgp_md.data.rmd17 import load_frames
    from emgp_md.models.checkpoint import load_checkpoint
    from emgp_md.training.evaluate import evaluate

    model, meta = load_checkpoint(args.checkpoint)
    frames = load_frames(args.data, args.label_set)
    from ase import Atoms

    topo = topology_for_atoms(Atoms(numbers=frames.z, positions=frames.coords[0]), meta.get("topology"),
                              hypergraph_options=getattr(model.backbone, "fragment_options", None))
    import torch

    m = evaluate(model, topo, frames, dtype={"float32": torch.float32, "float64": torch.float64}[args.dtype])
    print(f"{Path(args.checkpoint).name} on {args.data} ({m['n_frames']} frames):")
    print(f"  energy MAE {m['energy_mae_kcal_mol']:.4f} kcal/mol   {m['energy_mae_meV']:.3f} meV")
    print(f"  force  MAE {m['force_mae_kcal_mol_A']:.4f} kcal/mol/Å {m['force_mae_meV_A']:.3f} meV/Å")
    if args.json:
        print(json.dumps(m))
    return 0


def _import_official(args: argparse.Namespace) -> int:
    from emgp_md.models.official import import_official

    import_official(args.input, args.output)
    print(f"wrote {args.output}")
    return 0


def _models(args: argparse.Namespace) -> int:
    from emgp_md.pretrained import available_models

    models = available_models()
    if args.json:
        print(json.dumps(models, indent=2))
        return 0
    for name, info in sorted(models.items()):
        test = info.get("test", {})
        print(f"{name:14s} {info['formula']:10s} test force MAE {test.get('force_mae_kcal_mol_A', float('nan')):.3f} "
              f"kcal/mol/Å, energy MAE {test.get('energy_mae_kcal_mol', float('nan')):.3f} kcal/mol")
    return 0


def _fragment(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from emgp_md.data.fragment import PRESETS
    from emgp_md.data.fragment_groups import perceive_bonds
    from emgp_md.data.hypergraph import build_hypergraph, fragment_records, hypergraph_statistics

    if args.structure.endswith(".npz"):
        from ase import Atoms

        from emgp_md.data.rmd17 import load_frames

        frames = load_frames(args.structure)
        if not 0 <= args.frame < len(frames.coords):
            raise ValueError(f"--frame {args.frame} is out of range: {args.structure} has {len(frames.coords)} frames")
        atoms = Atoms(numbers=frames.z, positions=frames.coords[args.frame])
    else:
        from emgp_md.pretrained import load_structure

        atoms = load_structure(args.structure)
    overrides = {"mode": args.mode, "implicit_rc_A": args.rc_A}
    options = replace(PRESETS[args.preset], **{k: v for k, v in overrides.items() if v is not None})
    mol = perceive_bonds(atoms.numbers, atoms.positions, args.charge, atoms.get_chemical_formula())
    hg = build_hypergraph(atoms, options, mol=mol)
    stats = hypergraph_statistics(hg, atoms.positions)
    records = fragment_records(hg)
    if args.png:
        from emgp_md.plots.fragments import draw_fragments

        draw_fragments(hg, mol, args.png)
        log.info("wrote %s", args.png)
    if args.json:
        doc = {"structure": args.structure, "formula": atoms.get_chemical_formula(), "options": options.to_dict(),
               "fragments": records, "statistics": stats.to_dict(), "hypergraph": hg.to_dict()}
        print(json.dumps(doc))
        return 0
    print(f"{atoms.get_chemical_formula()} ({args.structure}): {options.mode} overlap, preset {args.preset}")
    print("  frag  size  kernel  elements    atoms")
    for rec in records:
        print(f"  {rec['index']:4d}  {rec['size']:4d}  {len(rec['kernel_atoms']):6d}  {rec['elements']:10s}  "
              f"{' '.join(map(str, rec['atoms']))}")
    for key, value in stats.to_dict().items():
        print(f"  {key:22s} {value:.4f}" if isinstance(value, float) else f"  {key:22s} {value}")
    return 0


class _DefaultsFormatter(argparse.HelpFormatter):
    """Help text that names an option's default when it has a meaningful one (not None/False)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        meaningless = action.default is None or action.default is False or action.default == argparse.SUPPRESS
        if not meaningless and "default" not in text:
            text += " (default: %(default)s)"
        return text


def _common_model_args(p: argparse.ArgumentParser, out_help: str, dtype: str) -> None:
    p.add_argument("structure", nargs="?", default="aspirin",
                   help="shipped molecule name (see `emgp-md models`) or any structure file ASE reads")
    p.add_argument("--model", help="checkpoint path (default: the shipped model matching the formula)")
    p.add_argument("--out", required=True, help=out_help)
    p.add_argument("--overwrite", action="store_true",
                   help="replace existing output files (without it, an existing output is an error before the run)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--dtype", choices=["float32", "float64"], default=dtype, help="model precision")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="emgp-md", description="3D-EMGP energy models for ASE molecular dynamics")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    fmt = _DefaultsFormatter
    p = sub.add_parser("md", help="molecular dynamics (Langevin or NVE) with a trajectory, CSV log and plot",
                       formatter_class=fmt)
    _common_model_args(p, "output prefix: writes OUT.traj (ASE trajectory), OUT.csv (log), OUT.json (settings) and "
                          "OUT.png (plot). Ctrl-C keeps the frames run so far (exit code 130); a bond change stops "
                          "the run the same way, writing OUT_bond_change.xyz (exit code 3)", dtype="float32")
    p.add_argument("--ensemble", choices=["langevin", "nve"], default="langevin",
                   help="Langevin thermostat or constant energy (velocity Verlet)")
    p.add_argument("--temperature-K", dest="temperature_K", type=float, default=300.0,
                   help="thermostat and initial Maxwell-Boltzmann temperature (K)")
    p.add_argument("--timestep-fs", dest="timestep_fs", type=float, default=0.5, help="time step (fs)")
    p.add_argument("--steps", type=int, default=1000, help="number of MD steps")
    p.add_argument("--friction-per-fs", dest="friction_per_fs", type=float, default=0.01,
                   help="Langevin friction (1/fs)")
    p.add_argument("--seed", type=int, default=0, help="seed of the initial velocities and the thermostat noise")
    p.add_argument("--interval", type=int, default=10, help="write a frame and a log line every N steps")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (slow first step, faster after)")
    p.set_defaults(func=_md)

    p = sub.add_parser("relax", help="relax a structure (BFGS or FIRE) and write it", formatter_class=fmt)
    _common_model_args(p, "relaxed structure file (format from the suffix, e.g. .xyz)", dtype="float64")
    p.add_argument("--fmax-eV-per-A", dest="fmax_eV_per_A", type=float, default=0.01,
                   help="converged when every atom's force is below this (eV/Å)")
    p.add_argument("--steps", type=int, default=500, help="maximum optimizer steps")
    p.add_argument("--optimizer", choices=["BFGS", "FIRE"], default="BFGS", help="ASE optimizer")
    p.set_defaults(func=_relax)

    for name, func, text in (
        ("finetune", _finetune, "fine-tune on rMD17 energies and forces from a YAML config"),
        ("pretrain", _pretrain, "3D-EMGP pretraining on a conformer set (torchrun for data parallel)"),
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
    p.set_defaults(func=_pretrain_report)

    p = sub.add_parser("evaluate", help="energy and force MAE of a checkpoint on rMD17 frames")
    p.add_argument("checkpoint")
    p.add_argument("data", help="rMD17 .npz file")
    p.add_argument("--label-set", dest="label_set", choices=["rmd17", "md17"], default="rmd17")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_evaluate)

    p = sub.add_parser("import-official", help="convert the authors' checkpoint-3dmgp into an emgp-md checkpoint")
    p.add_argument("input")
    p.add_argument("output")
    p.set_defaults(func=_import_official)

    p = sub.add_parser("models", help="list the shipped models")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_models)

    p = sub.add_parser("fragment", help="SE3Set hypergraph of a molecule: fragments, incidences, statistics")
    p.add_argument("structure", help="shipped molecule name (e.g. aspirin), structure file, or rMD17 .npz")
    p.add_argument("--mode", choices=["explicit", "implicit"], help="overlap mode (default: the preset's)")
    p.add_argument("--preset", choices=["md17", "md22", "qm9"], default="md17",
                   help="the authors' fragmenter settings (default md17: explicit, Lendvay)")
    p.add_argument("--rc-A", dest="rc_A", type=float, help="implicit-mode cutoff in Å (default: the preset's, 4.0)")
    p.add_argument("--charge", type=int, default=0, help="total charge for bond perception")
    p.add_argument("--frame", type=int, default=0, help="frame of an .npz file used as reference geometry")
    p.add_argument("--png", help="write a 2D depiction coloured by fragment to this PNG")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_fragment)

    from emgp_md.cli_analysis import add_analyze_parser, add_landscape_parser
    from emgp_md.data.conformers import add_conformers_parser

    add_conformers_parser(sub)
    add_landscape_parser(sub)
    add_analyze_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args))
    except (ValueError, FileNotFoundError) as exc:
        log.error("%s", exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
