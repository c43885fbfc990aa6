"""Calculator latency on aspirin (21 atoms): emgp-md's EMGPCalculator against the reference EGNN.

Protocol (``docs/benchmarks.md``, "Speed"): one
``calc.calculate(atoms, ["energy", "forces"], all_changes)`` per call, positions jittered by
N(0, 1e-3 Å) around the starting geometry before every call (seeded) so that nothing is cached,
20 warm-up calls, median of 200. All variants are run round-robin within each call (the order
rotates from call to call), so they see the same machine load and the same geometries.

Variants, each in float32 and float64:

- the paper-size EGNN (7 × 128; backbone from the authors' ``checkpoint-3dmgp`` when present,
  seeded atomwise head), ours and the reference (:mod:`reference_egnn`) with identical weights;
- the shipped aspirin model (``emgp_md.pretrained``) or ``--checkpoint PATH``, ours and the
  reference; skipped (and said so) when neither exists.

Outputs of ours and of the reference are compared on every call: float32 must agree within
``--tol32`` (absolute + relative, eV and eV/Å), float64 within ``--tol64``. The exit status is 1
when they do not.

Example::

    python benchmarks/bench_calculator.py --json benchmarks/results/calculator.json
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes

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
from reference_egnn import ReferenceCalculator, ReferenceEnergyModel

log = logging.getLogger("bench_calculator")
DTYPES = ("float32", "float64")


@dataclass
class Variant:
    """One calculator under test and what it produced.

    Attributes
    ----------
    model_label : str
        The model (e.g. ``"paper 7x128"``).
    impl : ``"ours"`` or ``"reference"``
    dtype : ``"float32"`` or ``"float64"``
    calc : Calculator
    atoms : Atoms
        Its own copy of the structure.
    """

    model_label: str
    impl: str
    dtype: str
    calc: Calculator
    atoms: Atoms
    times_s: list[float] = field(default_factory=list)
    energies: list[float] = field(default_factory=list)
    forces: list[np.ndarray] = field(default_factory=list)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.model_label, self.impl, self.dtype)


def make_variants(
    specs: list[ModelSpec], atoms: Atoms, compiled: bool = False, unwatched: bool = False
) -> list[Variant]:
    """Ours and the reference, float32 and float64, for each model (independent model copies);
    with ``compiled``, also ours with ``torch.compile`` in float32; with ``unwatched``, also ours in
    float32 with the per-call bond-change check switched off (to measure what the check costs)."""
    from emgp_md.calculator import EMGPCalculator

    variants = []
    for spec in specs:
        ensure_topology(spec, atoms)
        for dtype in DTYPES:
            ours = EMGPCalculator(model=spec.copy_model(), metadata=spec.metadata, dtype=dtype)
            ref = ReferenceCalculator(
                ReferenceEnergyModel.from_model(spec.model), spec.energy_to_eV, spec.metadata.get("topology"), dtype
            )
            variants.append(Variant(spec.label, "ours", dtype, ours, atoms.copy()))
            variants.append(Variant(spec.label, "reference", dtype, ref, atoms.copy()))
        if compiled:
            calc = EMGPCalculator(model=spec.copy_model(), metadata=spec.metadata, dtype="float32", compile=True)
            variants.append(Variant(spec.label, "ours-compiled", "float32", calc, atoms.copy()))
        if unwatched:
            calc = EMGPCalculator(model=spec.copy_model(), metadata=spec.metadata, dtype="float32")
            calc._check_bonds = lambda pos_A: None  # type: ignore[method-assign]  # benchmark only
            variants.append(Variant(spec.label, "ours-unwatched", "float32", calc, atoms.copy()))
    return variants


def run_calls(variants: list[Variant], base: np.ndarray, calls: int, warmup: int, jitter_A: float, seed: int) -> None:
    """Time ``warmup + calls`` round-robin calls of every variant; record timings (after warm-up) and results."""
    rng = np.random.default_rng(seed)
    k = len(variants)
    for i in range(warmup + calls):
        pos = base + rng.normal(0.0, jitter_A, size=base.shape)
        order = variants[i % k :] + variants[: i % k]
        for v in order:
            v.atoms.positions = pos
            t0 = time.perf_counter()
            v.calc.calculate(v.atoms, ["energy", "forces"], all_changes)
            dt = time.perf_counter() - t0
            if i >= warmup:
                v.times_s.append(dt)
            v.energies.append(float(v.calc.results["energy"]))
            v.forces.append(np.array(v.calc.results["forces"], dtype=np.float64))
        if (i + 1) % 50 == 0:
            log.info("call %d / %d", i + 1, warmup + calls)


def compare(ours: Variant, ref: Variant, tol: float) -> dict[str, Any]:
    """Largest absolute and relative differences of energies (eV) and forces (eV/Å) over all calls.

    Passes when ``|Δ| <= tol + tol·|reference|`` for every energy and force component.
    """
    e_o, e_r = np.asarray(ours.energies), np.asarray(ref.energies)
    f_o, f_r = np.stack(ours.forces), np.stack(ref.forces)
    de, df = np.abs(e_o - e_r), np.abs(f_o - f_r)
    ok = bool(np.all(de <= tol + tol * np.abs(e_r)) and np.all(df <= tol + tol * np.abs(f_r)))
    return {
        "model": ours.model_label,
        "dtype": ours.dtype,
        "calls_compared": len(e_o),
        "max_abs_dE_eV": float(de.max()),
        "max_rel_dE": float((de / np.maximum(np.abs(e_r), 1e-300)).max()),
        "max_abs_dF_eV_A": float(df.max()),
        "max_rel_dF": float(df.max() / max(np.abs(f_r).max(), 1e-300)),
        "max_abs_F_eV_A": float(np.abs(f_r).max()),
        "max_abs_E_eV": float(np.abs(e_r).max()),
        "tolerance_abs_and_rel": tol,
        "pass": ok,
    }


def select_models(args: argparse.Namespace) -> tuple[list[ModelSpec], list[str]]:
    """The paper-size model and the shipped (or ``--checkpoint``) model; notes on what was used."""
    notes = []
    specs = [paper_size_model(args.weights, args.seed)]
    notes.append(f"{specs[0].label}: {specs[0].description}")
    second = checkpoint_model(args.checkpoint) if args.checkpoint else shipped_model(args.molecule)
    if second is None:
        notes.append(
            f"no shipped {args.molecule!r} model (emgp_md.available_models() has none) and no --checkpoint: "
            "the shipped-size rows are omitted; the shipped size is the paper size (7 x 128) by configuration"
        )
    else:
        specs.append(second)
        notes.append(f"{second.label}: {second.description}")
    return specs, notes


def report(variants: list[Variant], checks: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """Markdown tables (latency with ratios, equality) and the latency rows for the JSON."""
    by_key = {v.key: v for v in variants}
    rows, table = [], []
    for v in variants:
        stats = summarize_ms(v.times_s)
        ours_med = summarize_ms(by_key[(v.model_label, "ours", v.dtype)].times_s)["median_ms"]
        f32_med = summarize_ms(by_key[(v.model_label, v.impl, "float32")].times_s)["median_ms"]
        ratio = stats["median_ms"] / ours_med
        row = {
            "model": v.model_label,
            "impl": v.impl,
            "dtype": v.dtype,
            **stats,
            "ratio_to_ours_same_dtype": ratio,
            "ratio_to_same_impl_float32": stats["median_ms"] / f32_med,
            "times_ms": [t * 1e3 for t in v.times_s],
        }
        rows.append(row)
        table.append(
            [
                v.model_label,
                v.impl,
                v.dtype,
                stats["median_ms"],
                f"{stats['p10_ms']:.3g}–{stats['p90_ms']:.3g}",
                f"{ratio:.2f}×",
            ]
        )
    md = markdown_table(
        ["model", "implementation", "dtype", "median ms", "p10–p90 ms", "time / ours (same dtype)"], table
    )
    eq = markdown_table(
        [
            "model",
            "dtype",
            "max abs ΔE (eV)",
            "max rel ΔE",
            "max abs ΔF (eV/Å)",
            "max ΔF / max|F|",
            "tol (abs+rel)",
            "pass",
        ],
        [
            [
                c["model"],
                c["dtype"],
                f"{c['max_abs_dE_eV']:.3g}",
                f"{c['max_rel_dE']:.3g}",
                f"{c['max_abs_dF_eV_A']:.3g}",
                f"{c['max_rel_dF']:.3g}",
                f"{c['tolerance_abs_and_rel']:.0e}",
                "yes" if c["pass"] else "**NO**",
            ]
            for c in checks
        ],
    )
    return md + "\n\nOurs vs reference, same weights and geometries (every call):\n\n" + eq, rows


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=200, help="timed calls per variant (median over them)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed warm-up calls per variant")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--jitter", type=float, default=1e-3, help="std of the per-call position jitter, Å")
    parser.add_argument("--seed", type=int, default=0, help="seed of the jitter and of the random weights")
    parser.add_argument(
        "--weights",
        choices=["auto", "official", "random"],
        default="auto",
        help="paper-size backbone: authors' checkpoint (auto: when present) or random",
    )
    parser.add_argument("--molecule", default="aspirin", help="shipped model and rMD17 molecule")
    parser.add_argument("--checkpoint", help="emgp-md checkpoint to use instead of the shipped model")
    parser.add_argument("--structure", help="structure file (or shipped name) instead of the default geometry")
    parser.add_argument("--tol32", type=float, default=1e-5, help="float32 tolerance, absolute and relative")
    parser.add_argument("--tol64", type=float, default=1e-10, help="float64 tolerance, absolute and relative")
    parser.add_argument("--compile", action="store_true", help="add ours with torch.compile (float32)")
    parser.add_argument(
        "--bond-check-overhead",
        action="store_true",
        help="add ours (float32) with the per-call bond-change check off, to measure its cost",
    )
    parser.add_argument("--json", type=Path, help="write the full report (with all timings) here")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    if args.calls < 1 or args.warmup < 0:
        parser.error("need --calls >= 1 and --warmup >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the Markdown report; return 1 if ours and the reference disagree."""
    args = parse_args(argv)
    setup_logging(args.verbose)
    set_threads(args.threads)
    info = machine_info()
    atoms = molecule_atoms(args.molecule, args.structure)
    specs, notes = select_models(args)
    for note in notes:
        log.info(note)
    variants = make_variants(specs, atoms, args.compile, args.bond_check_overhead)
    log.info(
        "%d variants x (%d warm-up + %d timed) calls, %d thread(s), %d atoms",
        len(variants),
        args.warmup,
        args.calls,
        args.threads,
        len(atoms),
    )
    run_calls(variants, atoms.positions.copy(), args.calls, args.warmup, args.jitter, args.seed)
    by_key = {v.key: v for v in variants}
    checks = [
        compare(
            by_key[(s.label, "ours", d)],
            by_key[(s.label, "reference", d)],
            args.tol32 if d == "float32" else args.tol64,
        )
        for s in specs
        for d in DTYPES
    ]
    if args.compile:
        for s in specs:
            check = compare(
                by_key[(s.label, "ours-compiled", "float32")], by_key[(s.label, "reference", "float32")], args.tol32
            )
            check["dtype"] = "float32 (ours compiled)"
            checks.append(check)
            ref_ms = summarize_ms(by_key[(s.label, "reference", "float32")].times_s)["median_ms"]
            comp_ms = summarize_ms(by_key[(s.label, "ours-compiled", "float32")].times_s)["median_ms"]
            notes.append(f"{s.label}: reference / ours-compiled (float32) = {ref_ms / comp_ms:.2f}x")
    md, rows = report(variants, checks)
    header = (
        f"Calculator latency, {args.molecule} ({len(atoms)} atoms), {args.threads} thread(s), "
        f"{args.calls} timed calls after {args.warmup} warm-up, jitter {args.jitter} Å; "
        f"{info['cpu_model']}, torch {info['torch']}, {info['date_utc']}"
    )
    print(header + "\n\n" + md + "\n\n" + "\n".join(f"- {n}" for n in notes))
    write_json(
        args.json,
        {
            "benchmark": "calculator_latency",
            "machine": info,
            "args": {k: str(v) for k, v in vars(args).items()},
            "molecule": args.molecule,
            "n_atoms": len(atoms),
            "notes": notes,
            "models": [{"label": s.label, "description": s.description, "n_params": s.n_params} for s in specs],
            "latency": rows,
            "equality": checks,
        },
    )
    failed = [c for c in checks if not c["pass"]]
    if failed:
        log.error("ours and the reference disagree: %s", failed)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
