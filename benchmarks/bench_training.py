"""Training throughput: molecules per second of one fine-tuning step, ours against the reference.

Protocol (``docs/benchmarks.md``): a fine-tuning step on aspirin at batch 32 = forward,
differentiable forces, the paper's loss (L1, 0.2·energy + 0.8·force, on energies normalised by
the training std), backward, Adam step. Three implementations start from the same weights (paper
size, 7 × 128), each with its own Adam optimiser, and take turns on the same batches (round robin,
the order rotating every step, so that load from other jobs hits all of them alike):

- ``ours``: :func:`emgp_md.models.forces.energy_and_forces` with ``training=True``, i.e. the
  explicit dense forces of :mod:`emgp_md.models.egnn.train` where they apply;
- ``ours_compiled``: the same inside :func:`~emgp_md.models.egnn.compiled.compiled_forces`: forward,
  forces and their backward as one ``torch.compile`` graph (``FinetuneConfig.compile_step``); its
  compilation happens in the gradient check and the warm-up steps, outside the timing;
- ``ours_autograd``: the same model with those switched off
  (:func:`~emgp_md.models.egnn.train.explicit_forces` ``(False)``): dense forward, forces by
  autograd with ``create_graph=True``;
- ``reference``: :func:`reference_egnn.reference_energy_and_forces` (per-edge, ``create_graph=True``).

Batches (seeded, from ``rmd17_aspirin_train_01``) are built before timing; a step's time covers
forward, force graph, loss, backward and optimiser step.

Before timing, the loss and every parameter gradient of the first batch are compared between each
of ours and the reference, in float32 and in float64; the exit status is 1 when they disagree.

Example::

    python benchmarks/bench_training.py --json benchmarks/results/training.json
"""

from __future__ import annotations

import argparse
import copy
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    machine_info,
    markdown_table,
    paper_size_model,
    set_threads,
    setup_logging,
    summarize_ms,
    write_json,
)
from reference_egnn import (
    ReferenceEnergyModel,
    ReferenceInputs,
    reference_energy_and_forces,
    reference_inputs,
)

log = logging.getLogger("bench_training")
ENERGY_WEIGHT, FORCE_WEIGHT = 0.2, 0.8
IMPLEMENTATIONS = ("ours", "ours_compiled", "ours_autograd", "reference")


@dataclass
class Batch:
    """One training batch in both input formats.

    Attributes
    ----------
    graph : GraphBatch
        Ours.
    pos : (n_frames * n_atoms, 3) Å
        Positions for the reference (its other inputs are shared by all batches).
    true_e : (n_frames,) kcal/mol, without the energy shift
    true_f : (n_frames * n_atoms, 3) kcal/mol/Å
    """

    graph: Any
    pos: torch.Tensor
    true_e: torch.Tensor
    true_f: torch.Tensor

    def to(self, dtype: torch.dtype) -> Batch:
        return Batch(self.graph.to(dtype=dtype), self.pos.to(dtype), self.true_e.to(dtype), self.true_f.to(dtype))


def make_batches(molecule: str, batch_size: int, n_batches: int, seed: int) -> tuple[list[Batch], Any, float, float]:
    """Seeded batches of rMD17 ``train_01`` frames; returns them, the topology, energy mean and std."""
    from emgp_md.data.graph import repeat_topology
    from emgp_md.data.rmd17 import load_frames, split_path
    from emgp_md.data.topology import topology_from_positions

    frames = load_frames(split_path(molecule, "train", 1))
    if batch_size > len(frames):
        raise ValueError(f"batch size {batch_size} exceeds the {len(frames)} frames of {frames.source}")
    shift, scale = float(frames.energies.mean()), float(frames.energies.std())
    topo = topology_from_positions(frames.z, frames.coords[0])
    rng = np.random.default_rng(seed)
    batches = []
    for _ in range(n_batches):
        idx = np.sort(rng.choice(len(frames), size=batch_size, replace=False))
        coords = torch.as_tensor(frames.coords[idx], dtype=torch.float32)
        graph = repeat_topology(topo, coords)
        batches.append(
            Batch(
                graph=graph,
                pos=coords.reshape(-1, 3).clone(),
                true_e=torch.as_tensor(frames.energies[idx] - shift, dtype=torch.float32),
                true_f=torch.as_tensor(frames.forces[idx].reshape(-1, 3), dtype=torch.float32),
            )
        )
    return batches, topo, shift, scale


