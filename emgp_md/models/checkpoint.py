"""Checkpoints: ``state_dict`` + JSON-able metadata, loaded with ``torch.load(weights_only=True)``.

File layout (a plain dict, format version :data:`FORMAT_VERSION`)::

    {"format": "emgp-md", "format_version": 2, "metadata_json": str, "state_dict": {...},
     "content_sha256": str}

Metadata keys: ``model`` (ModelConfig fields), ``species`` (atomic numbers), ``units``
(``energy``, ``length``), ``normalisation`` (``energy_scale``, ``energy_shift`` and, for a model of
many molecules, ``atom_reference_energies``: atomic number → energy), ``topology``
(reference ``z`` and bonds, or null), ``provenance``, ``metrics``, ``name``.

Integrity (what :func:`read_checkpoint` refuses with :class:`~emgp_md.errors.ModelIntegrityError`):

- ``content_sha256`` is the SHA-256 of the metadata JSON and of every tensor (name, dtype, shape,
  raw bytes) in sorted name order (:func:`content_hash`); a file whose content does not hash to it
  (flipped bytes, edited weights or metadata) is refused. Format version 1 files (written before
  the hash existed) carry none: they are still read, with a logged warning; re-save them with
  :func:`write_checkpoint` to add one. A version-2 file without a hash is refused.
- Non-finite weights (NaN or inf) are refused, naming the tensors.
- Missing or mistyped metadata keys are refused, naming the file and the key.
- Files that need more than tensors and plain containers to load are refused; the refusal never
  suggests loading with ``weights_only=False`` (that runs arbitrary code from the file).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import warnings
from pathlib import Path
from typing import Any

import torch

from emgp_md import atomic
from emgp_md.atomic import atomic_torch_save
from emgp_md.config import ModelConfig, from_dict, to_dict
from emgp_md.errors import ModelIntegrityError
from emgp_md.models import build_model
from emgp_md.models.energy_model import EnergyModel

FORMAT = "emgp-md"
FORMAT_VERSION = 2
LEGACY_VERSIONS = (1,)  # read without a content hash, with a warning
log = logging.getLogger(__name__)
# metadata key -> the type its value must have
_REQUIRED_METADATA: dict[str, type | tuple[type, ...]] = {
    "model": dict,
    "species": list,
    "units": dict,
    "normalisation": dict,
}
_UNSAFE_HINT = re.compile(r"weights_only|safe_globals|trust", re.IGNORECASE)


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


# old name here -> its name in emgp_md.atomic (the one atomic-write module)
_MOVED_TO_ATOMIC = {
    "atomic_write_text": "atomic_write_text",
    "remove_stale_temp_files": "remove_stale_temp_files",
    "atomic_save": "atomic_torch_save",
}


def __getattr__(name: str) -> Any:
    """The atomic-write helpers that moved to :mod:`emgp_md.atomic`, with a ``FutureWarning``."""
    if name in _MOVED_TO_ATOMIC:
        new = _MOVED_TO_ATOMIC[name]
        warnings.warn(f"emgp_md.models.checkpoint.{name} moved to emgp_md.atomic.{new}", FutureWarning, stacklevel=2)
        return getattr(atomic, new)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def content_hash(state: dict[str, torch.Tensor], metadata_json: str) -> str:
    """SHA-256 (hex) of ``metadata_json`` and of every tensor of ``state`` in sorted name order.

    Each tensor contributes its name, dtype, shape and raw bytes (C order), each field length-prefixed,
    so the hash changes with any byte of the weights or of the metadata.
    """
    digest = hashlib.sha256()

    def feed(chunk: bytes) -> None:
        digest.update(len(chunk).to_bytes(8, "little"))
        digest.update(chunk)

    feed(metadata_json.encode("utf-8"))
    for name in sorted(state):
        tensor = state[name].detach().to("cpu").contiguous()
        feed(name.encode("utf-8"))
        feed(f"{tensor.dtype}{tuple(tensor.shape)}".encode())
        feed(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def non_finite_tensors(state: dict[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors of ``state`` with a NaN or infinite entry (sorted)."""
    return sorted(k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all()))


