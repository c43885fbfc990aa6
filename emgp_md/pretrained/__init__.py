"""Shipped fine-tuned models (package data) and how to find them.

Each model is ``<name>.pt`` in this folder, listed in ``index.json`` with its chemical formula,
test metrics and the SHA-256 of the file, so ``EMGPCalculator()`` works offline on a fresh machine.
:func:`model_path` checks the file against that hash before handing it out.
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path
from typing import Any


def _folder() -> Path:
    return Path(str(resources.files("emgp_md.pretrained")))


def _index() -> dict[str, dict[str, Any]]:
    path = _folder() / "index.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def available_models() -> dict[str, dict[str, Any]]:
    """Shipped models: ``{name: {"formula", "file", "test", ...}}``."""
    return _index()


def file_sha256(path: str | Path) -> str:
    """SHA-256 (hex) of a file's bytes."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_shipped_file(name: str, path: Path, expected: str | None) -> None:
    """Raise :class:`~emgp_md.errors.ModelIntegrityError` unless ``path`` hashes to ``expected``."""
    from emgp_md.errors import ModelIntegrityError

    reinstall = (
        "Reinstall the emgp-md package (pip install --force-reinstall from where you installed it) to restore it"
    )
    if not path.is_file():
        raise ModelIntegrityError(f"shipped model {name!r}: file {str(path)!r} is missing. {reinstall}")
    if not expected:
        raise ModelIntegrityError(f"shipped model {name!r}: index.json records no sha256 for {path.name}. {reinstall}")
    actual = file_sha256(path)
    if actual != expected:
        raise ModelIntegrityError(
            f"shipped model {name!r}: file {str(path)!r} has SHA-256 {actual}, index.json expects {expected}; "
            f"the file is damaged or was changed. {reinstall}"
        )


def model_path(name: str) -> Path:
    """Path of a shipped model by name (e.g. ``"aspirin"``), checked against its SHA-256 in ``index.json``.

    Raises
    ------
    ValueError
        No shipped model of that name.
    ModelIntegrityError
        The file is missing or its hash is not the recorded one.
    """
    index = _index()
    if name not in index:
        raise ValueError(f"no shipped model named {name!r}; shipped models: {sorted(index) or 'none'}")
    path = _folder() / index[name]["file"]
    verify_shipped_file(name, path, index[name].get("sha256"))
    return path


#: Name of the default pretrained backbone (the authors' 3D-EMGP checkpoint, MIT, shipped in ``backbones/``).
DEFAULT_BACKBONE = "authors-3dmgp"


def available_backbones() -> dict[str, dict[str, Any]]:
    """Shipped pretrained backbones: ``{name: {"file", "sha256", "description", "elements", ...}}``."""
    path = _folder() / "backbones" / "index.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def backbone_path(name: str = DEFAULT_BACKBONE) -> Path:
    """Path of a shipped pretrained backbone checkpoint, checked against its SHA-256.

    Raises
    ------
    ValueError
        No shipped backbone of that name.
    ModelIntegrityError
        The file is missing or damaged.
    """
    index = available_backbones()
    if name not in index:
        raise ValueError(f"no shipped pretrained backbone named {name!r}; shipped: {sorted(index) or 'none'}")
    path = _folder() / "backbones" / index[name]["file"]
    verify_shipped_file(name, path, index[name].get("sha256"))
    return path


def resolve_pretrained(spec: str | Path) -> Path:
    """A pretrained checkpoint given as a path, or as the name of a shipped backbone (``"authors-3dmgp"``)."""
    path = Path(spec)
    if path.is_file():
        return path
    if str(spec) in available_backbones():
        return backbone_path(str(spec))
    raise FileNotFoundError(
        f"pretrained checkpoint {str(spec)!r} is neither a file nor a shipped backbone ({sorted(available_backbones())})"
    )


def model_for_formula(formula: str) -> str:
    """Name of the shipped model whose chemical formula (Hill order, e.g. ``C9H8O4``) is ``formula``."""
    matches = [name for name, info in _index().items() if info["formula"] == formula]
    if not matches:
        listing = ", ".join(f"{n} ({i['formula']})" for n, i in sorted(_index().items())) or "none"
        raise ValueError(
            f"no shipped model for formula {formula}; shipped models: {listing}. "
            "Pass model=PATH to use your own checkpoint."
        )
    return matches[0]


def reference_atoms(name: str) -> Any:
    """The reference geometry (an rMD17 training frame) of a shipped model as ``ase.Atoms``."""
    from ase import Atoms

    from emgp_md.models.checkpoint import read_checkpoint

    _, meta = read_checkpoint(model_path(name))
    topo = meta.get("topology") or {}
    if "positions_A" not in topo:
        raise ValueError(f"shipped model {name!r} carries no reference geometry")
    return Atoms(numbers=topo["z"], positions=topo["positions_A"])


def load_structure(spec: str) -> Any:
    """A shipped model's name (its reference geometry) or any structure file ASE reads."""
    import ase.io

    if spec in _index():
        return reference_atoms(spec)
    path = Path(spec)
    if not path.is_file():
        raise ValueError(f"{spec!r} is neither a shipped molecule ({sorted(_index())}) nor an existing file")
    return ase.io.read(path)
