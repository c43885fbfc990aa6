"""Seeded splits of a :class:`~emgp_md.data.frames.Dataset`: by frame or by molecule.

A split by molecule holds out whole molecules: every group sharing the atom order of a held-out
group goes with it (conformers whose perceived bonds differ are separate groups of one molecule, and
must not leak into training), so the test measures molecules the model never saw.
"""

from __future__ import annotations

import numpy as np

from emgp_md.data.frames import Dataset
from emgp_md.data.rmd17 import train_val_test_split


def split_frames(
    dataset: Dataset, n_train: int | None, n_val: int, n_test: int = 0, *, seed: int = 0
) -> tuple[Dataset, Dataset | None, Dataset | None]:
    """Train / validation / test frames drawn by one seeded permutation (``n_train=None``: the rest)."""
    tr, va, te = train_val_test_split(len(dataset), n_train, n_val, n_test, seed)
    return dataset.subset(tr), dataset.subset(va) if len(va) else None, dataset.subset(te) if len(te) else None


def molecule_keys(dataset: Dataset) -> list[bytes]:
    """Per group, the key of its molecule: the atomic numbers in order."""
    return [g.z.astype(np.int64).tobytes() for g in dataset.groups]


def split_molecules(
    dataset: Dataset, n_val_molecules: int, n_test_molecules: int = 0, seed: int = 0
) -> tuple[Dataset, Dataset | None, Dataset | None]:
    """Train / validation / test sets of whole molecules (seeded; see the module doc).

    Raises
    ------
    ValueError
        Fewer than ``n_val_molecules + n_test_molecules + 1`` distinct molecules.
    """
    keys = molecule_keys(dataset)
    unique = list(dict.fromkeys(keys))
    n_held = n_val_molecules + n_test_molecules
    if n_val_molecules < 0 or n_test_molecules < 0 or n_held >= len(unique):
        raise ValueError(
            f"{dataset.source}: {n_val_molecules} validation + {n_test_molecules} test molecules leave none "
            f"to train on: the data hold {len(unique)} distinct molecules (atom orders)"
        )
    order = np.random.default_rng(seed).permutation(len(unique))
    role = {unique[k]: 1 for k in order[:n_val_molecules]}
    role.update({unique[k]: 2 for k in order[n_val_molecules:n_held]})
    parts = [[k for k, key in enumerate(keys) if role.get(key, 0) == r] for r in range(3)]
    train = dataset.molecules(parts[0])
    val = dataset.molecules(parts[1]) if parts[1] else None
    test = dataset.molecules(parts[2]) if parts[2] else None
    return train, val, test
