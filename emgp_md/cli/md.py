"""``emgp-md md`` and ``emgp-md relax``: a shipped or given model on a structure, files written.

Register the commands with :func:`register`; each command parses, calls the library and reports.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


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
    kept = (
        f"wrote {written} with the frames up to step {result.last_frame_step}"
        if result.last_frame_step >= 0
        else f"no frame was written ({written} are empty)"
    )
    if isinstance(exc, BondChangeError):
        import ase.io

        symbols = result.atoms.get_chemical_symbols()
        xyz = _bond_change_path(args.out)
        ase.io.write(xyz, result.atoms.copy())  # the geometry whose bonds changed (no calculator results)
        step = 0 if result.last_frame_step < 0 else result.steps + 1  # forces of step n+1 are computed in step n
        log.error(
            "MD stopped at step %d of %d: the bond graph changed (broken: %s; formed: %s): %s. %s; the "
            "geometry that changed them is in %s",
            step,
            args.steps,
            _bond_text(exc.broken, symbols),
            _bond_text(exc.formed, symbols),
            exc,
            kept,
            xyz,
        )
        return EXIT_BOND_CHANGE
    log.error("MD interrupted (Ctrl-C) after step %d of %d; %s", result.steps, args.steps, kept)
    return EXIT_INTERRUPTED


def md_command(args: argparse.Namespace) -> int:
    """Run ``emgp-md md``: trajectory, CSV log, settings and plot; exit 3 on a bond change, 130 on Ctrl-C."""
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
    result = run_md(
        atoms,
        args.out,
        args.ensemble,
        args.temperature_K,
        args.timestep_fs,
        args.steps,
        args.friction_per_fs,
        args.seed,
        args.interval,
        progress=not args.quiet,
        stop_on=(KeyboardInterrupt, BondChangeError),
    )
    png: Path | None = out.with_suffix(".png")
    if result.last_frame_step >= 0:
        save_figure(plot_md_log(result.log_csv), png)
    else:
        png = None
    if result.stopped_by is not None:
        return _md_stopped(result, args, png)
    log.info("wrote %s, %s and %s", result.trajectory, result.log_csv, png)
    return 0


def relax_command(args: argparse.Namespace) -> int:
    """Run ``emgp-md relax``: the relaxed structure; exit 1 when not converged."""
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
    log.info(
        "converged=%s in %d steps, E=%.6f eV, max force %.4f eV/Å; wrote %s",
        res.converged,
        res.steps,
        res.energy_eV,
        res.fmax_eV_per_A,
        args.out,
    )
    return 0 if res.converged else 1


class _DefaultsFormatter(argparse.HelpFormatter):
    """Help text that names an option's default when it has a meaningful one (not None/False)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        meaningless = action.default is None or action.default is False or action.default == argparse.SUPPRESS
        if not meaningless and "default" not in text:
            text += " (default: %(default)s)"
        return text


def _common_model_args(p: argparse.ArgumentParser, out_help: str, dtype: str) -> None:
    p.add_argument(
        "structure",
        nargs="?",
        default="aspirin",
        help="shipped molecule name (see `emgp-md models`) or any structure file ASE reads",
    )
    p.add_argument("--model", help="checkpoint path (default: the shipped model matching the formula)")
    p.add_argument("--out", required=True, help=out_help)
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace existing output files (without it, an existing output is an error before the run)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--dtype", choices=["float32", "float64"], default=dtype, help="model precision")


def register(sub: Any) -> None:
    """Add ``md`` and ``relax`` to the CLI's sub-parsers (``sub = parser.add_subparsers(...)``)."""
    fmt = _DefaultsFormatter
    p = sub.add_parser(
        "md", help="molecular dynamics (Langevin or NVE) with a trajectory, CSV log and plot", formatter_class=fmt
    )
    _common_model_args(
        p,
        "output prefix: writes OUT.traj (ASE trajectory), OUT.csv (log), OUT.json (settings) and "
        "OUT.png (plot). Ctrl-C keeps the frames run so far (exit code 130); a bond change stops "
        "the run the same way, writing OUT_bond_change.xyz (exit code 3)",
        dtype="float32",
    )
    p.add_argument(
        "--ensemble",
        choices=["langevin", "nve"],
        default="langevin",
        help="Langevin thermostat or constant energy (velocity Verlet)",
    )
    p.add_argument(
        "--temperature-K",
        dest="temperature_K",
        type=float,
        default=300.0,
        help="thermostat and initial Maxwell-Boltzmann temperature (K)",
    )
    p.add_argument("--timestep-fs", dest="timestep_fs", type=float, default=0.5, help="time step (fs)")
    p.add_argument("--steps", type=int, default=1000, help="number of MD steps")
    p.add_argument(
        "--friction-per-fs", dest="friction_per_fs", type=float, default=0.01, help="Langevin friction (1/fs)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the initial velocities and the thermostat noise")
    p.add_argument("--interval", type=int, default=10, help="write a frame and a log line every N steps")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (slow first step, faster after)")
    p.set_defaults(func=md_command)

    p = sub.add_parser("relax", help="relax a structure (BFGS or FIRE) and write it", formatter_class=fmt)
    _common_model_args(p, "relaxed structure file (format from the suffix, e.g. .xyz)", dtype="float64")
    p.add_argument(
        "--fmax-eV-per-A",
        dest="fmax_eV_per_A",
        type=float,
        default=0.01,
        help="converged when every atom's force is below this (eV/Å)",
    )
    p.add_argument("--steps", type=int, default=500, help="maximum optimizer steps")
    p.add_argument("--optimizer", choices=["BFGS", "FIRE"], default="BFGS", help="ASE optimizer")
    p.set_defaults(func=relax_command)