def write_checkpoint(path: str | Path, state: dict[str, torch.Tensor], metadata: dict[str, Any]) -> None:
    """Write ``state`` (as given) and ``metadata`` atomically, with their content hash (current format)."""
    bad = non_finite_tensors(state)
    if bad:  # written anyway (a training run must not die here), but it will be refused on load
        log.warning("checkpoint %s has non-finite weights in %s; loading it will be refused", path, ", ".join(bad))
    meta_json = json.dumps(metadata)
    atomic_torch_save(
        {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "metadata_json": meta_json,
            "state_dict": state,
            "content_sha256": content_hash(state, meta_json),
        },
        path,
    )


def save_checkpoint(path: str | Path, model: EnergyModel, metadata: dict[str, Any]) -> None:
    """Write ``model``'s weights (float32, CPU) and ``metadata`` atomically, with their content hash."""
    meta = dict(metadata)
    meta["normalisation"] = {"energy_scale": model.energy_scale, "energy_shift": model.energy_shift}
    if model.atom_ref:
        meta["normalisation"]["atom_reference_energies"] = {str(k): v for k, v in sorted(model.atom_ref.items())}
    state = {k: v.detach().to("cpu", torch.float32) for k, v in model.state_dict().items()}
    write_checkpoint(path, state, meta)


def _safe_message(exc: BaseException) -> str:
    """``exc``'s message without torch's advice to load with ``weights_only=False`` or to allowlist globals."""
    text = str(exc)
    if "WeightsUnpickler error:" in text:  # keep torch's diagnosis, drop its two ways of loading unsafely
        text = text.split("WeightsUnpickler error:", 1)[1]
    sentences = re.split(r"(?<=[.!?])\s+|\n+", text.replace("\x1b[1m", "").replace("\x1b[0m", ""))
    kept = " ".join(s.strip() for s in sentences if s.strip() and not _UNSAFE_HINT.search(s))
    return kept or type(exc).__name__


def safe_torch_load(path: str | Path, what: str = "checkpoint", map_location: Any = "cpu") -> Any:
    """``torch.load(weights_only=True)`` whose failures are :class:`ModelIntegrityError` naming ``path``.

    The message never passes on torch's suggestion to retry with ``weights_only=False``.
    """
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for corrupt files
        if "WeightsUnpickler" in str(exc) or "weights_only" in str(exc):
            raise ModelIntegrityError(
                f"{what} {str(path)!r} holds objects other than tensors and plain containers "
                f"({_safe_message(exc)}); emgp-md never unpickles code from a file. Re-create it with emgp-md "
                "(or convert the authors' file with `emgp-md import-official IN OUT`)"
            ) from None
        raise ModelIntegrityError(
            f"{what} {str(path)!r} is corrupt or not a torch file: {_safe_message(exc)}"
        ) from None


def _check_metadata(path: Path, meta: Any) -> None:
    """Raise :class:`ModelIntegrityError` naming ``path`` for missing or mistyped metadata keys."""
    if not isinstance(meta, dict):
        raise ModelIntegrityError(f"checkpoint {str(path)!r}: metadata is a {type(meta).__name__}, not a JSON object")
    for key, kind in _REQUIRED_METADATA.items():
        if key not in meta:
            raise ModelIntegrityError(f"checkpoint {str(path)!r}: metadata has no {key!r} key")
        if not isinstance(meta[key], kind):
            raise ModelIntegrityError(
                f"checkpoint {str(path)!r}: metadata {key!r} is a {type(meta[key]).__name__}, "
                f"expected a {'JSON object' if kind is dict else 'list'}"
            )
    if not all(isinstance(z, int) and not isinstance(z, bool) for z in meta["species"]):
        raise ModelIntegrityError(
            f"checkpoint {str(path)!r}: metadata 'species' must be atomic numbers (integers), got {meta['species']!r}"
        )
    if not isinstance(meta["units"].get("energy"), str):
        raise ModelIntegrityError(f"checkpoint {str(path)!r}: metadata 'units' has no 'energy' unit string")
    for key in ("energy_scale", "energy_shift"):
        value = meta["normalisation"].get(key)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ModelIntegrityError(
                f"checkpoint {str(path)!r}: metadata 'normalisation' {key!r} must be a finite number, got {value!r}"
            )
    refs = meta["normalisation"].get("atom_reference_energies", {})
    if not isinstance(refs, dict) or not all(
        k.isdigit() and isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
        for k, v in refs.items()
    ):
        raise ModelIntegrityError(
            f"checkpoint {str(path)!r}: metadata 'normalisation' 'atom_reference_energies' must map atomic numbers "
            f"to finite numbers, got {refs!r}"
        )
    if not isinstance(meta.get("topology"), dict | None):
        raise ModelIntegrityError(f"checkpoint {str(path)!r}: metadata 'topology' must be a JSON object or null")


