"""Readers of NumPy ``.npz`` files: rMD17 (per-split and archive) and generic arrays with declared units.

Files are opened with ``allow_pickle=False``: an ``.npz`` holding pickled objects is refused with
that reason, never unpickled. Generic files (sGDML / MLFF style: ``R``, ``z``, ``E``, ``F``) carry no
energy unit, so one must be declared (``energy_unit``, ``--energy-unit``); an sGDML ``e_unit`` /
``r_unit`` entry, when present, is used and checked against the declaration. Positions are Å
(``r_unit: bohr`` converted via :mod:`ase.units`). Atomic numbers may be shared ``(n_atoms,)`` or
per frame ``(n_frames, n_atoms)`` padded with ``z = 0`` (QM7-X style): padding atoms are dropped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from ase import units

from emgp_md.data.frames import Dataset
from emgp_md.data.readers.grouping import group_frames
from emgp_md.data.rmd17 import ENERGY_UNIT as RMD17_UNIT
from emgp_md.data.rmd17 import load_frames
from emgp_md.units import energy_unit_to_eV

#: Names tried for each array of a generic file when the user names no key.
POSITIONS = ("R", "coords", "positions", "pos")
NUMBERS = ("z", "nuclear_charges", "numbers", "Z")
ENERGIES = ("E", "energies", "energy")
FORCES = ("F", "forces")
#: sGDML's unit names → ours.
SGDML_ENERGY_UNITS = {"kcal/mol": "kcal/mol", "ev": "eV", "kj/mol": "kJ/mol", "hartree": "Hartree", "mev": "meV"}
LENGTH_TO_A = {"ang": 1.0, "angstrom": 1.0, "a": 1.0, "bohr": units.Bohr, "au": units.Bohr}


def open_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of ``path`` (no pickles: an object array is refused with the reason)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except ValueError as exc:
        if "allow_pickle" in str(exc) or "pickled" in str(exc):
            raise ValueError(
                f"{path}: holds pickled Python objects, which emgp-md never unpickles (unsafe for untrusted "
                "files). Is it an .npz at all? extxyz, ASE .db and plain-array .npz files are read."
            ) from None
        raise ValueError(f"{path}: not a readable .npz file: {exc}") from exc
    except (OSError, EOFError) as exc:
        raise ValueError(f"{path}: not a readable .npz file: {exc}") from exc


def _pick(data: dict[str, np.ndarray], key: str | None, candidates: tuple[str, ...], what: str, path: Path) -> str:
    names = [key] if key else list(candidates)  # a key the user names is the only one tried
    for k in names:
        if k in data:
            return k
    option = {"energies": " (--energy-key)", "forces": " (--forces-key)"}.get(what, "")
    raise ValueError(f"{path}: no {what} under {names}; keys present: {sorted(data)}. Name the key{option}.")


def _text(value: np.ndarray) -> str:
    item = value.item() if value.shape == () else value
    return item.decode() if isinstance(item, bytes) else str(item)


def _energy_unit(data: dict[str, np.ndarray], declared: str | None, path: Path) -> str:
    stored = None
    if "e_unit" in data:
        text = _text(data["e_unit"])
        stored = SGDML_ENERGY_UNITS.get(text.lower())
        if stored is None:
            raise ValueError(
                f"{path}: e_unit {text!r} is not a unit emgp-md knows; known: {sorted(SGDML_ENERGY_UNITS)}"
            )
    if declared is not None and stored is not None and declared != stored:
        raise ValueError(f"{path}: the file says its energies are in {stored}, but {declared} was declared")
    unit = declared or stored
    if unit is None:
        raise ValueError(
            f"{path}: an .npz file carries no energy unit; declare it with energy_unit (--energy-unit), "
            "e.g. eV, kcal/mol, kJ/mol, Hartree"
        )
    energy_unit_to_eV(unit)
    return unit


def _length_factor(data: dict[str, np.ndarray], path: Path) -> float:
    if "r_unit" not in data:
        return 1.0
    text = _text(data["r_unit"])
    if text.lower() not in LENGTH_TO_A:
        raise ValueError(f"{path}: r_unit {text!r} is not a length unit emgp-md knows; known: {sorted(LENGTH_TO_A)}")
    return LENGTH_TO_A[text.lower()]


def read_npz(
    path: Path, energy_key: str | None, forces_key: str | None, energy_unit: str | None, name: str | None = None
) -> Dataset:
    """A generic ``.npz`` of positions, atomic numbers, energies and forces (units declared)."""
    data = open_npz(path)
    unit = _energy_unit(data, energy_unit, path)
    r = data[_pick(data, None, POSITIONS, "positions", path)].astype(np.float64)
    z = data[_pick(data, None, NUMBERS, "atomic numbers", path)].astype(np.int64)
    e = data[_pick(data, energy_key, ENERGIES, "energies", path)].astype(np.float64).reshape(-1)
    f = data[_pick(data, forces_key, FORCES, "forces", path)].astype(np.float64)
    length = _length_factor(data, path)
    n = len(r)
    if r.ndim != 3 or r.shape[2] != 3 or e.shape != (n,) or f.shape != r.shape:
        raise ValueError(
            f"{path}: positions {r.shape}, energies {e.shape}, forces {f.shape} do not fit "
            "(expected (n_frames, n_atoms, 3), (n_frames,), (n_frames, n_atoms, 3))"
        )
    z = np.broadcast_to(z, r.shape[:2]) if z.ndim == 1 else z
    if z.shape != r.shape[:2]:
        raise ValueError(f"{path}: atomic numbers of shape {z.shape} do not fit positions of shape {r.shape}")
    keep = [row > 0 for row in z]
    label = name or (_text(data["name"]) if "name" in data else None)
    return group_frames(
        [zi[k] for zi, k in zip(z, keep, strict=True)],
        [ri[k] * length for ri, k in zip(r, keep, strict=True)],
        e,
        [fi[k] / length for fi, k in zip(f, keep, strict=True)],
        unit,
        str(path),
        label,
    )


def _check_rmd17_unit(declared: str | None, path: Path) -> None:
    if declared is not None and declared != RMD17_UNIT:
        raise ValueError(f"{path}: rMD17 files are in {RMD17_UNIT}, but {declared} was declared")


def read_rmd17(path: Path, energy_unit: str | None, label_set: str = "rmd17", name: str | None = None) -> Dataset:
    """An rMD17 ``.npz`` (per-split file or a whole molecule of the archive), kcal/mol."""
    _check_rmd17_unit(energy_unit, path)
    frames = load_frames(path, label_set)
    if name:
        frames.name = name
    return Dataset([frames], frames.energy_unit, frames.source)


def read_rmd17_archive(
    root: Path, energy_unit: str | None, label_set: str = "rmd17", name: str | None = None
) -> Dataset:
    """One molecule of the official archive layout ``root/npz_data/rmd17_<molecule>.npz`` (all frames).

    ``name`` picks the molecule (required when the archive holds several).
    """
    files = sorted((root / "npz_data").glob("rmd17_*.npz"))
    molecules = [f.stem.removeprefix("rmd17_") for f in files]
    if not files:
        raise ValueError(f"{root}: no npz_data/rmd17_<molecule>.npz inside; not the rMD17 archive layout")
    if name is None and len(files) > 1:
        raise ValueError(f"{root}: the archive holds {molecules}; name one (name=..., or the .npz path itself)")
    molecule = name or molecules[0]
    if molecule not in molecules:
        raise ValueError(f"{root}: no molecule {molecule!r} in the archive; it holds {molecules}")
    return read_rmd17(files[molecules.index(molecule)], energy_unit, label_set, molecule)
