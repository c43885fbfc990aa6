"""Checks on output paths before a run starts, so no result is lost to a bad or taken ``--out``."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path


def check_parent_creatable(path: Path) -> None:
    """Raise ``ValueError`` unless ``path``'s folder exists and is writable, or can be created.

    Nothing is created: the nearest existing ancestor must be a writable folder.
    """
    parent = path.parent if str(path.parent) else Path(".")
    ancestor = parent
    while not ancestor.exists():
        if ancestor.parent == ancestor:
            break
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ValueError(f"cannot write {str(path)!r}: {str(ancestor)!r} is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        what = "folder" if ancestor == parent else f"folder {str(parent)!r} under"
        raise ValueError(f"cannot write {str(path)!r}: no permission to write in the {what} {str(ancestor)!r}")


def check_outputs(paths: Iterable[Path], overwrite: bool) -> None:
    """Refuse, before any work, outputs that exist (unless ``overwrite``) or cannot be written.

    Raises
    ------
    ValueError
        Naming the path and the way out (``--overwrite`` or another ``--out``).
    """
    paths = [Path(p) for p in paths]
    for path in paths:
        if path.is_dir():
            raise ValueError(f"output {str(path)!r} is a folder; choose another --out")
        check_parent_creatable(path)
    existing = [str(p) for p in paths if p.exists()]
    if existing and not overwrite:
        raise ValueError(
            f"output file(s) {', '.join(existing)} already exist; pass --overwrite to replace them "
            "or choose another --out"
        )


def structure_format(path: Path) -> str:
    """The ASE format that writing a structure to ``path`` would use (from its suffix), which ASE can
    also read back.

    Raises
    ------
    ValueError
        The suffix names no format ASE can write, naming the path.
    """
    from ase.io.formats import UnknownFileTypeError, filetype, ioformats

    try:
        fmt = filetype(str(path), read=False)
    except (UnknownFileTypeError, ValueError) as exc:
        raise ValueError(
            f"--out {str(path)!r}: ASE knows no structure format for this file name ({exc}); "
            "use a suffix such as .xyz, .extxyz, .pdb, .cif or .traj"
        ) from None
    if fmt not in ioformats:
        raise ValueError(
            f"--out {str(path)!r}: ASE knows no structure format {fmt!r}; use a suffix such as .xyz, "
            ".extxyz, .pdb, .cif or .traj"
        )
    if not (ioformats[fmt].can_write and ioformats[fmt].can_read):  # e.g. .png: a picture, not a structure
        raise ValueError(
            f"--out {str(path)!r}: ASE cannot write and read back the {fmt!r} format as a structure; "
            "use e.g. .xyz or .traj"
        )
    return fmt
