"""Readers of files ASE writes: extended XYZ (``.extxyz``, ``.xyz``) and ASE databases (``.db``).

Units: ASE's convention is eV and eV/Å, so these files are read as eV unless ``energy_unit``
declares otherwise (e.g. the schnetpack MD17 sample file stores kcal/mol under ``energy``).
Keys: ``energy`` / ``forces`` are ASE's own properties (a calculator's results after reading);
any other key (``REF_energy``, ``REF_forces``, a database's key-value pair or data entry) is looked
up in ``atoms.info`` / ``atoms.arrays`` or the database row. A missing key is an error naming the
key, the frame and the keys the file has.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from emgp_md.data.frames import Dataset
from emgp_md.data.readers.grouping import group_frames


def _calc_results(atoms: Atoms) -> dict[str, Any]:
    calc = atoms.calc
    return dict(getattr(calc, "results", {}) or {}) if calc is not None else {}


def _missing(what: str, key: str, index: int, source: str, present: list[str], option: str) -> ValueError:
    return ValueError(
        f"{source}: frame {index} has no {what} under the key {key!r}; keys present: "
        f"{sorted(set(present)) or 'none'}. Name the right key with {option}."
    )


def atoms_energy(atoms: Atoms, key: str, index: int, source: str) -> float:
    """Energy of a frame read by ASE under ``key`` (calculator results, then ``atoms.info``)."""
    results = _calc_results(atoms)
    if key in results:
        return float(results[key])
    if key in atoms.info and np.ndim(atoms.info[key]) == 0:
        return float(atoms.info[key])
    present = [k for k, v in {**results, **atoms.info}.items() if np.ndim(v) == 0]
    raise _missing("energy", key, index, source, present, "energy_key (--energy-key)")


def atoms_forces(atoms: Atoms, key: str, index: int, source: str) -> np.ndarray:
    """(n_atoms, 3) forces of a frame read by ASE under ``key`` (calculator results, then ``atoms.arrays``)."""
    results = _calc_results(atoms)
    if key in results:
        return np.asarray(results[key], dtype=np.float64)
    if key in atoms.arrays:
        return np.asarray(atoms.arrays[key], dtype=np.float64)
    present = [k for k, v in {**results, **atoms.arrays}.items() if np.shape(v) == (len(atoms), 3)]
    present = [k for k in present if k != "positions"]
    raise _missing("forces", key, index, source, present, "forces_key (--forces-key)")


def dataset_from_atoms(
    frames: list[Atoms],
    source: str,
    energy_key: str,
    forces_key: str,
    energy_unit: str,
    name: str | None = None,
) -> Dataset:
    """Labelled frames from ASE ``Atoms`` (labels under the keys given, in ``energy_unit``)."""
    if not frames:
        raise ValueError(f"{source}: the file holds no frames")
    energies = np.array([atoms_energy(a, energy_key, i, source) for i, a in enumerate(frames)])
    forces = [atoms_forces(a, forces_key, i, source) for i, a in enumerate(frames)]
    return group_frames(
        [a.numbers for a in frames], [a.positions for a in frames], energies, forces, energy_unit, source, name
    )


def read_extxyz(
    path: Path, energy_key: str, forces_key: str, energy_unit: str | None, name: str | None = None
) -> Dataset:
    """Every frame of an (extended) XYZ file; energies in eV unless ``energy_unit`` says otherwise."""
    import ase.io

    try:
        frames = ase.io.read(path, index=":", format="extxyz")
    except Exception as exc:  # ASE raises many kinds on malformed files
        raise ValueError(f"{path}: not a readable (extended) XYZ file: {exc}") from exc
    return dataset_from_atoms(list(frames), str(path), energy_key, forces_key, energy_unit or "eV", name)


def _row_value(row: Any, key: str) -> Any:
    if key in ("energy", "forces") and row.get(key) is not None:
        return row.get(key)
    if key in row.key_value_pairs:
        return row.key_value_pairs[key]
    data = row.get("data") or {}
    return data.get(key)


def _row_keys(row: Any) -> list[str]:
    keys = [k for k in ("energy", "forces") if row.get(k) is not None]
    return keys + list(row.key_value_pairs) + list(row.get("data") or {})


def read_db(path: Path, energy_key: str, forces_key: str, energy_unit: str | None, name: str | None = None) -> Dataset:
    """Every row of an ASE database; labels from the row's energy/forces, key-value pairs or data."""
    import ase.db

    source = str(path)
    try:
        rows = list(ase.db.connect(str(path)).select())
    except Exception as exc:
        raise ValueError(f"{path}: not a readable ASE database: {exc}") from exc
    if not rows:
        raise ValueError(f"{source}: the database holds no rows")
    numbers, coords, energies, forces = [], [], [], []
    for i, row in enumerate(rows):
        energy, force = _row_value(row, energy_key), _row_value(row, forces_key)
        if energy is None or np.ndim(energy) != 0:
            raise _missing("energy", energy_key, i, source, _row_keys(row), "energy_key (--energy-key)")
        if force is None or np.shape(force) != (row.natoms, 3):
            raise _missing("forces", forces_key, i, source, _row_keys(row), "forces_key (--forces-key)")
        numbers.append(row.numbers)
        coords.append(row.positions)
        energies.append(float(energy))
        forces.append(np.asarray(force, dtype=np.float64))
    return group_frames(numbers, coords, np.array(energies), forces, energy_unit or "eV", source, name)
