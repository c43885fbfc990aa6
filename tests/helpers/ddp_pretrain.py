"""Run a tiny pretraining (1 process or under torchrun) and save the final parameters.

Used by tests/training/test_distributed.py: ``python ddp_pretrain.py OUT`` or
``torchrun --nproc_per_node 2 ddp_pretrain.py OUT``.
"""

from __future__ import annotations

import sys

import numpy as np
import torch
from ase.build import molecule

from emgp_md.config import ModelConfig, PretrainConfig
from emgp_md.data.topology import topology_from_positions
from emgp_md.pretrain.trainer import pretrain
from emgp_md.training.distributed import cleanup, exit_process, init_distributed


def synthetic_conformers(n: int, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    mols = [molecule(name) for name in ("CH3CH2OH", "C6H6", "CH3COOH", "NH3", "CH4")]
    out = []
    for k in range(n):
        atoms = mols[k % len(mols)]
        topo = topology_from_positions(atoms.numbers, atoms.positions)
        out.append((topo, atoms.positions + rng.normal(scale=0.05, size=atoms.positions.shape)))
    return out


def main(out: str) -> None:
    torch.set_num_threads(1)
    info = init_distributed()
    data = synthetic_conformers(28)
    cfg = PretrainConfig(
        model=ModelConfig(hidden_nf=16, n_layers=2, head="pooled", noise_levels=50),
        epochs=2,
        batch_size=8,
        checkpoint_every_steps=1000,
    )
    pretrain(cfg, data[:20], data[20:], out, info=info)
    cleanup(info)
    if info.world_size > 1:
        exit_process(0)


if __name__ == "__main__":
    main(sys.argv[1])
