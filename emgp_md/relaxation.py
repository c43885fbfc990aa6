"""Geometry relaxation through ASE optimisers."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.optimize import BFGS, FIRE

OPTIMIZERS = {"BFGS": BFGS, "FIRE": FIRE}


@dataclass
class RelaxResult:
    """Outcome of :func:`relax`: final structure, convergence, steps, energy (eV), max force (eV/Å)."""

    atoms: Atoms
    converged: bool
    steps: int
    energy_eV: float
    fmax_eV_per_A: float


def relax(
    atoms: Atoms,
    fmax_eV_per_A: float = 0.01,
    steps: int = 500,
    optimizer: str = "BFGS",
    trajectory: str | Path | None = None,
    logfile: str | None = None,
) -> RelaxResult:
    """Relax ``atoms`` (calculator attached) in place until every force is below ``fmax_eV_per_A``."""
    if atoms.calc is None:
        raise ValueError("attach a calculator first, e.g. atoms.calc = EMGPCalculator()")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}; use one of {sorted(OPTIMIZERS)}")
    opt = OPTIMIZERS[optimizer](atoms, trajectory=None if trajectory is None else str(trajectory), logfile=logfile)
    converged = bool(opt.run(fmax=fmax_eV_per_A, steps=steps))
    fmax = float(np.linalg.norm(atoms.get_forces(), axis=1).max())
    return RelaxResult(atoms, converged, int(opt.nsteps), float(atoms.get_potential_energy()), fmax)