def ours_loss(
    model: torch.nn.Module, batch: Batch, explicit: bool = True, compile_mode: str | None = None
) -> torch.Tensor:
    """Fine-tuning loss of emgp-md's model (differentiable forces); ``explicit=False`` switches the
    explicit dense forces off (plain autograd with ``create_graph=True``); a ``compile_mode`` runs
    the step compiled (:func:`~emgp_md.models.egnn.compiled.compiled_forces`)."""
    from emgp_md.models.egnn.compiled import compiled_forces
    from emgp_md.models.egnn.train import explicit_forces
    from emgp_md.models.forces import energy_and_forces
    from emgp_md.training.losses import energy_force_loss

    with explicit_forces(explicit), compiled_forces(compile_mode is not None, compile_mode or "default"):
        pred_e, pred_f = energy_and_forces(model, batch.graph, training=True)
    return energy_force_loss(
        pred_e, pred_f, batch.true_e, batch.true_f, model.energy_scale, ENERGY_WEIGHT, FORCE_WEIGHT
    )


def reference_loss(model: ReferenceEnergyModel, inputs: ReferenceInputs, batch: Batch) -> torch.Tensor:
    """The same loss through the reference implementation."""
    from emgp_md.training.losses import energy_force_loss

    pred_e, pred_f = reference_energy_and_forces(model, inputs, batch.pos, create_graph=True)
    return energy_force_loss(
        pred_e, pred_f, batch.true_e, batch.true_f, model.energy_scale, ENERGY_WEIGHT, FORCE_WEIGHT
    )


def gradients(model: torch.nn.Module, loss_fn: Callable[[], torch.Tensor]) -> tuple[float, dict[str, torch.Tensor]]:
    """Loss value and parameter gradients (zeros where a parameter gets none, e.g. ``coord_mlp``)."""
    model.zero_grad(set_to_none=True)
    loss = loss_fn()
    loss.backward()
    grads = {
        n: (p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p)) for n, p in model.named_parameters()
    }
    model.zero_grad(set_to_none=True)
    return float(loss.detach()), grads


def check_equal(
    ours: torch.nn.Module,
    ref: ReferenceEnergyModel,
    inputs: ReferenceInputs,
    batch: Batch,
    dtype: torch.dtype,
    tol: float,
    impl: str = "ours",
    compile_mode: str = "default",
) -> dict[str, Any]:
    """Compare loss and all parameter gradients of one step (copies of the models, in ``dtype``)
    between the reference and ``impl`` (``ours``, ``ours_compiled`` or ``ours_autograd``)."""
    o, r = copy.deepcopy(ours).to(dtype).train(), copy.deepcopy(ref).to(dtype).train()
    b = batch.to(dtype)
    inp = ReferenceInputs(
        inputs.node_features.to(dtype), inputs.edge_index, inputs.edge_attr.to(dtype), inputs.batch, inputs.n_graphs
    )
    explicit, mode = impl != "ours_autograd", (compile_mode if impl == "ours_compiled" else None)
    loss_o, g_o = gradients(o, lambda: ours_loss(o, b, explicit, mode))
    loss_r, g_r = gradients(r, lambda: reference_loss(r, inp, b))
    if set(g_o) != set(g_r):
        raise RuntimeError(f"parameter names differ: {sorted(set(g_o) ^ set(g_r))}")
    worst_name, worst_rel, worst_abs = "", 0.0, 0.0
    for name in g_o:
        diff = float((g_o[name] - g_r[name]).abs().max())
        rel = diff / max(float(g_r[name].abs().max()), 1e-30)
        if rel > worst_rel:
            worst_name, worst_rel, worst_abs = name, rel, diff
    d_loss = abs(loss_o - loss_r)
    ok = d_loss <= tol * (1 + abs(loss_r)) and worst_rel <= tol
    return {
        "implementation": impl,
        "dtype": str(dtype).replace("torch.", ""),
        "loss_ours": loss_o,
        "loss_reference": loss_r,
        "abs_dloss": d_loss,
        "max_rel_dgrad": worst_rel,
        "max_abs_dgrad": worst_abs,
        "worst_parameter": worst_name,
        "tolerance": tol,
        "pass": bool(ok),
    }


