"""1D energy scans along a bond length, a bond angle or a dihedral, optionally relaxed.

Each scan point sets the internal coordinate with ASE (``set_distance``, ``set_angle``,
``set_dihedral``), moving the whole fragment on the far side of the bond (the part of the bond
graph attached to the last atom once the central bond is cut; only that atom inside a ring), then,
with ``relax=True``, holds the coordinate fixed (``ase.constraints.FixInternals``) and relaxes every
other degree of freedom with BFGS (:func:`emgp_md.relaxation.relax`).
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.constraints import FixInternals

from emgp_md.data.topology import bonds_from_distances
from emgp_md.relaxation import relax as relax_atoms

log = logging.getLogger(__name__)
_UNITS = {"bond": "Å", "angle": "deg", "dihedral": "deg"}
_N_INDICES = {"bond": 2, "angle": 3, "dihedral": 4}


@dataclass
class Scan1D:
    """Energies along one internal coordinate.

    Attributes
    ----------
    coordinate : str
        ``"bond"``, ``"angle"`` or ``"dihedral"``.
    indices : tuple of int
        Atoms defining the coordinate (2, 3 or 4).
    unit : str
        ``"Å"`` for bonds, ``"deg"`` for angles and dihedrals.
    values : (n_points,) float64, Å or degrees
        The coordinate as measured on each final structure.
    energies_eV : (n_points,) float64, eV
        Absolute energies.
    relaxed : bool
        Whether the other degrees of freedom were relaxed.
    converged : (n_points,) bool
        Relaxation converged (all True for rigid scans).
    positions_A : (n_points, n_atoms, 3) float64, Å
        Final structures.
    label : str
        The energy model.
    """

    coordinate: str
    indices: tuple[int, ...]
    unit: str
    values: np.ndarray
    energies_eV: np.ndarray
    relaxed: bool
    converged: np.ndarray
    positions_A: np.ndarray
    label: str = "model"

    @property
    def name(self) -> str:
        """E.g. ``"dihedral 0-1-2-3"``."""
        return f"{self.coordinate} {'-'.join(str(i) for i in self.indices)}"

    def minimum(self) -> tuple[float, float]:
        """``(value, energy_eV)`` of the minimum, refined by a parabola through the lowest point and its neighbours."""
        return parabolic_minimum(self.values, self.energies_eV)

    def save_npz(self, path: str | Path) -> None:
        """Write every field to a compressed ``.npz``."""
        np.savez_compressed(
            path,
            coordinate=self.coordinate,
            indices=np.asarray(self.indices),
            unit=self.unit,
            values=self.values,
            energies_eV=self.energies_eV,
            relaxed=self.relaxed,
            converged=self.converged,
            positions_A=self.positions_A,
            label=self.label,
        )

    @classmethod
    def load_npz(cls, path: str | Path) -> Scan1D:
        """Read a file written by :meth:`save_npz`."""
        with np.load(path) as d:
            return cls(
                str(d["coordinate"]),
                tuple(int(i) for i in d["indices"]),
                str(d["unit"]),
                d["values"],
                d["energies_eV"],
                bool(d["relaxed"]),
                d["converged"],
                d["positions_A"],
                str(d["label"]),
            )

    def to_csv(self, path: str | Path) -> None:
        """Columns ``value_<unit>, energy_eV, converged``."""
        with Path(path).open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow([f"value_{'A' if self.unit == 'Å' else 'deg'}", "energy_eV", "converged"])
            for v, e, c in zip(self.values, self.energies_eV, self.converged):
                writer.writerow([f"{v:.8g}", f"{e:.10g}", int(c)])


def parabolic_minimum(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Minimum of samples ``y(x)``: the lowest sample, refined by a parabola when it is interior."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    k = int(np.argmin(y))
    if k == 0 or k == len(y) - 1:
        return float(x[k]), float(y[k])
    c2, c1, c0 = np.polyfit(x[k - 1 : k + 2], y[k - 1 : k + 2], 2)
    if c2 <= 0:
        return float(x[k]), float(y[k])
    xm = -c1 / (2 * c2)
    return float(xm), float(c0 + c1 * xm + c2 * xm**2)


def scan_bond(
    atoms: Atoms,
    indices: Sequence[int],
    values_A: Sequence[float],
    relax: bool = False,
    fmax_eV_per_A: float = 0.05,
    steps: int = 200,
) -> Scan1D:
    """Energy against the distance of atoms ``(i, j)``.

    Parameters
    ----------
    atoms : Atoms
        Starting structure with a calculator attached; not modified.
    indices : (i, j)
        Atom ``j`` and the fragment bonded to it (bonds from the starting geometry) move.
    values_A : sequence of float, Å
        Distances to visit, in order.
    relax : bool
        Hold the distance (``FixInternals``) and relax all other degrees of freedom with BFGS.
    fmax_eV_per_A : float, eV/Å
        Convergence criterion of the relaxation.
    steps : int
        Most BFGS steps per point.

    Returns
    -------
    Scan1D

    Raises
    ------
    ValueError
        No calculator, or indices that are repeated or out of range.
    """
    return _scan(atoms, "bond", indices, values_A, relax, fmax_eV_per_A, steps)


def scan_angle(
    atoms: Atoms,
    indices: Sequence[int],
    values_deg: Sequence[float],
    relax: bool = False,
    fmax_eV_per_A: float = 0.05,
    steps: int = 200,
) -> Scan1D:
    """Energy against the angle ``i-j-k`` (vertex ``j``; ``k``'s side moves). Parameters as :func:`scan_bond`,
    with ``values_deg`` in degrees."""
    return _scan(atoms, "angle", indices, values_deg, relax, fmax_eV_per_A, steps)


def scan_dihedral(
    atoms: Atoms,
    indices: Sequence[int],
    values_deg: Sequence[float],
    relax: bool = False,
    fmax_eV_per_A: float = 0.05,
    steps: int = 200,
) -> Scan1D:
    """Energy against the dihedral ``i-j-k-l`` (``k``'s side rotates about ``j-k``). Parameters as
    :func:`scan_bond`, with ``values_deg`` in degrees (measured values are unwrapped to the targets' period)."""
    return _scan(atoms, "dihedral", indices, values_deg, relax, fmax_eV_per_A, steps)


def moving_fragment(bonds: np.ndarray, n_atoms: int, pivot: int, moving: int) -> list[int]:
    """Atoms connected to ``moving`` once the bond ``pivot-moving`` is cut; ``[moving]`` inside a ring.

    Parameters
    ----------
    bonds : (n_bonds, 2) int
    n_atoms : int
    pivot, moving : int
        The fixed and the moving end of the central bond (they need not be bonded).
    """
    adjacency: list[set[int]] = [set() for _ in range(n_atoms)]
    for i, j in np.asarray(bonds).reshape(-1, 2):
        if {int(i), int(j)} != {pivot, moving}:
            adjacency[i].add(int(j))
            adjacency[j].add(int(i))
    seen, stack = {moving}, [moving]
    while stack:
        for nb in adjacency[stack.pop()] - seen:
            seen.add(nb)
            stack.append(nb)
    return [moving] if pivot in seen else sorted(seen)


def _scan(
    atoms: Atoms,
    coordinate: str,
    indices: Sequence[int],
    values: Sequence[float],
    relax: bool,
    fmax_eV_per_A: float,
    steps: int,
) -> Scan1D:
    idx = tuple(int(i) for i in indices)
    if len(idx) != _N_INDICES[coordinate] or len(set(idx)) != len(idx):
        raise ValueError(f"a {coordinate} needs {_N_INDICES[coordinate]} distinct atom indices, got {list(indices)}")
    if atoms.calc is None:
        raise ValueError("attach a calculator first, e.g. atoms.calc = EMGPCalculator()")
    if max(idx) >= len(atoms) or min(idx) < 0:
        raise ValueError(f"atom indices {list(idx)} out of range for {len(atoms)} atoms")
    bonds = bonds_from_distances(atoms.positions)
    # the central bond: i-j for a bond and an angle's j-k arm, j-k for a dihedral
    pivot, mover = (idx[0], idx[1]) if coordinate == "bond" else (idx[1], idx[2])
    fragment = moving_fragment(bonds, len(atoms), pivot, mover)
    if coordinate == "dihedral" and idx[3] not in fragment:  # ring: move only the last atom
        fragment = [idx[3]]
    vals, energies, converged, positions = [], [], [], []
    for target in values:
        work = atoms.copy()
        work.calc = atoms.calc
        _set(work, coordinate, idx, float(target), fragment)
        ok = True
        if relax:
            work.set_constraint(_constraint(coordinate, idx, float(target)))
            ok = relax_atoms(work, fmax_eV_per_A, steps).converged
            work.set_constraint()
        vals.append(_measure(work, coordinate, idx, float(target)))
        energies.append(work.get_potential_energy())
        converged.append(ok)
        positions.append(work.positions.copy())
    if not all(converged):
        log.warning(
            "%s scan: %d of %d relaxations did not converge in %d steps",
            coordinate,
            len(converged) - sum(converged),
            len(converged),
            steps,
        )
    label = str(getattr(atoms.calc, "metadata", {}).get("name") or type(atoms.calc).__name__)
    return Scan1D(
        coordinate,
        idx,
        _UNITS[coordinate],
        np.asarray(vals),
        np.asarray(energies),
        relax,
        np.asarray(converged),
        np.asarray(positions),
        label,
    )


def _set(atoms: Atoms, coordinate: str, idx: tuple[int, ...], value: float, fragment: list[int]) -> None:
    if coordinate == "bond":
        atoms.set_distance(idx[0], idx[1], value, fix=0, indices=fragment)
    elif coordinate == "angle":
        atoms.set_angle(idx[0], idx[1], idx[2], value, indices=fragment)
    else:
        atoms.set_dihedral(idx[0], idx[1], idx[2], idx[3], value, indices=fragment)


def _constraint(coordinate: str, idx: tuple[int, ...], value: float) -> FixInternals:
    if coordinate == "bond":
        return FixInternals(bonds=[[value, list(idx)]])
    if coordinate == "angle":
        return FixInternals(angles_deg=[[value, list(idx)]])
    return FixInternals(dihedrals_deg=[[value, list(idx)]])


def _measure(atoms: Atoms, coordinate: str, idx: tuple[int, ...], target: float) -> float:
    """The coordinate of ``atoms``; a dihedral is unwrapped to the period nearest ``target`` (ASE gives [0, 360))."""
    if coordinate == "bond":
        return float(atoms.get_distance(*idx))
    if coordinate == "angle":
        return float(atoms.get_angle(*idx))
    return float(target + (atoms.get_dihedral(*idx) - target + 180.0) % 360.0 - 180.0)
