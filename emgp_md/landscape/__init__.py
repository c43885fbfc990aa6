"""Energy landscapes of a structure: numbers only (plots live in :mod:`emgp_md.plots.landscape`).

- :mod:`~emgp_md.landscape.directions`: rigid-motion basis, random / PCA / Hessian directions
  (rigid motions removed, orthonormal, 1 Å RMS per atom per unit coefficient), Kabsch alignment.
- :mod:`~emgp_md.landscape.evaluate`: energies of many geometries from a model (batched), a torch
  function or any ASE calculator; Hessians by autograd or finite differences.
- :mod:`~emgp_md.landscape.grid`: 2D grids ``E(X0 + a·d1 + b·d2)``, their summary and files.
- :mod:`~emgp_md.landscape.scans`: 1D bond / angle / dihedral scans, optionally relaxed.
- :mod:`~emgp_md.landscape.pcmap`: model vs reference energies on the frames' PC plane.

Example::

    from emgp_md.landscape import energy_grid, random_directions
    d1, d2 = random_directions(atoms.positions, seed=0)
    land = energy_grid(EMGPCalculator(), atoms, d1, d2, extent_A=1.0, n=41, method="random (seed 0)")
    print(land.summary())
"""

from __future__ import annotations

from emgp_md.landscape.directions import (
    NormalModes,
    PCADirections,
    kabsch_align,
    normal_modes,
    orthonormal_rms_directions,
    pca_directions,
    project_coords,
    project_out_rigid,
    random_directions,
    rigid_motion_basis,
)
from emgp_md.landscape.evaluate import (
    CalculatorEvaluator,
    EnergyEvaluator,
    FunctionEvaluator,
    ModelEvaluator,
    as_evaluator,
    autograd_hessian,
    hessian_modes,
)
from emgp_md.landscape.grid import Landscape2D, LandscapeSummary, count_local_minima, energy_grid, save_landscapes
from emgp_md.landscape.pcmap import PCEnergyMap, pc_energy_map
from emgp_md.landscape.scans import Scan1D, parabolic_minimum, scan_angle, scan_bond, scan_dihedral

__all__ = [
    "CalculatorEvaluator",
    "EnergyEvaluator",
    "FunctionEvaluator",
    "Landscape2D",
    "LandscapeSummary",
    "ModelEvaluator",
    "NormalModes",
    "PCADirections",
    "PCEnergyMap",
    "Scan1D",
    "as_evaluator",
    "autograd_hessian",
    "count_local_minima",
    "energy_grid",
    "hessian_modes",
    "kabsch_align",
    "normal_modes",
    "orthonormal_rms_directions",
    "parabolic_minimum",
    "pc_energy_map",
    "pca_directions",
    "project_coords",
    "project_out_rigid",
    "random_directions",
    "rigid_motion_basis",
    "save_landscapes",
    "scan_angle",
    "scan_bond",
    "scan_dihedral",
]
