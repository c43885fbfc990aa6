"""2D energy landscapes ``E(X0 + a·d1 + b·d2)`` on a grid, their summary numbers and their files.

Directions come from :mod:`emgp_md.landscape.directions` (1 Å RMS per atom per unit
coefficient, so ``a`` and ``b`` are RMS displacements in Å). Energies come from any
:mod:`emgp_md.landscape.evaluate` evaluator.
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from emgp_md.landscape.evaluate import as_evaluator

log = logging.getLogger(__name__)


@dataclass
class LandscapeSummary:
    """Quantitative summary of a :class:`Landscape2D`.

    Attributes
    ----------
    min_a_A, min_b_A : float, Å
        Coefficients of the lowest grid point.
    min_distance_A : float, Å
        ``sqrt(a² + b²)``: the RMS per-atom displacement of the grid minimum from ``X0``.
    energy_drop : float, eV (or arbitrary units)
        ``E(min) - E(X0)`` (<= 0).
    min_on_edge : bool
        The minimum lies on the grid boundary: the basin extends beyond the grid (or there is none).
    curvature_a, curvature_b : float, eV/Å²
        ``∂²E/∂a²`` and ``∂²E/∂b²`` at the origin by central differences of the grid
        (``E ≈ E0 + ½·κ·a²``); per-atom RMS Å, so a Hessian mode of eigenvalue λ gives κ = N·λ.
    curvature_ab : float, eV/Å²
        Mixed derivative ``∂²E/∂a∂b`` at the origin.
    n_local_minima : int
        Grid points lower than all their (up to 8) neighbours: 1 for a single basin.
    laplacian_std : float, eV/Å²
        Standard deviation of the discrete Laplacian over interior grid points: 0 for an exact
        quadratic bowl, large for a rough or strongly anharmonic surface.
    roughness : float
        ``laplacian_std / mean |Laplacian|``, dimensionless (comparable across energy scales and
        arbitrary units): 0 for a quadratic bowl, of order 1 or more for a rugged surface.
    energy_unit : str
        ``"eV"`` or ``"arbitrary"``.
    """

    min_a_A: float
    min_b_A: float
    min_distance_A: float
    energy_drop: float
    min_on_edge: bool
    curvature_a: float
    curvature_b: float
    curvature_ab: float
    n_local_minima: int
    laplacian_std: float
    roughness: float
    energy_unit: str

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-able)."""
        return asdict(self)


