"""Checkpoints: ``state_dict`` + JSON-able metadata, loaded with ``torch.load(weights_only=True)``.

File layout (a plain dict, format version :data:`FORMAT_VERSION`)::

    {"format": "emgp-md", "format_version": 1, "metadata_json": str, "state_dict": {...}}

Metadata keys: ``model`` (ModelConfig fields), ``species`` (atomic numbers), ``units``
(``energy``, ``length``), ``normalisation`` (``energy_scale``, ``energy_shift``), ``topology``
(reference ``z`` and bonds, or null), ``provenance``, ``metrics``, ``name``.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from emgp_md.config import ModelConfig, from_dict, to_dict
from emgp_md.models import build_model
from emgp_md.models.energy_model import EnergyModel

FORMAT = "emgp-md"
FORMAT_VERSION = 1


def make_metadata(
    model_cfg: ModelConfig,
    species: list[int],
    energy_unit: str,
    energy_scale: float = 1.0,
    energy_shift: float = 0.0,
    topology: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Assemble the metadata dict of a checkpoint (extra keys: name, provenance, metrics, ...)."""
    meta = {
        "model": to_dict(model_cfg),
        "species": sorted(int(s) for s in species),
        "units": {"energy": energy_unit, "length": "Angstrom"},
        "normalisation": {"energy_scale": float(energy_scale), "energy_shift": float(energy_shift)},
        "topology": topology,
    }
    meta.update(extra)
    json.dumps(meta)  # fail early on anything that is not JSON-able
    return meta


def atomic_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` to a temporary file in the same folder, then rename: never a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; a checkpoint is an ordinary file
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save_checkpoint(path: str | Path, model: EnergyModel, metadata: dict[str, Any]) -> None:
    """Write ``model``'s weights (float32, CPU) and ``metadata`` atomically."""
    meta = dict(metadata)
    meta["normalisation"] = {"energy_scale": model.energy_scale, "energy_shift": model.energy_shift}
    state = {k: v.detach().to("cpu", torch.float32) for k, v in model.state_dict().items()}
    atomic_save(
        {"format": FORMAT, "format_version": FORMAT_VERSION, "metadata_json": json.dumps(meta), "state_dict": state},
        path,
    )


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read and validate a checkpoint file; returns ``(state_dict, metadata)``.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is corrupt, not an emgp-md checkpoint, or of an unsupported format version.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt files
        raise ValueError(f"checkpoint {str(path)!r} is corrupt or not a torch file: {exc}") from exc
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        hint = ""
        if isinstance(raw, dict) and "model" in raw:
            hint = "; it looks like the authors' 3D-EMGP checkpoint: convert it with `emgp-md import-official IN OUT`"
        raise ValueError(f"{str(path)!r} is not an emgp-md checkpoint{hint}")
    version = raw.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(f"checkpoint {str(path)!r} has format version {version}; this emgp-md reads {FORMAT_VERSION}")
    return raw["state_dict"], json.loads(raw["metadata_json"])


def load_checkpoint(path: str | Path) -> tuple[EnergyModel, dict[str, Any]]:
    """Rebuild the model of a checkpoint (on CPU, float32, eval mode) and return it with its metadata."""
    state, meta = read_checkpoint(path)
    cfg = from_dict(ModelConfig, meta["model"])
    norm = meta.get("normalisation", {})
    model = build_model(cfg, energy_scale=norm.get("energy_scale", 1.0), energy_shift=norm.get("energy_shift", 0.0))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"checkpoint {str(path)!r} does not match its declared architecture: {exc}") from exc
    return model.eval(), meta
