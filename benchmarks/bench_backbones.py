"""Per-backbone cost: parameters, aspirin energy+forces latency and training throughput.

For every backbone of ``emgp_md.models.BACKBONES`` at a given size (default: the paper's 7 × 128
with each backbone's paper cutoff and radial basis), with the MD17 atomwise head:

- parameters of backbone + head (SE3Set: its ``md17`` preset, the authors' MD17 configuration);
- latency of one energy + forces evaluation of aspirin (21 atoms) through ``energy_and_forces``
  (grad mode on, ``create_graph=False``), positions jittered by 1e-3 Å per call, 10 warm-up calls,
  median of ``--repeats``;
- training throughput: molecules per second of one fine-tuning step at batch ``--batch`` (forward,
  forces with ``create_graph=True``, L1 0.2·E + 0.8·F, backward, Adam step), median of ``--steps``.

Random weights (timing does not depend on them). Example::

    python benchmarks/bench_backbones.py --threads 2 --json benchmarks/results/backbones.json
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, markdown_table, set_threads, setup_logging, summarize_ms, write_json

from emgp_md.config import ModelConfig
from emgp_md.data.convert import attach_hypergraph
from emgp_md.data.graph import repeat_topology
from emgp_md.data.topology import topology_from_positions
from emgp_md.models import BACKBONES, build_model, hypergraph_options, needs_hypergraph
from emgp_md.models.forces import energy_and_forces
from emgp_md.pretrained import reference_atoms
from emgp_md.training.losses import energy_force_loss

log = logging.getLogger("bench_backbones")


def bench_backbone(
    name: str, hidden_nf: int, n_layers: int, repeats: int, batch: int, steps: int, se3set_preset: str = "md17"
) -> dict:
    """Parameters, latency (ms) and training molecules/s of one backbone on aspirin."""
    atoms = reference_atoms("aspirin")
    topo = topology_from_positions(atoms.numbers, atoms.positions)
    cfg = (
        ModelConfig(backbone=name, se3set_preset=se3set_preset)
        if name == "se3set"  # sizes from its preset
        else ModelConfig(backbone=name, hidden_nf=hidden_nf, n_layers=n_layers)
    )
    if needs_hypergraph(cfg):
        topo = attach_hypergraph(topo, atoms.positions, hypergraph_options(cfg))
    torch.manual_seed(0)
    model = build_model(cfg, energy_scale=1.0)
    pos0 = torch.as_tensor(atoms.positions, dtype=torch.float32)
    rng = np.random.default_rng(0)
    times = []
    for k in range(10 + repeats):
        jitter = torch.as_tensor(rng.normal(scale=1e-3, size=pos0.shape), dtype=torch.float32)
        graph = repeat_topology(topo, (pos0 + jitter)[None])
        t0 = time.perf_counter()
        e, f = energy_and_forces(model, graph)
        float(e.sum()) + float(f.sum())
        if k >= 10:
            times.append(time.perf_counter() - t0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    coords = pos0[None] + torch.as_tensor(rng.normal(scale=0.05, size=(batch, *pos0.shape)), dtype=torch.float32)
    graph = repeat_topology(topo, coords)
    true_e, true_f = torch.zeros(batch), torch.zeros(batch * len(atoms), 3)
    step_times = []
    for k in range(2 + steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        pe, pf = energy_and_forces(model, graph, training=True)
        loss = energy_force_loss(pe, pf, true_e, true_f, 1.0, 0.2, 0.8, "l1")
        loss.backward()
        opt.step()
        if k >= 2:
            step_times.append(time.perf_counter() - t0)
    lat = summarize_ms(times)
    return {
        "backbone": name,
        "hidden_nf": cfg.hidden_nf,
        "n_layers": cfg.n_layers,
        "preset": cfg.se3set_preset if name == "se3set" else None,
        "parameters": sum(p.numel() for p in model.parameters()),
        "latency_ms": lat,
        "train_molecules_per_s": batch / float(np.median(step_times)),
        "batch": batch,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", nargs="+", default=list(BACKBONES))
    parser.add_argument("--hidden-nf", type=int, default=128)
    parser.add_argument("--n-layers", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--se3set-preset", default="md17", help="SE3Set size preset (md17, cpu_small, tiny)")
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    setup_logging()
    set_threads(args.threads)
    rows = []
    for name in args.backbones:
        log.info("benchmarking %s", name)
        rows.append(
            bench_backbone(
                name, args.hidden_nf, args.n_layers, args.repeats, args.batch, args.steps, args.se3set_preset
            )
        )
    table = markdown_table(
        [
            "backbone",
            "size",
            "parameters",
            "E+F latency median (ms)",
            "p90 (ms)",
            f"training mol/s (batch {args.batch})",
        ],
        [
            [
                r["backbone"],
                r["preset"] or f"{r['n_layers']}×{r['hidden_nf']}",
                r["parameters"],
                r["latency_ms"]["median_ms"],
                r["latency_ms"]["p90_ms"],
                r["train_molecules_per_s"],
            ]
            for r in rows
        ],
    )
    sys.stdout.write(table + "\n")
    write_json(args.json, {"machine": machine_info(), "threads": args.threads, "results": rows, "table": table})
    return 0


if __name__ == "__main__":
    sys.exit(main())
