"""MD throughput, NVE energy drift and batched-replica throughput of emgp-md models.

Protocols (``docs/benchmarks.md``):

- **MD throughput**: ASE ``VelocityVerlet``, 0.5 fs, 1000 timed steps after 100 warm-up steps,
  300 K start, no logger or trajectory attached; steps/s and ns/day, float32 and float64.
- **NVE drift**: 10 ps ``VelocityVerlet`` at 0.5 fs from a 300 K start (seeded Maxwell–Boltzmann,
  ``Stationary``, ``ZeroRotation``: :func:`emgp_md.md.init_velocities`); the total energy is
  recorded every ``--drift-interval`` steps and a straight line is fitted to it
  (:func:`emgp_md.md.energy_drift_meV_per_atom_ps`); meV/atom/ps in float32 and float64.
- **Batched throughput**: ``N`` jittered replicas of one molecule in one ``GraphBatch``
  (:func:`emgp_md.data.graph.repeat_topology`) through
  :func:`emgp_md.models.forces.energy_and_forces`; molecule evaluations per second against one
  ``EMGPCalculator`` call per molecule. Calls for all ``N`` are interleaved.

Models: every shipped model (``emgp_md.available_models()``) or the ``--molecules`` list, or
``--checkpoint PATH`` for one molecule. Without a shipped model a stand-in is used (paper-size
EGNN, official backbone + random head): its speed is real, its drift is meaningless, and the
report says so.

Example::

    python benchmarks/bench_md.py --json benchmarks/results/md.json
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ase import Atoms, units
from ase.calculators.calculator import all_changes
from ase.md.verlet import VelocityVerlet

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    ModelSpec,
    checkpoint_model,
    ensure_topology,
    machine_info,
    markdown_table,
    molecule_atoms,
    paper_size_model,
    set_threads,
    setup_logging,
    shipped_model,
    summarize_ms,
    write_json,
)

log = logging.getLogger("bench_md")
FS_PER_DAY_TO_NS = 86400.0 * 1e-6  # (fs of simulated time per s of wall time) -> ns/day


def ns_per_day(steps_per_s: float, timestep_fs: float) -> float:
    """Simulated nanoseconds per day of wall time."""
    return steps_per_s * timestep_fs * FS_PER_DAY_TO_NS


def make_calculator(spec: ModelSpec, dtype: str) -> Any:
    """An ``EMGPCalculator`` on an independent copy of the model."""
    from emgp_md.calculator import EMGPCalculator

    return EMGPCalculator(model=spec.copy_model(), metadata=spec.metadata, dtype=dtype)


def prepared_atoms(
    spec: ModelSpec, atoms: Atoms, dtype: str, temperature_K: float, seed: int
) -> tuple[Atoms, list[int]]:
    """A copy of ``atoms`` with a counting calculator and seeded 300 K velocities; returns the counter."""
    from emgp_md.md import init_velocities

    a = atoms.copy()
    calc = make_calculator(spec, dtype)
    counter = [0]
    inner = calc.calculate

    def counted(*args: Any, **kwargs: Any) -> None:
        counter[0] += 1
        inner(*args, **kwargs)

    calc.calculate = counted  # type: ignore[method-assign]
    a.calc = calc
    init_velocities(a, temperature_K, seed)
    return a, counter


def md_throughput(
    spec: ModelSpec,
    atoms: Atoms,
    dtype: str,
    steps: int,
    warmup: int,
    timestep_fs: float,
    temperature_K: float,
    seed: int,
) -> dict[str, Any]:
    """Wall time of ``steps`` VelocityVerlet steps after ``warmup`` untimed ones."""
    a, counter = prepared_atoms(spec, atoms, dtype, temperature_K, seed)
    dyn = VelocityVerlet(a, timestep=timestep_fs * units.fs)
    dyn.run(warmup)
    calls_before = counter[0]
    t0 = time.perf_counter()
    dyn.run(steps)
    wall = time.perf_counter() - t0
    sps = steps / wall
    return {
        "dtype": dtype,
        "steps": steps,
        "warmup_steps": warmup,
        "wall_s": wall,
        "steps_per_s": sps,
        "ms_per_step": 1e3 / sps,
        "ns_per_day": ns_per_day(sps, timestep_fs),
        "model_calls_per_step": (counter[0] - calls_before) / steps,
    }


def nve_drift(
    spec: ModelSpec,
    atoms: Atoms,
    dtype: str,
    drift_ps: float,
    interval: int,
    timestep_fs: float,
    temperature_K: float,
    seed: int,
) -> dict[str, Any]:
    """NVE run of ``drift_ps``; straight-line drift of the total energy and its spread."""
    from emgp_md.md import energy_drift_meV_per_atom_ps

    a, _ = prepared_atoms(spec, atoms, dtype, temperature_K, seed)
    n_steps = round(drift_ps * 1000.0 / timestep_fs)
    dyn = VelocityVerlet(a, timestep=timestep_fs * units.fs)
    time_ps, etot, temps = [], [], []

    def record() -> None:
        epot, ekin = a.get_potential_energy(), a.get_kinetic_energy()
        time_ps.append(dyn.nsteps * timestep_fs / 1000.0)
        etot.append(epot + ekin)
        temps.append(a.get_temperature())

    record()
    dyn.attach(record, interval=interval)
    t0 = time.perf_counter()
    error = None
    try:
        dyn.run(n_steps)
    except (ValueError, RuntimeError) as exc:  # non-finite positions are rejected by the calculator
        error = f"{type(exc).__name__}: {exc}"
        log.warning("%s %s NVE run stopped at step %d: %s", spec.label, dtype, dyn.nsteps, error)
    wall = time.perf_counter() - t0
    t, e = np.asarray(time_ps), np.asarray(etot)
    _, idx = np.unique(t, return_index=True)  # ASE may call observers twice at step 0
    t, e = t[idx], e[idx]
    finite = bool(np.all(np.isfinite(e)))
    n = len(a)
    ok = finite and len(t) >= 3
    return {
        "dtype": dtype,
        "simulated_ps": float(dyn.nsteps * timestep_fs / 1000.0),
        "steps": int(dyn.nsteps),
        "record_interval_steps": interval,
        "wall_s": wall,
        "ms_per_step": 1e3 * wall / max(dyn.nsteps, 1),
        "drift_meV_per_atom_ps": energy_drift_meV_per_atom_ps(t, e, n) if ok else float("nan"),
        "max_abs_dEtot_meV_per_atom": float(np.max(np.abs(e - e[0])) * 1000.0 / n) if finite else float("nan"),
        "std_Etot_meV_per_atom": float(np.std(e) * 1000.0 / n) if finite else float("nan"),
        "mean_temperature_K": float(np.mean(temps)),
        "error": error,
    }


def batched_throughput(
    spec: ModelSpec, atoms: Atoms, replicas: list[int], calls: int, warmup: int, jitter_A: float, seed: int
) -> list[dict[str, Any]]:
    """Median time per call of one calculator call and of ``energy_and_forces`` on N replicas (float32)."""
    from emgp_md.data.convert import topology_for_atoms
    from emgp_md.data.graph import repeat_topology
    from emgp_md.models.forces import energy_and_forces

    rng = np.random.default_rng(seed)
    topo = topology_for_atoms(atoms, spec.metadata.get("topology"))
    model = spec.copy_model().float()
    calc, a = make_calculator(spec, "float32"), atoms.copy()
    base = torch.as_tensor(atoms.positions, dtype=torch.float32)
    labels = ["calculator"] + [f"N={n}" for n in replicas]
    times: dict[str, list[float]] = {k: [] for k in labels}
    for i in range(warmup + calls):
        order = labels[i % len(labels) :] + labels[: i % len(labels)]
        for label in order:
            if label == "calculator":
                a.positions = atoms.positions + rng.normal(0.0, jitter_A, size=atoms.positions.shape)
                t0 = time.perf_counter()
                calc.calculate(a, ["energy", "forces"], all_changes)
            else:
                n = int(label[2:])
                pos = base + torch.as_tensor(rng.normal(0.0, jitter_A, size=(n, *base.shape)), dtype=torch.float32)
                t0 = time.perf_counter()
                graph = repeat_topology(topo, pos)
                energy_and_forces(model, graph)
            dt = time.perf_counter() - t0
            if i >= warmup:
                times[label].append(dt)
    calc_med = summarize_ms(times["calculator"])["median_ms"]
    rows = []
    for label in labels:
        n = 1 if label == "calculator" else int(label[2:])
        stats = summarize_ms(times[label])
        per_s = n / (stats["median_ms"] * 1e-3)
        rows.append(
            {
                "mode": "EMGPCalculator.calculate, 1 molecule"
                if label == "calculator"
                else f"repeat_topology + energy_and_forces, {n} replica(s)",
                "replicas": n,
                **stats,
                "molecule_evals_per_s": per_s,
                "speedup_vs_calculator": per_s / (1e3 / calc_med),
            }
        )
    return rows


def select_specs(args: argparse.Namespace) -> tuple[list[tuple[str, ModelSpec, bool]], list[str]]:
    """(molecule, model, is_stand_in) for each molecule; notes on what was used."""
    from emgp_md.pretrained import available_models

    notes: list[str] = []
    shipped = sorted(available_models())
    if args.checkpoint:
        molecules = args.molecules or ["aspirin"]
        if len(molecules) != 1:
            raise SystemExit("--checkpoint is one molecule's model: give exactly one --molecules name")
        spec = checkpoint_model(args.checkpoint)
        notes.append(f"{molecules[0]}: {spec.description}")
        return [(molecules[0], spec, False)], notes
    molecules = args.molecules or shipped or ["aspirin"]
    out = []
    for mol in molecules:
        spec = shipped_model(mol)
        if spec is None:
            spec = paper_size_model(args.weights, args.seed)
            spec.label = f"stand-in {spec.label}"
            notes.append(
                f"{mol}: NO shipped model; stand-in = {spec.description}. Speed is representative, "
                "the NVE drift of a random energy head is not"
            )
            out.append((mol, spec, True))
        else:
            notes.append(f"{mol}: {spec.description}")
            out.append((mol, spec, False))
    return out, notes


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--molecules",
        type=lambda s: [m for m in s.split(",") if m],
        help="comma-separated molecules (default: all shipped models, else aspirin)",
    )
    parser.add_argument("--checkpoint", help="emgp-md checkpoint for the single --molecules molecule")
    parser.add_argument(
        "--weights",
        choices=["auto", "official", "random"],
        default="auto",
        help="backbone of the stand-in used when a molecule has no shipped model",
    )
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--timestep", type=float, default=0.5, help="fs")
    parser.add_argument("--temperature", type=float, default=300.0, help="starting temperature, K")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=1000, help="timed MD steps")
    parser.add_argument("--warmup", type=int, default=100, help="untimed MD steps before them")
    parser.add_argument("--throughput-dtypes", type=lambda s: s.split(","), default=["float32", "float64"])
    parser.add_argument("--drift-ps", type=float, default=10.0, help="NVE length, ps (0 skips the drift runs)")
    parser.add_argument("--drift-interval", type=int, default=10, help="steps between total-energy records")
    parser.add_argument("--drift-dtypes", type=lambda s: s.split(","), default=["float32", "float64"])
    parser.add_argument("--batch-molecule", default="aspirin", help="molecule of the batched test ('' skips it)")
    parser.add_argument("--replicas", type=lambda s: [int(x) for x in s.split(",")], default=[1, 8, 32, 128])
    parser.add_argument("--batch-calls", type=int, default=50, help="timed calls per batch size")
    parser.add_argument("--batch-warmup", type=int, default=5)
    parser.add_argument("--jitter", type=float, default=1e-3, help="replica position jitter, Å")
    parser.add_argument("--json", type=Path, help="write the full report here")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup < 0 or args.drift_interval < 1 or args.drift_ps < 0 or args.batch_calls < 1:
        parser.error("need --steps >= 1, --warmup >= 0, --drift-interval >= 1, --drift-ps >= 0, --batch-calls >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the MD benchmarks and print the Markdown report."""
    args = parse_args(argv)
    setup_logging(args.verbose)
    set_threads(args.threads)
    info = machine_info()
    selected, notes = select_specs(args)
    for note in notes:
        log.info(note)
    thr_rows, drift_rows, results = [], [], []
    for mol, spec, stand_in in selected:
        atoms = molecule_atoms(mol)
        ensure_topology(spec, atoms)
        entry: dict[str, Any] = {
            "molecule": mol,
            "n_atoms": len(atoms),
            "model": spec.label,
            "description": spec.description,
            "stand_in": stand_in,
            "throughput": [],
            "nve": [],
        }
        for dtype in args.throughput_dtypes:
            log.info("%s: throughput %s, %d + %d steps", mol, dtype, args.warmup, args.steps)
            r = md_throughput(spec, atoms, dtype, args.steps, args.warmup, args.timestep, args.temperature, args.seed)
            entry["throughput"].append(r)
            thr_rows.append(
                [
                    mol,
                    len(atoms),
                    spec.label,
                    dtype,
                    r["steps_per_s"],
                    r["ms_per_step"],
                    r["ns_per_day"],
                    r["model_calls_per_step"],
                ]
            )
        if args.drift_ps > 0:
            for dtype in args.drift_dtypes:
                log.info("%s: NVE %s, %.3g ps", mol, dtype, args.drift_ps)
                r = nve_drift(
                    spec, atoms, dtype, args.drift_ps, args.drift_interval, args.timestep, args.temperature, args.seed
                )
                entry["nve"].append(r)
                drift_rows.append(
                    [
                        mol,
                        spec.label + (" (meaningless)" if stand_in else ""),
                        dtype,
                        r["simulated_ps"],
                        f"{r['drift_meV_per_atom_ps']:.3g}",
                        f"{r['max_abs_dEtot_meV_per_atom']:.3g}",
                        f"{r['mean_temperature_K']:.0f}",
                        r["error"] or "ok",
                    ]
                )
        results.append(entry)
    batched: list[dict[str, Any]] = []
    if args.batch_molecule:
        match = [(m, s) for m, s, _ in selected if m == args.batch_molecule]
        spec = (
            match[0][1] if match else (shipped_model(args.batch_molecule) or paper_size_model(args.weights, args.seed))
        )
        atoms = molecule_atoms(args.batch_molecule)
        ensure_topology(spec, atoms)
        log.info(
            "%s: batched throughput, replicas %s, %d calls each", args.batch_molecule, args.replicas, args.batch_calls
        )
        batched = batched_throughput(
            spec, atoms, args.replicas, args.batch_calls, args.batch_warmup, args.jitter, args.seed
        )
    out = [
        (
            f"MD benchmarks, {args.threads} thread(s), timestep {args.timestep} fs, {args.temperature:g} K start; "
            f"{info['cpu_model']}, torch {info['torch']}, {info['date_utc']}"
        ),
        "",
        f"MD throughput (VelocityVerlet, {args.steps} steps after {args.warmup} warm-up):",
        "",
        markdown_table(
            ["molecule", "atoms", "model", "dtype", "steps/s", "ms/step", "ns/day", "model calls/step"], thr_rows
        ),
    ]
    if drift_rows:
        out += [
            "",
            f"NVE energy drift ({args.drift_ps:g} ps, linear fit of E_tot every {args.drift_interval} steps):",
            "",
            markdown_table(
                [
                    "molecule",
                    "model",
                    "dtype",
                    "ps",
                    "drift meV/atom/ps",
                    "max |ΔE_tot| meV/atom",
                    "mean T (K)",
                    "status",
                ],
                drift_rows,
            ),
        ]
    if batched:
        out += [
            "",
            f"Batched evaluation, {args.batch_molecule}, float32, median of {args.batch_calls} calls:",
            "",
            markdown_table(
                ["mode", "median ms/call", "molecule evals/s", "× calculator"],
                [
                    [b["mode"], b["median_ms"], b["molecule_evals_per_s"], f"{b['speedup_vs_calculator']:.2f}×"]
                    for b in batched
                ],
            ),
        ]
    out += [""] + [f"- {n}" for n in notes]
    print("\n".join(out))
    write_json(
        args.json,
        {
            "benchmark": "md",
            "machine": info,
            "args": {k: str(v) for k, v in vars(args).items()},
            "notes": notes,
            "molecules": results,
            "batched": batched,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
