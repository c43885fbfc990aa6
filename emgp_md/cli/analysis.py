"""``emgp-md landscape`` and ``emgp-md analyze``: parse, call the library, write files.

Register the commands with :func:`register`; each command parses, calls the library and reports.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)
DIRECTIONS = ("random", "pca", "hessian")


def register(sub: Any) -> None:
    """Add ``landscape`` and ``analyze`` to the CLI's sub-parsers (``sub = parser.add_subparsers(...)``)."""
    _add_landscape_parser(sub)
    _add_analyze_parser(sub)


# --------------------------------------------------------------------------- landscape
def _add_landscape_parser(sub: Any) -> None:
    p = sub.add_parser(
        "landscape",
        help="2D energy landscape around a structure for one or several models (PNG + npz/CSV/JSON)",
        description="Energies E(X0 + a·d1 + b·d2) on a grid; a, b are per-atom RMS displacements in Å. "
        "Writes PREFIX.png, PREFIX.npz, PREFIX.csv and PREFIX.json (summary numbers).",
    )
    p.add_argument("structure", help="shipped molecule name or structure file (X0)")
    p.add_argument(
        "--model",
        action="append",
        default=None,
        metavar="[LABEL=]CKPT",
        help="checkpoint, repeat for side-by-side panels (default: the shipped model of the formula)",
    )
    p.add_argument(
        "--directions",
        choices=DIRECTIONS,
        default="random",
        help="random (rigid motions removed), pca of --frames, or hessian normal modes of the first model",
    )
    p.add_argument("--frames", help="frames for --directions pca: rMD17 .npz or a trajectory, in X0's atom order")
    p.add_argument(
        "--modes",
        type=int,
        nargs=2,
        default=(0, 1),
        metavar=("I", "J"),
        help="Hessian modes, counted from the softest internal mode (default 0 1)",
    )
    p.add_argument("--extent-A", dest="extent_A", type=float, default=1.0, help="grid half-width (Å RMS per atom)")
    p.add_argument("--n", type=int, default=41, help="grid points per axis (odd)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random directions")
    p.add_argument("--shared-scale", dest="shared_scale", action="store_true", help="one colour scale for all panels")
    p.add_argument(
        "--error-map",
        dest="error_map",
        action="store_true",
        help="with an rMD17 --frames file: also model vs DFT energies on the PC plane (PREFIX_pcmap_*)",
    )
    p.add_argument("--dtype", choices=["float32", "float64"], default="float64")
    p.add_argument("--out", required=True, help="output prefix")
    p.set_defaults(func=landscape_command)


def landscape_command(args: argparse.Namespace) -> int:
    """Run ``emgp-md landscape``: grids for every model on shared directions, files and figure."""
    from emgp_md.landscape import energy_grid, save_landscapes
    from emgp_md.plots import save_figure
    from emgp_md.plots.landscape import plot_landscapes
    from emgp_md.pretrained import load_structure

    atoms = load_structure(args.structure)
    evaluators = _evaluators(args.model, atoms, args.dtype)
    directions, method = _directions(args, atoms, next(iter(evaluators.values())))
    landscapes = {
        name: energy_grid(ev, atoms, directions[0], directions[1], args.extent_A, args.n, method, name)
        for name, ev in evaluators.items()
    }
    prefix = Path(args.out)
    paths = save_landscapes(prefix, landscapes, {"structure": args.structure, "directions": args.directions})
    fig = plot_landscapes(
        landscapes,
        shared_scale=args.shared_scale,
        title=f"{atoms.get_chemical_formula()}: energy around X₀, directions {method}",
    )
    save_figure(fig, prefix.with_suffix(".png"))
    paths.append(prefix.with_suffix(".png"))
    if args.error_map:
        paths += _error_maps(args, evaluators, prefix)
    log.info("wrote %s", ", ".join(str(p) for p in paths))
    return 0


def _evaluators(models: list[str] | None, atoms: Any, dtype: str) -> dict[str, Any]:
    from emgp_md.calculator import EMGPCalculator
    from emgp_md.landscape import as_evaluator

    if not models:
        ev = as_evaluator(EMGPCalculator(dtype=dtype), atoms)
        return {ev.label: ev}
    out: dict[str, Any] = {}
    for spec in models:
        label, path = _split_label(spec)
        if label in out:
            label = f"{label} ({len(out) + 1})"
        out[label] = as_evaluator(path, atoms, label, dtype)
    return out


def _split_label(spec: str) -> tuple[str, str]:
    """``LABEL=PATH`` or ``PATH`` (label: the file stem, or its folder for a generic name like model.pt)."""
    if "=" in spec and not Path(spec).exists():
        label, path = spec.split("=", 1)
        return label, path
    path = Path(spec)
    return (path.parent.name or path.stem) if path.stem in ("model", "best", "last") else path.stem, spec