def time_steps(
    ours: torch.nn.Module,
    ref: ReferenceEnergyModel,
    inputs: ReferenceInputs,
    batches: list[Batch],
    steps: int,
    warmup: int,
    lr: float,
    implementations: tuple[str, ...] = IMPLEMENTATIONS,
    compile_mode: str = "default",
) -> dict[str, list[float]]:
    """Round-robin full training steps of the implementations on the same batches (the order rotates
    every step); per-step wall times. ``ours_compiled`` and ``ours_autograd`` train their own copies
    of ``ours``."""
    plain, fast = copy.deepcopy(ours).train(), copy.deepcopy(ours).train()
    ours.train()
    ref.train()
    models = {"ours": ours, "ours_compiled": fast, "ours_autograd": plain, "reference": ref}
    opts = {k: torch.optim.Adam(m.parameters(), lr=lr) for k, m in models.items()}
    losses = {
        "ours": lambda b: ours_loss(ours, b),
        "ours_compiled": lambda b: ours_loss(fast, b, compile_mode=compile_mode),
        "ours_autograd": lambda b: ours_loss(plain, b, explicit=False),
        "reference": lambda b: reference_loss(ref, inputs, b),
    }
    times: dict[str, list[float]] = {k: [] for k in implementations}
    for i in range(warmup + steps):
        batch = batches[i % len(batches)]
        k = i % len(implementations)
        for impl in implementations[k:] + implementations[:k]:
            t0 = time.perf_counter()
            loss = losses[impl](batch)
            opts[impl].zero_grad(set_to_none=True)
            loss.backward()
            opts[impl].step()
            dt = time.perf_counter() - t0
            if i >= warmup:
                times[impl].append(dt)
        if (i + 1) % 10 == 0:
            log.info("step %d / %d", i + 1, warmup + steps)
    return times


