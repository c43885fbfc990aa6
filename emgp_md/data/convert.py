"""The one place ASE ``Atoms`` become model input: validation and the frozen topology."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from ase import Atoms

from emgp_md.data.features import validate_atomic_numbers
from emgp_md.data.topology import Topology, topology_from_bonds, topology_from_positions

log = logging.getLogger(__name__)


def check_atoms(atoms: Atoms) -> None:
    """Reject structures the models cannot evaluate, naming the offending value.

    Raises
    ------
    ValueError
        Periodic boundary conditions, non-finite positions, or atomic numbers out of range.
    """
    if len(atoms) == 0:
        raise ValueError("the structure has no atoms")
    if np.any(atoms.pbc):
        raise ValueError(
            f"periodic boundary conditions are not supported (pbc={atoms.pbc.tolist()}); "
            "emgp-md models are for isolated molecules: set atoms.pbc = False"
        )
    pos = atoms.positions
    bad = np.nonzero(~np.isfinite(pos).all(axis=1))[0]
    if len(bad):
        raise ValueError(f"non-finite positions for atom index(es) {bad.tolist()}: {pos[bad].tolist()}")
    validate_atomic_numbers(atoms.numbers)


def topology_for_atoms(atoms: Atoms, reference: dict[str, Any] | None = None) -> Topology:
    """Frozen topology for ``atoms``.

    Uses the model's stored reference topology when the atomic numbers match it atom by atom;
    otherwise derives the bond graph from the current geometry (distances <= 1.6 Å) and freezes it.
    """
    if reference is not None and list(reference["z"]) == atoms.numbers.tolist():
        return topology_from_bonds(np.asarray(reference["z"]), np.asarray(reference["bonds"]).reshape(-1, 2))
    log.info("bond graph of %s frozen from the current geometry (bonds <= 1.6 Å)", atoms.get_chemical_formula())
    return topology_from_positions(atoms.numbers, atoms.positions)
