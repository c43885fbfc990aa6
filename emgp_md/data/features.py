"""Atom featurisation of 3D-EMGP (docs/method.md §1.1).

Each atom of atomic number ``z`` becomes a 300-wide vector: a one-hot over 100 element slots
times three powers of the scaled atomic number, so slot ``3*z + k`` holds ``(z/100)**k`` for
``k = 0, 1, 2`` (``max_atom_type=100``, ``charge_power=2`` in the authors' code).
"""

from __future__ import annotations

import numpy as np
import torch

MAX_ATOM_TYPE = 100
CHARGE_POWER = 2
N_NODE_FEATURES = MAX_ATOM_TYPE * (CHARGE_POWER + 1)  # 300


def validate_atomic_numbers(z: np.ndarray | torch.Tensor, allowed: set[int] | None = None) -> None:
    """Raise ``ValueError`` naming any atomic number the featurisation or a model cannot take.

    Parameters
    ----------
    z : (n_atoms,) int
        Atomic numbers.
    allowed : set of int, optional
        Elements a trained model knows; ``None`` accepts 1..99.
    """
    z_list = [int(v) for v in (z.tolist() if hasattr(z, "tolist") else z)]
    if not z_list:
        raise ValueError("a structure with no atoms cannot be evaluated")
    bad = sorted({v for v in z_list if v < 1 or v >= MAX_ATOM_TYPE})
    if bad:
        raise ValueError(f"atomic number(s) {bad} are outside the supported range 1..{MAX_ATOM_TYPE - 1}")
    if allowed is not None:
        unknown = sorted({v for v in z_list if v not in allowed})
        if unknown:
            from ase.data import chemical_symbols

            names = [chemical_symbols[v] for v in unknown]
            known = [chemical_symbols[v] for v in sorted(allowed)]
            raise ValueError(f"element(s) {names} are unknown to this model, which was trained on {known}")


def feature_table(dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Return the (100, 300) lookup table whose row ``z`` is the input vector of element ``z``."""
    table = torch.zeros(MAX_ATOM_TYPE, N_NODE_FEATURES, dtype=torch.float64)
    zs = torch.arange(MAX_ATOM_TYPE, dtype=torch.float64)
    for k in range(CHARGE_POWER + 1):
        table[torch.arange(MAX_ATOM_TYPE), 3 * torch.arange(MAX_ATOM_TYPE) + k] = (zs / MAX_ATOM_TYPE) ** k
    return table.to(dtype)


def atom_features(z: torch.Tensor) -> torch.Tensor:
    """Featurise atoms.

    Parameters
    ----------
    z : (n_atoms,) long
        Atomic numbers.

    Returns
    -------
    (n_atoms, 300) float64
    """
    return feature_table(torch.float64)[z.long()]
