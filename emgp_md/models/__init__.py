"""Energy models: backbones, heads, forces, checkpoints. ``build_model`` is the one name→constructor map."""

from __future__ import annotations

from torch import nn

from emgp_md.config import ModelConfig
from emgp_md.models.egnn import EGNN
from emgp_md.models.energy_model import EnergyModel
from emgp_md.models.heads import AtomwiseEnergyHead, DistanceHead, NoiseLevelHead, PooledEnergyHead

BACKBONES = ("egnn",)
HEADS = ("atomwise", "pooled")


def build_backbone(cfg: ModelConfig) -> nn.Module:
    """Construct the backbone named by ``cfg.backbone``."""
    if cfg.backbone == "egnn":
        return EGNN(hidden_nf=cfg.hidden_nf, n_layers=cfg.n_layers, attention=cfg.attention)
    raise ValueError(f"unknown backbone {cfg.backbone!r}; available: {list(BACKBONES)}")


def build_model(cfg: ModelConfig, energy_scale: float = 1.0, energy_shift: float = 0.0) -> EnergyModel:
    """Construct an :class:`EnergyModel` from its configuration."""
    backbone = build_backbone(cfg)
    if cfg.head == "atomwise":
        head: nn.Module = AtomwiseEnergyHead(cfg.hidden_nf)
    elif cfg.head == "pooled":
        head = PooledEnergyHead(cfg.hidden_nf)
    else:
        raise ValueError(f"unknown head {cfg.head!r}; available: {list(HEADS)}")
    noise_head = NoiseLevelHead(cfg.hidden_nf, cfg.noise_levels) if cfg.noise_levels > 0 else None
    distance_head = DistanceHead(cfg.hidden_nf) if cfg.distance_head else None
    return EnergyModel(backbone, head, noise_head, distance_head, energy_scale=energy_scale, energy_shift=energy_shift)


def paper_init_(model: nn.Module) -> None:
    """The authors' from-scratch MD17 init: Kaiming-uniform (a=0) on every weight (method doc 4.1)."""
    for name, p in model.named_parameters():
        if "weight" in name and p.dim() >= 2:
            nn.init.kaiming_uniform_(p, a=0)
        elif "weight" in name:
            nn.init.kaiming_uniform_(p.unsqueeze(0), a=0)


__all__ = ["BACKBONES", "EGNN", "HEADS", "EnergyModel", "build_backbone", "build_model", "paper_init_"]
