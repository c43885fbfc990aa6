"""Shipped fine-tuned models (package data) and how to find them.

Each model is ``<name>.pt`` in this folder, listed in ``index.json`` with its chemical formula
and test metrics, so ``EMGPCalculator()`` works offline on a fresh machine.
"""

from __future__ import annotations

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


def model_path(name: str) -> Path:
    """Path of a shipped model by name (e.g. ``"aspirin"``)."""
    index = _index()
    if name not in index:
        raise ValueError(f"no shipped model named {name!r}; shipped models: {sorted(index) or 'none'}")
    return _folder() / index[name]["file"]


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
