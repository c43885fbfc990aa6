"""Labelled frames with their units: one molecule (:class:`Frames`) and many (:class:`Dataset`).

Units travel with the numbers. A reader converts what a file holds, once, into the unit it
declares here (through :func:`emgp_md.units.energy_unit_to_eV`, built from :mod:`ase.units`);
everything downstream (normalisation, reference energies, the model's checkpoint) takes the unit
from the frames instead of assuming one. Lengths are always Å; forces are in ``energy_unit`` per Å.

A :class:`Dataset` is a list of single-molecule :class:`Frames` groups: frames of one molecule
share atomic numbers in one atom order and one bond graph, so a group has one topology and the
fast path of a molecule's frames (:func:`~emgp_md.data.graph.repeat_topology`) stays available;
batches may still mix groups (:func:`~emgp_md.data.graph.collate`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from emgp_md.data.identity import formula
from emgp_md.units import KCAL_PER_MOL, energy_unit_to_eV


@dataclass
class Frames:
    """Labelled frames of one molecule.

    Attributes
    ----------
    z : (n_atoms,) int64
    coords : (n_frames, n_atoms, 3) float64, Å
    energies : (n_frames,) float64, ``energy_unit``
    forces : (n_frames, n_atoms, 3) float64, ``energy_unit`` per Å
    source : str
        Where the frames came from (path, split, frame indices).
    energy_unit : str
        A unit known to :mod:`emgp_md.units` (``"kcal/mol"`` for rMD17, ``"eV"`` for ASE files).
    name : str
        Molecule label for reports (a formula when the file names none).
    """

    z: np.ndarray
    coords: np.ndarray
    energies: np.ndarray
    forces: np.ndarray
    source: str
    energy_unit: str = KCAL_PER_MOL
    name: str = ""

    def __post_init__(self) -> None:
        energy_unit_to_eV(self.energy_unit)  # an unknown unit is an error here, not at training time
        n, a = self.coords.shape[0], self.z.shape[0]
        if self.coords.shape != (n, a, 3):
            raise ValueError(f"{self.source}: coords of shape {self.coords.shape}, expected ({n}, {a}, 3)")
        if self.energies.shape != (n,):
            raise ValueError(f"{self.source}: energies of shape {self.energies.shape}, expected ({n},)")
        if self.forces.shape != (n, a, 3):
            raise ValueError(f"{self.source}: forces of shape {self.forces.shape}, expected ({n}, {a}, 3)")
        if not self.name:
            self.name = formula(self.z)

    def __len__(self) -> int:
        return int(self.coords.shape[0])

    @property
    def force_unit(self) -> str:
        return f"{self.energy_unit}/Angstrom"

    def subset(self, idx: np.ndarray) -> Frames:
        """The frames at ``idx`` (same molecule, unit and name)."""
        idx = np.asarray(idx, dtype=np.int64)
        return replace(self, coords=self.coords[idx], energies=self.energies[idx], forces=self.forces[idx])

    def to_unit(self, energy_unit: str) -> Frames:
        """The same frames with energies and forces converted to ``energy_unit`` (via :mod:`ase.units`)."""
        if energy_unit == self.energy_unit:
            return self
        factor = energy_unit_to_eV(self.energy_unit) / energy_unit_to_eV(energy_unit)
        return replace(self, energies=self.energies * factor, forces=self.forces * factor, energy_unit=energy_unit)


@dataclass
class Dataset:
    """Labelled frames of one or many molecules in one energy unit.

    Attributes
    ----------
    groups : list of :class:`Frames`
        One group per molecule (atomic numbers in one order, one bond graph); all in ``energy_unit``.
    energy_unit : str
    source : str
    """

    groups: list[Frames]
    energy_unit: str = KCAL_PER_MOL
    source: str = ""
    _offsets: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        energy_unit_to_eV(self.energy_unit)
        self.groups = [g for g in self.groups if len(g)]
        if not self.groups:
            raise ValueError(f"{self.source or 'dataset'}: no frames")
        bad = sorted({g.energy_unit for g in self.groups} - {self.energy_unit})
        if bad:
            raise ValueError(f"{self.source}: groups in {bad} inside a dataset in {self.energy_unit!r}; use to_unit")
        self._offsets = np.cumsum([0] + [len(g) for g in self.groups])

    @classmethod
    def of(cls, groups: Sequence[Frames], energy_unit: str | None = None, source: str = "") -> Dataset:
        """A dataset of ``groups``, each converted to ``energy_unit`` (default: the first group's)."""
        unit = energy_unit or groups[0].energy_unit
        return cls([g.to_unit(unit) for g in groups], unit, source or "; ".join(sorted({g.source for g in groups})))

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def __iter__(self) -> Iterator[Frames]:
        return iter(self.groups)

    @property
    def n_molecules(self) -> int:
        return len(self.groups)

    @property
    def elements(self) -> list[int]:
        """Sorted atomic numbers present."""
        return sorted({int(v) for g in self.groups for v in np.unique(g.z)})

    def locate(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Global frame indices → (group index, frame index within the group)."""
        index = np.asarray(index, dtype=np.int64)
        if index.size and (index.min() < 0 or index.max() >= len(self)):
            raise IndexError(f"frame index out of range for a dataset of {len(self)} frames")
        group = np.searchsorted(self._offsets, index, side="right") - 1
        return group, index - self._offsets[group]

    def subset(self, index: np.ndarray) -> Dataset:
        """The frames at global ``index`` (sorted within each molecule; empty molecules dropped)."""
        group, local = self.locate(np.sort(np.asarray(index, dtype=np.int64)))
        parts = [self.groups[k].subset(local[group == k]) for k in range(len(self.groups)) if np.any(group == k)]
        return Dataset(parts, self.energy_unit, self.source)

    def molecules(self, which: Sequence[int]) -> Dataset:
        """The groups at ``which`` (a split by molecule)."""
        return Dataset([self.groups[k] for k in which], self.energy_unit, self.source)

    def to_unit(self, energy_unit: str) -> Dataset:
        return Dataset([g.to_unit(energy_unit) for g in self.groups], energy_unit, self.source)

    def energies(self) -> np.ndarray:
        """(n_frames,) all energies, groups in order."""
        return np.concatenate([g.energies for g in self.groups])

    def forces_flat(self) -> np.ndarray:
        """(n_atoms_total, 3) all force rows, frames in order."""
        return np.concatenate([g.forces.reshape(-1, 3) for g in self.groups])

    def element_counts(self, elements: Sequence[int] | None = None) -> np.ndarray:
        """(n_frames, n_elements) count of each element (``elements``, default :attr:`elements`) per frame."""
        elements = list(elements) if elements is not None else self.elements
        rows = []
        for g in self.groups:
            counts = np.array([np.count_nonzero(g.z == e) for e in elements], dtype=np.float64)
            rows.append(np.broadcast_to(counts, (len(g), len(elements))))
        return np.concatenate(rows)


def write_extxyz(dataset: Dataset, path: str | Path) -> Path:
    """Write every frame to an extxyz file with its energy and forces in eV and eV/Å (ASE's convention,
    so :func:`emgp_md.data.readers.read_dataset` reads it back without a declared unit). Atomic write."""
    import ase.io
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator

    from emgp_md.atomic import atomic_path

    frames = []
    for g in dataset.to_unit("eV").groups:
        for pos, e, f in zip(g.coords, g.energies, g.forces, strict=True):
            atoms = Atoms(numbers=g.z, positions=pos)
            atoms.calc = SinglePointCalculator(atoms, energy=float(e), forces=f)
            frames.append(atoms)
    with atomic_path(path) as tmp:
        ase.io.write(tmp, frames, format="extxyz")
    return Path(path)


def as_dataset(data: Frames | Dataset) -> Dataset:
    """A :class:`Dataset` view of one molecule's frames (or the dataset itself)."""
    return data if isinstance(data, Dataset) else Dataset([data], data.energy_unit, data.source)
