"""Conformer sets as ``(Topology, positions)`` samples for the pretraining loop."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from emgp_md.data.conformer_store import ConformerRecord
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
        rec = self.record(i)
        return rec.topology, rec.pos

    def record(self, i: int) -> ConformerRecord:
        """The full record of sample ``i`` (molecule id, SMILES, conformer rank, ...)."""
        return self.dataset[int(self.indices[i])]  # type: ignore[index]

    def reference_positions(self, i: int) -> np.ndarray:
        """(n_atoms, 3) float64 Å: the lowest-energy conformer (rank 0) of sample ``i``'s molecule.

        A molecule's conformers are stored contiguously, lowest energy first, so rank 0 is found
        whether or not it is among ``indices``.
        """
        k = int(self.indices[i])
        return self.dataset[k - self.dataset[k].conformer].pos  # type: ignore[index]


def load_split(
    root: str | Path, n_val_molecules: int, seed: int, max_conformers: int | None = None
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
