"""Reading labelled frames from files: one entry point, :func:`read_dataset`, for every format.

=================  =====================================  ========================================
format             what                                   energy unit
=================  =====================================  ========================================
``extxyz``/``xyz`` ASE extended XYZ                       eV (ASE's convention) unless declared
``db``             ASE database                           eV unless declared
``rmd17``          rMD17 ``.npz`` (split or archive file) kcal/mol (fixed)
``rmd17-archive``  folder with ``npz_data/`` + ``splits/`` kcal/mol (fixed)
``npz``            arrays ``R``, ``z``, ``E``, ``F``      must be declared (or sGDML ``e_unit``)
=================  =====================================  ========================================

The result is a :class:`~emgp_md.data.frames.Dataset` in the unit the file is in (the unit travels
with the numbers; conversions go through :mod:`emgp_md.units`, built on :mod:`ase.units`). Frames
are grouped by molecule (atom order and bond graph, :mod:`.grouping`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from emgp_md.data.frames import Dataset
from emgp_md.data.readers.ase_files import read_db, read_extxyz
from emgp_md.data.readers.npz import read_npz, read_rmd17, read_rmd17_archive

FORMATS = ("extxyz", "xyz", "db", "rmd17", "rmd17-archive", "npz")
_SUFFIXES = {".extxyz": "extxyz", ".xyz": "extxyz", ".db": "db"}

__all__ = ["FORMATS", "detect_format", "read_dataset"]


def detect_format(path: Path) -> str:
    """The format of ``path`` from its suffix (an ``.npz`` with rMD17's keys is ``rmd17``)."""
    if path.is_dir():
        if (path / "npz_data").is_dir():
            return "rmd17-archive"
        raise ValueError(f"{path} is a folder, not a data file (an rMD17 archive folder holds npz_data/)")
    suffix = path.suffix.lower()
    if suffix in _SUFFIXES:
        return _SUFFIXES[suffix]
    if suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as data:
                keys = set(data.files)
        except (ValueError, OSError, EOFError):
            return "npz"  # the npz reader reports what is wrong with the file
        return "rmd17" if {"nuclear_charges", "coords"} <= keys else "npz"
    raise ValueError(
        f"{path}: cannot tell the format from the suffix {suffix!r}; give one of {list(FORMATS)} (--format)"
    )


def read_dataset(
    path: str | Path,
    *,
    format: str | None = None,
    energy_key: str = "energy",
    forces_key: str = "forces",
    energy_unit: str | None = None,
    label_set: str = "rmd17",
    name: str | None = None,
) -> Dataset:
    """Labelled frames of ``path`` as a :class:`Dataset`, grouped by molecule.

    Parameters
    ----------
    path : file (or rMD17 archive folder)
    format : one of :data:`FORMATS`; default from the suffix (:func:`detect_format`)
    energy_key, forces_key : where the labels are (ASE files: property, ``info`` / ``arrays`` key or database
        key; ``.npz``: array name, with ``E``/``energies`` and ``F`` tried for the defaults)
    energy_unit : the unit of the file's energies (forces: that unit per Å). Required for generic ``.npz``;
        overrides ASE's eV for extxyz/db; must be kcal/mol (or omitted) for rMD17.
    label_set : rMD17 only: ``"rmd17"`` or the original ``"md17"`` labels
    name : molecule label (rMD17 archive: which molecule)

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ValueError
        Unknown format, missing keys (named, with the keys present), undeclared units, malformed arrays.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"data file {str(path)!r} does not exist")
    fmt = format or detect_format(path)
    if fmt not in FORMATS:
        raise ValueError(f"unknown data format {fmt!r}; known: {list(FORMATS)}")
    if fmt in ("extxyz", "xyz"):
        return read_extxyz(path, energy_key, forces_key, energy_unit, name)
    if fmt == "db":
        return read_db(path, energy_key, forces_key, energy_unit, name)
    if fmt == "rmd17":
        return read_rmd17(path, energy_unit, label_set, name)
    if fmt == "rmd17-archive":
        return read_rmd17_archive(path, energy_unit, label_set, name)
    keys = (None if energy_key == "energy" else energy_key, None if forces_key == "forces" else forces_key)
    return read_npz(path, keys[0], keys[1], energy_unit, name)