def _directions(args: argparse.Namespace, atoms: Any, first: Any) -> tuple[np.ndarray, str]:
    from emgp_md.landscape import normal_modes, pca_directions, random_directions

    if args.directions == "random":
        return random_directions(atoms.positions, args.seed), f"random (seed {args.seed})"
    if args.directions == "pca":
        if not args.frames:
            raise ValueError("--directions pca needs --frames FILE (an rMD17 .npz or a trajectory)")
        pca = pca_directions(read_frames(args.frames, atoms.numbers), atoms.positions)
        var = ", ".join(f"{100 * v:.0f}%" for v in pca.explained_variance_ratio)
        return pca.directions, f"PCA of {len(pca.coords_A)} frames ({var} of variance)"
    modes = normal_modes(first.hessian(atoms.positions), atoms.positions, tuple(args.modes))
    lam = ", ".join(f"{v:.3g}" for v in modes.eigenvalues_eV_per_A2)
    return modes.directions, f"Hessian modes {args.modes[0]}, {args.modes[1]} of {first.label} (λ = {lam} eV/Å²)"


def read_frames(path: str | Path, numbers: np.ndarray | None = None) -> np.ndarray:
    """Positions (n_frames, n_atoms, 3) in Å from an rMD17 ``.npz`` or any multi-frame file ASE reads.

    ``numbers`` (n_atoms,), when given, must match the frames' atomic numbers atom by atom.
    """
    path = Path(path)
    if path.suffix == ".npz":
        from emgp_md.data.rmd17 import load_frames

        frames = load_frames(path)
        coords, z = frames.coords, frames.z
    else:
        import ase.io

        images = ase.io.read(str(path), index=":")
        coords, z = np.stack([a.positions for a in images]), images[0].numbers
    if numbers is not None and not np.array_equal(np.asarray(z), np.asarray(numbers)):
        raise ValueError(
            f"atoms of {str(path)!r} ({list(z)}) are not those of the structure ({list(numbers)}), atom by atom"
        )
    return coords


def _error_maps(args: argparse.Namespace, evaluators: dict[str, Any], prefix: Path) -> list[Path]:
    from emgp_md.data.rmd17 import load_frames
    from emgp_md.landscape import pc_energy_map
    from emgp_md.plots import save_figure
    from emgp_md.plots.landscape import plot_pc_energy_map

    if not args.frames or Path(args.frames).suffix != ".npz":
        raise ValueError("--error-map needs --frames with an rMD17 .npz (frames with reference energies)")
    frames = load_frames(args.frames)
    paths, summaries = [], {}
    for name, ev in evaluators.items():
        pcmap = pc_energy_map(ev, frames, label=name)
        stem = prefix.parent / f"{prefix.name}_pcmap_{_safe(name)}"
        save_figure(plot_pc_energy_map(pcmap), stem.with_suffix(".png"))
        pcmap.to_csv(stem.with_suffix(".csv"))
        summaries[name] = pcmap.summary()
        paths += [stem.with_suffix(".png"), stem.with_suffix(".csv")]
    out = prefix.parent / f"{prefix.name}_pcmap.json"
    out.write_text(json.dumps({"frames": str(args.frames), "models": summaries}, indent=2) + "\n")
    return [*paths, out]


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


# --------------------------------------------------------------------------- analyze
def _add_analyze_parser(sub: Any) -> None:
    p = sub.add_parser(
        "analyze",
        help="MD analysis: energy/temperature traces, NVE drift, stable time, h(r) vs reference (PNG + JSON)",
        description="Analyse an MD trajectory. Writes PREFIX.png and PREFIX.json and prints the summary.",
    )
    p.add_argument("trajectory", help="ASE trajectory (e.g. from emgp-md md)")
    p.add_argument("--log", help="the run's CSV log (default: TRAJ with .csv if present)")
    p.add_argument("--reference", help="rMD17 .npz whose frames give the reference h(r)")
    p.add_argument(
        "--threshold-A",
        dest="threshold_A",
        type=float,
        default=0.5,
        help="bond deviation that ends the stable time (Å)",
    )
    p.add_argument(
        "--frame-interval-fs",
        dest="frame_interval_fs",
        type=float,
        help="time between frames (fs), needed only without a log",
    )
    p.add_argument("--bins", type=int, default=200, help="h(r) bins")
    p.add_argument("--r-max-A", dest="r_max_A", type=float, default=10.0, help="h(r) range (Å)")
    p.add_argument("--out", required=True, help="output prefix")
    p.set_defaults(func=analyze_command)


def analyze_command(args: argparse.Namespace) -> int:
    """Run ``emgp-md analyze``: analysis JSON and figure, summary printed to stdout."""
    from emgp_md.analysis import analyze_trajectory
    from emgp_md.plots import save_figure
    from emgp_md.plots.md import plot_md_analysis

    reference = None
    if args.reference:
        from emgp_md.data.rmd17 import load_frames

        reference = load_frames(args.reference)
    result = analyze_trajectory(
        args.trajectory, args.log, reference, args.threshold_A, args.frame_interval_fs, args.bins, args.r_max_A
    )
    prefix = Path(args.out)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    result.to_json(prefix.with_suffix(".json"))
    save_figure(plot_md_analysis(result), prefix.with_suffix(".png"))
    print(json.dumps(result.summary(), indent=2))
    log.info("wrote %s and %s", prefix.with_suffix(".json"), prefix.with_suffix(".png"))
    return 0
