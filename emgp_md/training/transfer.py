"""Backbone transfer from a pretrained checkpoint (heads are always fresh, docs/method.md §4.1)."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import torch

from emgp_md.config import ModelConfig, from_dict
from emgp_md.models.checkpoint import load_checkpoint
from emgp_md.models.energy_model import EnergyModel

log = logging.getLogger(__name__)


def load_any_checkpoint(path: str | Path) -> tuple[EnergyModel, dict[str, Any]]:
    """Load an emgp-md checkpoint, or the authors' raw ``checkpoint-3dmgp`` (imported on the fly)."""
    try:
        return load_checkpoint(path)
    except ValueError as exc:
        if "authors' 3D-EMGP checkpoint" not in str(exc):
            raise
    from emgp_md.models.official import import_official

    return import_official(path)


def unseen_elements(pretrained: str | Path, elements: list[int] | set[int]) -> list[int]:
    """Atomic numbers of ``elements`` that a shipped backbone ``pretrained`` never saw in pretraining
    (its index lists them); ``[]`` for a checkpoint path, whose elements are not recorded."""
    from emgp_md.pretrained import available_backbones

    known = available_backbones().get(str(pretrained), {}).get("elements")
    return [] if known is None else sorted({int(z) for z in elements} - {int(z) for z in known})


def pretrained_backbone(path: str | Path) -> tuple[dict[str, torch.Tensor], ModelConfig]:
    """Backbone weights (keys without the ``backbone.`` prefix) and architecture of a checkpoint.

    Accepts an emgp-md checkpoint, the authors' raw ``checkpoint-3dmgp`` or the name of a shipped
    backbone (``"authors-3dmgp"``, :func:`emgp_md.pretrained.backbone_path`).
    """
    from emgp_md.pretrained import resolve_pretrained

    model, meta = load_any_checkpoint(resolve_pretrained(path))
    state = model.state_dict()
    cfg = from_dict(ModelConfig, meta["model"])
    backbone = {k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.")}
    if not backbone:
        raise ValueError(f"checkpoint {str(path)!r} holds no backbone weights")
    return backbone, cfg


def transfer_config(target: ModelConfig, source: ModelConfig) -> ModelConfig:
    """The fine-tuning architecture: the pretrained backbone's, with the target's head."""
    keys = (
        "backbone",
        "hidden_nf",
        "n_layers",
        "attention",
        "cutoff_A",
        "n_rbf",
        "n_heads",
        "se3set_preset",
        "se3set_overrides",
    )
    merged = dataclasses.replace(target, **{k: getattr(source, k) for k in keys})
    changed = [k for k in keys if getattr(target, k) != getattr(source, k)]
    if changed:
        log.info("architecture taken from the pretrained checkpoint for %s", changed)
    return merged
