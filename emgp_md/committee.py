"""A committee of models as one ASE calculator: mean energy and forces, and their disagreement.

The members are :class:`~emgp_md.calculator.EMGPCalculator` instances (composition): each checks
the structure, perceives and watches its bond graph and computes forces as −∂E/∂pos in its own
model. The committee averages them and reports the spread as an uncertainty:

- ``results["energy_std"]``: standard deviation of the members' energies, eV;
- ``results["forces_std"]``: (n_atoms, 3) standard deviation of each force component, eV/Å;
- ``results["force_disagreement"]``: the largest per-atom RMS deviation of the members' force vectors
  from their mean, ``max_i sqrt(mean_k |F_ik − F̄_i|²)``, eV/Å (the quantity active learning ranks frames by).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes

from emgp_md.calculator import EMGPCalculator
from emgp_md.models.energy_model import EnergyModel


def force_disagreement(forces: np.ndarray) -> np.ndarray:
    """Per-atom RMS deviation of the members' force vectors from their mean.

    Parameters
    ----------
    forces : (n_members, n_atoms, 3) float, eV/Å

    Returns
    -------
    (n_atoms,) float, eV/Å
    """
    dev = forces - forces.mean(axis=0, keepdims=True)
    return np.sqrt((dev**2).sum(axis=-1).mean(axis=0))


class CommitteeCalculator(Calculator):
    """Mean energy and forces of several models, with ``energy_std``, ``forces_std`` and ``force_disagreement``.

    Parameters
    ----------
    models : sequence of model files or :class:`EnergyModel` objects (at least two)
    record : bool
        Keep every computed geometry with its force disagreement in :attr:`history` (active learning
        picks the next frames to label from it).
    **calculator_kwargs
        Passed to every member :class:`EMGPCalculator` (``device``, ``dtype``, ``on_bond_change``, ...).
    """

    implemented_properties: ClassVar[list[str]] = [
        "energy",
        "free_energy",
        "forces",
        "energy_std",
        "forces_std",
        "force_disagreement",
    ]

    def __init__(
        self, models: Sequence[str | Path | EnergyModel], record: bool = False, **calculator_kwargs: Any
    ) -> None:
        super().__init__()
        if len(models) < 2:
            raise ValueError(f"a committee needs at least two models, got {len(models)}")
        self.members = [EMGPCalculator(model=m, **calculator_kwargs) for m in models]
        #: (positions Å, force disagreement eV/Å) of every computed geometry, when ``record`` is set
        self.history: list[tuple[np.ndarray, float]] | None = [] if record else None

    def calculate(
        self, atoms: Atoms | None = None, properties: list[str] | None = None, system_changes: list[str] = all_changes
    ) -> None:
        super().calculate(atoms, properties or ["energy"], system_changes)
        target = atoms if atoms is not None else self.atoms  # members track the caller's Atoms object
        energies, forces = [], []
        for member in self.members:
            member.calculate(target, ["energy", "forces"], system_changes)
            energies.append(member.results["energy"])
            forces.append(member.results["forces"])
        e, f = np.array(energies), np.array(forces)
        self.results["energy"] = self.results["free_energy"] = float(e.mean())
        self.results["forces"] = f.mean(axis=0)
        self.results["energy_std"] = float(e.std())
        self.results["forces_std"] = f.std(axis=0)
        self.results["force_disagreement"] = float(force_disagreement(f).max())
        if self.history is not None:
            self.history.append((self.atoms.positions.copy(), self.results["force_disagreement"]))

    def reset_topology(self) -> None:
        """Forget every member's frozen bond graph (see :meth:`EMGPCalculator.reset_topology`)."""
        for member in self.members:
            member.reset_topology()
        self.reset()