def _check_content(path: Path, raw: dict[str, Any], version: int) -> tuple[dict[str, torch.Tensor], str]:
    """The state dict and metadata JSON of ``raw``, checked against its content hash and for finite weights."""
    state, meta_json = raw.get("state_dict"), raw.get("metadata_json")
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise ModelIntegrityError(f"checkpoint {str(path)!r}: 'state_dict' is not a dict of named tensors")
    if not isinstance(meta_json, str):
        raise ModelIntegrityError(f"checkpoint {str(path)!r}: 'metadata_json' is not a string")
    expected = raw.get("content_sha256")
    if version in LEGACY_VERSIONS:
        log.warning(
            "checkpoint %s (format version %d) carries no content hash, so its integrity cannot be "
            "checked; re-save it to add one",
            path,
            version,
        )
    elif not isinstance(expected, str):
        raise ModelIntegrityError(f"checkpoint {str(path)!r} (format version {version}) has no content hash")
    else:
        actual = content_hash(state, meta_json)
        if actual != expected:
            raise ModelIntegrityError(
                f"checkpoint {str(path)!r} is corrupt or was modified: its content hashes to {actual}, "
                f"the file records {expected}. Use an intact copy (re-download, re-install or re-train it)"
            )
    bad = non_finite_tensors(state)
    if bad:
        raise ModelIntegrityError(
            f"checkpoint {str(path)!r} has non-finite (NaN or inf) weights in {len(bad)} tensor(s): {', '.join(bad)}"
        )
    return state, meta_json


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read and validate a checkpoint file; returns ``(state_dict, metadata)``.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ModelIntegrityError
        If the file is corrupt (unreadable, content hash mismatch), holds non-finite weights or bad
        metadata, or needs unsafe unpickling.
    ValueError
        If it is not an emgp-md checkpoint or of an unsupported format version.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    raw = safe_torch_load(path)
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        hint = ""
        if isinstance(raw, dict) and "model" in raw:
            hint = "; it looks like the authors' 3D-EMGP checkpoint: convert it with `emgp-md import-official IN OUT`"
        raise ValueError(f"{str(path)!r} is not an emgp-md checkpoint{hint}")
    version = raw.get("format_version")
    if version != FORMAT_VERSION and version not in LEGACY_VERSIONS:
        raise ValueError(
            f"checkpoint {str(path)!r} has format version {version}; this emgp-md reads "
            f"{', '.join(map(str, (*LEGACY_VERSIONS, FORMAT_VERSION)))}"
        )
    state, meta_json = _check_content(path, raw, version)
    try:
        meta = json.loads(meta_json)
    except json.JSONDecodeError as exc:
        raise ModelIntegrityError(f"checkpoint {str(path)!r}: metadata is not valid JSON ({exc})") from None
    _check_metadata(path, meta)
    return state, meta


def load_checkpoint(path: str | Path) -> tuple[EnergyModel, dict[str, Any]]:
    """Rebuild the model of a checkpoint (on CPU, float32, eval mode) and return it with its metadata."""
    state, meta = read_checkpoint(path)
    norm = meta["normalisation"]
    try:
        cfg = from_dict(ModelConfig, meta["model"])
        refs = {int(k): float(v) for k, v in norm.get("atom_reference_energies", {}).items()}
        model = build_model(cfg, energy_scale=norm["energy_scale"], energy_shift=norm["energy_shift"], atom_ref=refs)
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise ModelIntegrityError(
            f"checkpoint {str(path)!r}: metadata 'model' is not a valid model configuration ({exc})"
        ) from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"checkpoint {str(path)!r} does not match its declared architecture: {exc}") from exc
    return model.eval(), meta