@dataclass
class Landscape2D:
    """Energies of ``X0 + a·d1 + b·d2`` on a grid.

    Attributes
    ----------
    a_A : (n_a,) float64, Å
        Coefficients along ``d1`` (RMS per-atom displacement); the middle one is 0.
    b_A : (n_b,) float64, Å
        Coefficients along ``d2``.
    energies : (n_a, n_b) float64, eV (or arbitrary units, see ``energy_unit``)
        ``E(X0 + a_A[i]·d1 + b_A[j]·d2) - e0``: **row i is a, column j is b**.
    e0 : float, eV
        Absolute energy at ``X0``.
    directions : (2, n_atoms, 3) float64, Å per unit coefficient
    positions0_A : (n_atoms, 3) float64, Å
        ``X0``.
    numbers : (n_atoms,) int64
        Atomic numbers.
    method : str
        How the directions were chosen, e.g. ``"random (seed 0)"``.
    label : str
        The energy model.
    energy_unit : str
        ``"eV"``, or ``"arbitrary"`` for a pretraining energy head.
    """

    a_A: np.ndarray
    b_A: np.ndarray
    energies: np.ndarray
    e0: float
    directions: np.ndarray
    positions0_A: np.ndarray
    numbers: np.ndarray
    method: str = ""
    label: str = "model"
    energy_unit: str = "eV"

    def summary(self) -> LandscapeSummary:
        """Grid minimum, curvature at the origin and smoothness (see :class:`LandscapeSummary`)."""
        e = self.energies
        i, j = np.unravel_index(int(np.argmin(e)), e.shape)
        a, b = float(self.a_A[i]), float(self.b_A[j])
        ha, hb = float(self.a_A[1] - self.a_A[0]), float(self.b_A[1] - self.b_A[0])
        ci, cj = len(self.a_A) // 2, len(self.b_A) // 2
        lap = (e[2:, 1:-1] - 2 * e[1:-1, 1:-1] + e[:-2, 1:-1]) / ha**2 + (
            e[1:-1, 2:] - 2 * e[1:-1, 1:-1] + e[1:-1, :-2]
        ) / hb**2
        return LandscapeSummary(
            min_a_A=a,
            min_b_A=b,
            min_distance_A=float(np.hypot(a, b)),
            energy_drop=float(e[i, j] - e[ci, cj]),
            min_on_edge=bool(i in (0, e.shape[0] - 1) or j in (0, e.shape[1] - 1)),
            curvature_a=float((e[ci + 1, cj] - 2 * e[ci, cj] + e[ci - 1, cj]) / ha**2),
            curvature_b=float((e[ci, cj + 1] - 2 * e[ci, cj] + e[ci, cj - 1]) / hb**2),
            curvature_ab=float(
                (e[ci + 1, cj + 1] - e[ci + 1, cj - 1] - e[ci - 1, cj + 1] + e[ci - 1, cj - 1]) / (4 * ha * hb)
            ),
            n_local_minima=count_local_minima(e),
            laplacian_std=float(lap.std()) if lap.size else 0.0,
            roughness=float(lap.std() / max(np.abs(lap).mean(), 1e-300)) if lap.size else 0.0,
            energy_unit=self.energy_unit,
        )

    # ------------------------------------------------------------------ files
    def to_arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        """Every field as a numpy array, keys prefixed (for several landscapes in one npz)."""
        fields = {
            "a_A": self.a_A,
            "b_A": self.b_A,
            "energies": self.energies,
            "e0": np.float64(self.e0),
            "directions": self.directions,
            "positions0_A": self.positions0_A,
            "numbers": self.numbers,
            "method": np.str_(self.method),
            "label": np.str_(self.label),
            "energy_unit": np.str_(self.energy_unit),
        }
        return {prefix + k: np.asarray(v) for k, v in fields.items()}

    @classmethod
    def from_arrays(cls, data: Any, prefix: str = "") -> Landscape2D:
        """Inverse of :meth:`to_arrays` (``data``: a mapping such as an open npz)."""
        return cls(
            a_A=np.asarray(data[prefix + "a_A"]),
            b_A=np.asarray(data[prefix + "b_A"]),
            energies=np.asarray(data[prefix + "energies"]),
            e0=float(data[prefix + "e0"]),
            directions=np.asarray(data[prefix + "directions"]),
            positions0_A=np.asarray(data[prefix + "positions0_A"]),
            numbers=np.asarray(data[prefix + "numbers"]),
            method=str(data[prefix + "method"]),
            label=str(data[prefix + "label"]),
            energy_unit=str(data[prefix + "energy_unit"]),
        )

    def save_npz(self, path: str | Path) -> None:
        """Write every field to a compressed ``.npz``."""
        np.savez_compressed(path, **self.to_arrays())

    @classmethod
    def load_npz(cls, path: str | Path, label: str | None = None) -> Landscape2D:
        """Read a file of :meth:`save_npz`, or one landscape (by ``label``) of :func:`save_landscapes`."""
        with np.load(path) as data:
            if "labels" not in data.files:
                return cls.from_arrays(data)
            labels = [str(v) for v in data["labels"]]
            if label is None and len(labels) > 1:
                raise ValueError(f"{str(path)!r} holds several landscapes {labels}: pass label=")
            key = labels[0] if label is None else label
            if key not in labels:
                raise ValueError(f"no landscape {key!r} in {str(path)!r}; it holds {labels}")
            return cls.from_arrays(data, f"{labels.index(key)}/")

    def to_csv(self, path: str | Path) -> None:
        """Long-format CSV: one row per grid point, columns ``model, a_A, b_A, energy`` (relative to ``e0``)."""
        _write_csv(path, {self.label: self})


def count_local_minima(energies: np.ndarray) -> int:
    """Number of grid points strictly lower than all their (up to 8) neighbours. ``energies``: (n_a, n_b)."""
    padded = np.pad(np.asarray(energies, dtype=np.float64), 1, constant_values=np.inf)
    centre = padded[1:-1, 1:-1]
    is_min = np.ones_like(centre, dtype=bool)
    for di in (-1, 0, 1):
        for dj in (-1, 0, 1):
            if di or dj:
                shifted = padded[1 + di : padded.shape[0] - 1 + di, 1 + dj : padded.shape[1] - 1 + dj]
                is_min &= centre < shifted
    return int(is_min.sum())


