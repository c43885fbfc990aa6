"""Conformer sets as ``(Topology, positions)`` samples for the pretraining loop."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from emgp_md.data.topology import Topology


class ConformerSamples:
    """A view of a conformer set (all shards in memory: ~10 MB per 50k QM9 conformers).

    ``samples[i]`` is ``(topology, positions (n_atoms, 3) float64 Å)`` of conformer ``indices[i]``.
    """

    def __init__(self, dataset: object, indices: Sequence[int]) -> None:
        self.dataset = dataset
        self.indices = np.asarray(indices, dtype=np.int64)

    def __len__(self) -> int:
        return int(self.indices.shape[0])

    def __getitem__(self, i: int) -> tuple[Topology, np.ndarray]:
        rec = self.dataset[int(self.indices[i])]  # type: ignore[index]
        return rec.topology, rec.pos


def load_split(root: str | Path, n_val_molecules: int, seed: int, max_conformers: int | None = None
               ) -> tuple[ConformerSamples, ConformerSamples]:
    """Train and validation samples of a conformer set, split by molecule (seeded).

    ``max_conformers`` keeps a seeded subset of the training conformers.
    """
    from emgp_md.data.conformer_store import ConformerDataset

    probe = ConformerDataset(root)
    dataset = ConformerDataset(root, cache_shards=len(probe.manifest["shards"]))
    train_idx, val_idx = dataset.split(n_val_molecules, seed)
    if max_conformers is not None and len(train_idx) > max_conformers:
        keep = np.random.default_rng(seed).choice(len(train_idx), max_conformers, replace=False)
        train_idx = np.sort(train_idx[keep])
    return ConformerSamples(dataset, train_idx), ConformerSamples(dataset, val_idx)