def paired_ratios(times: dict[str, list[float]]) -> dict[str, float]:
    """Median over rounds of ``t_reference / t_impl`` within each round robin round: steps taken
    seconds apart, so load from other jobs largely cancels (more robust than a ratio of medians)."""
    ref = np.asarray(times["reference"])
    return {k: float(np.median(ref / np.asarray(v))) for k, v in times.items() if k != "reference"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--molecule", default="aspirin", help="rMD17 molecule (train_01 frames)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=50, help="timed steps per implementation")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps per implementation")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--lr", type=float, default=5e-4, help="Adam learning rate")
    parser.add_argument("--seed", type=int, default=0, help="seed of the batches and of the random weights")
    parser.add_argument(
        "--weights",
        choices=["auto", "official", "random"],
        default="auto",
        help="backbone: authors' checkpoint (auto: when present) or random",
    )
    parser.add_argument("--tol32", type=float, default=1e-4, help="float32 tolerance on loss and gradients (relative)")
    parser.add_argument("--tol64", type=float, default=1e-10, help="float64 tolerance on loss and gradients (relative)")
    parser.add_argument("--no-check", action="store_true", help="skip the gradient equality check")
    parser.add_argument("--no-compiled", action="store_true", help="leave out ours_compiled (no C++ compiler)")
    parser.add_argument(
        "--compile-mode", default="default", choices=["default", "max-autotune-no-cudagraphs"], help="of ours_compiled"
    )
    parser.add_argument("--json", type=Path, help="write the full report here")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup < 0 or args.batch_size < 1:
        parser.error("need --steps >= 1, --warmup >= 0, --batch-size >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the Markdown report; return 1 if the gradients disagree."""
    args = parse_args(argv)
    setup_logging(args.verbose)
    set_threads(args.threads)
    info = machine_info()
    batches, topo, shift, scale = make_batches(
        args.molecule, args.batch_size, min(args.warmup + args.steps, 64), args.seed
    )
    spec = paper_size_model(args.weights, args.seed)
    ours = spec.model
    ours.energy_scale, ours.energy_shift = scale, shift  # as the fine-tuning loop normalises energies
    ref = ReferenceEnergyModel.from_model(ours)
    inputs = reference_inputs(topo, args.batch_size, torch.float32)
    log.info(
        "%s; %d atoms x batch %d; %d warm-up + %d timed steps each, %d thread(s)",
        spec.description,
        topo.n_atoms,
        args.batch_size,
        args.warmup,
        args.steps,
        args.threads,
    )
    impls = tuple(i for i in IMPLEMENTATIONS if not (args.no_compiled and i == "ours_compiled"))
    checks = []
    if not args.no_check:
        for impl in impls[:-1]:
            for dtype, tol in ((torch.float32, args.tol32), (torch.float64, args.tol64)):
                checks.append(check_equal(ours, ref, inputs, batches[0], dtype, tol, impl, args.compile_mode))
                log.info("gradient check %s", checks[-1])
    times = time_steps(ours, ref, inputs, batches, args.steps, args.warmup, args.lr, impls, args.compile_mode)
    from emgp_md.models.egnn.compiled import compile_failed

    if "ours_compiled" in impls and compile_failed(args.compile_mode):
        log.error("ours_compiled fell back to the eager path (compiling failed): its times are not compiled ones")
        return 1
    stats = {k: summarize_ms(v) for k, v in times.items()}
    paired = paired_ratios(times)
    rows = []
    for impl in impls:
        s = stats[impl]
        rows.append(
            [
                impl,
                s["median_ms"],
                f"{s['p10_ms']:.4g}–{s['p90_ms']:.4g}",
                args.batch_size / (s["median_ms"] * 1e-3),
                f"{stats['reference']['median_ms'] / s['median_ms']:.2f}×",
                f"{paired[impl]:.2f}×" if impl in paired else "1.00×",
            ]
        )
    out = [
        (
            f"Training throughput, {args.molecule} ({topo.n_atoms} atoms), batch {args.batch_size}, {spec.label}, "
            f"{args.threads} thread(s), {args.steps} timed steps after {args.warmup} warm-up; "
            f"{info['cpu_model']}, torch {info['torch']}, {info['date_utc']}"
        ),
        "",
        (
            "speed / reference: ratio of median step times; paired ratio: median over round-robin rounds of "
            "t_reference / t_impl within the round."
        ),
        "",
        markdown_table(
            ["implementation", "median ms/step", "p10–p90 ms", "molecules/s", "speed / reference", "paired ratio"], rows
        ),
    ]
    if checks:
        out += [
            "",
            "Ours vs reference, first batch, same weights (loss and all parameter gradients):",
            "",
            markdown_table(
                ["implementation", "dtype", "loss ours", "|Δloss|", "max rel Δgrad", "worst parameter", "tol", "pass"],
                [
                    [
                        c["implementation"],
                        c["dtype"],
                        f"{c['loss_ours']:.8g}",
                        f"{c['abs_dloss']:.3g}",
                        f"{c['max_rel_dgrad']:.3g}",
                        c["worst_parameter"],
                        f"{c['tolerance']:.0e}",
                        "yes" if c["pass"] else "**NO**",
                    ]
                    for c in checks
                ],
            ),
        ]
    out += [
        "",
        (
            f"- model: {spec.description}; energy normalisation from {args.molecule} train_01 "
            f"(mean {shift:.6g}, std {scale:.4g} kcal/mol)"
        ),
    ]
    print("\n".join(out))
    write_json(
        args.json,
        {
            "benchmark": "training_throughput",
            "machine": info,
            "args": {k: str(v) for k, v in vars(args).items()},
            "model": {"label": spec.label, "description": spec.description, "n_params": spec.n_params},
            "n_atoms": topo.n_atoms,
            "batch_size": args.batch_size,
            "steps": {
                k: {
                    **stats[k],
                    "molecules_per_s": args.batch_size / (stats[k]["median_ms"] * 1e-3),
                    "times_ms": [t * 1e3 for t in times[k]],
                }
                for k in times
            },
            "ratio_reference_to_ours": stats["reference"]["median_ms"] / stats["ours"]["median_ms"],
            "ratio_reference_to_ours_autograd": stats["reference"]["median_ms"] / stats["ours_autograd"]["median_ms"],
            "ratio_reference_to_ours_compiled": (
                stats["reference"]["median_ms"] / stats["ours_compiled"]["median_ms"]
                if "ours_compiled" in stats
                else None
            ),
            "ratio_ours_autograd_to_ours": stats["ours_autograd"]["median_ms"] / stats["ours"]["median_ms"],
            "paired_ratio_reference_to": paired,
            "equality": checks,
        },
    )
    if any(not c["pass"] for c in checks):
        log.error("ours and the reference disagree: %s", [c for c in checks if not c["pass"]])
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