def grid_axis(extent_A: float, n: int) -> np.ndarray:
    """``n`` (odd, >= 3) evenly spaced coefficients in ``[-extent_A, extent_A]`` Å, 0 in the middle."""
    if n < 3 or n % 2 == 0:
        raise ValueError(f"the grid size n must be odd and >= 3 so that X0 is its centre, got {n}")
    if not extent_A > 0:
        raise ValueError(f"extent_A must be positive, got {extent_A}")
    return np.linspace(-extent_A, extent_A, n)


def energy_grid(
    source: Any,
    atoms: Atoms,
    d1: np.ndarray,
    d2: np.ndarray,
    extent_A: float = 1.0,
    n: int = 41,
    method: str = "",
    label: str | None = None,
) -> Landscape2D:
    """Energies ``E(X0 + a·d1 + b·d2)`` for ``a, b`` on an ``n × n`` grid over ``[-extent_A, extent_A]``.

    Parameters
    ----------
    source : evaluator, EMGPCalculator, ASE Calculator, EnergyModel, checkpoint path or torch function
        See :func:`emgp_md.landscape.evaluate.as_evaluator`. Models are evaluated in batches
        without forces; other calculators once per grid point.
    atoms : Atoms
        ``X0`` (positions in Å) and the atomic numbers.
    d1, d2 : (n_atoms, 3) float, Å per unit coefficient
        Directions, e.g. from :func:`~emgp_md.landscape.directions.random_directions`.
    extent_A : float, Å
        Half-width of the grid in coefficient (RMS displacement) units.
    n : int
        Points per axis, odd so that ``X0`` is the centre point.
    method : str
        Description of the directions, stored with the result.
    label : str, optional
        Name of the energy model.

    Returns
    -------
    Landscape2D
        ``energies[i, j]`` relative to the energy at ``X0`` (``e0``, evaluated separately).
    """
    evaluator = as_evaluator(source, atoms, label)
    pos0 = np.asarray(atoms.positions, dtype=np.float64)
    d1, d2 = np.asarray(d1, dtype=np.float64), np.asarray(d2, dtype=np.float64)
    if d1.shape != pos0.shape or d2.shape != pos0.shape:
        raise ValueError(f"directions of shapes {d1.shape}, {d2.shape} do not fit positions {pos0.shape}")
    axis = grid_axis(extent_A, n)
    aa, bb = np.meshgrid(axis, axis, indexing="ij")
    frames = pos0 + aa.reshape(-1, 1, 1) * d1 + bb.reshape(-1, 1, 1) * d2  # (n*n, n_atoms, 3)
    e0 = float(evaluator(pos0[None])[0])
    energies = evaluator(frames).reshape(n, n) - e0
    log.info("%s: %d×%d grid over ±%.3g Å evaluated", evaluator.label, n, n, extent_A)
    return Landscape2D(
        axis,
        axis.copy(),
        energies,
        e0,
        np.stack([d1, d2]),
        pos0,
        np.asarray(atoms.numbers),
        method,
        evaluator.label,
        evaluator.energy_unit,
    )


def save_landscapes(
    prefix: str | Path, landscapes: dict[str, Landscape2D], extra: dict[str, Any] | None = None
) -> list[Path]:
    """Write ``PREFIX.npz`` (all fields), ``PREFIX.csv`` (long format) and ``PREFIX.json`` (summaries).

    Returns the written paths. Read a landscape back with ``Landscape2D.load_npz(path, label)``.
    """
    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {"labels": np.asarray(list(landscapes), dtype=np.str_)}
    for k, land in enumerate(landscapes.values()):
        arrays.update(land.to_arrays(f"{k}/"))
    paths = [prefix.with_suffix(s) for s in (".npz", ".csv", ".json")]
    np.savez_compressed(paths[0], **arrays)
    _write_csv(paths[1], landscapes)
    first = next(iter(landscapes.values()))
    summary = {
        **(extra or {}),
        "method": first.method,
        "grid": {"n": len(first.a_A), "extent_A": float(first.a_A[-1])},
        "models": {name: {"e0": land.e0, **land.summary().to_dict()} for name, land in landscapes.items()},
    }
    paths[2].write_text(json.dumps(summary, indent=2) + "\n")
    return paths


def _write_csv(path: str | Path, landscapes: dict[str, Landscape2D]) -> None:
    with Path(path).open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["model", "a_A", "b_A", "energy", "energy_unit"])
        for name, land in landscapes.items():
            for i, a in enumerate(land.a_A):
                for j, b in enumerate(land.b_A):
                    writer.writerow([name, f"{a:.6g}", f"{b:.6g}", f"{land.energies[i, j]:.10g}", land.energy_unit])
