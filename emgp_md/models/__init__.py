"""Energy models: backbones, heads, forces, checkpoints. ``build_model`` is the one name→constructor map."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from emgp_md.config import ModelConfig
from emgp_md.models import schnet, torchmd_et
from emgp_md.models.egnn import EGNN
from emgp_md.models.energy_model import EnergyModel
from emgp_md.models.heads import AtomwiseEnergyHead, DistanceHead, NoiseLevelHead, PooledEnergyHead
from emgp_md.models.schnet import SchNet
from emgp_md.models.torchmd_et import TorchMDET

if TYPE_CHECKING:
    from emgp_md.data.fragment import FragmentOptions

BACKBONES = ("egnn", "schnet", "et", "se3set")
# backbones that read a frozen hypergraph (Topology.hypergraph) besides the fully connected graph
HYPERGRAPH_BACKBONES = ("se3set",)
HEADS = ("atomwise", "pooled")
# used when ModelConfig.cutoff_A is None (docs/method.md §1.3, 1.4)
PAPER_CUTOFF_A = {"schnet": schnet.PAPER_CUTOFF_A, "et": torchmd_et.PAPER_CUTOFF_A}


def build_backbone(cfg: ModelConfig) -> nn.Module:
    """Construct the backbone named by ``cfg.backbone``.

    SE3Set (``"se3set"``) takes its sizes from ``cfg.se3set_preset`` and ``cfg.se3set_overrides``
    (:mod:`emgp_md.models.se3set.config`); its modules are imported only here.

    Raises
    ------
    ValueError
        On an unknown backbone name, a ``cutoff_A`` given to EGNN (which has no cutoff), or SE3Set
        settings that are unknown or contradict the generic size fields.
    """
    if cfg.backbone == "se3set":
        from emgp_md.models.se3set import SE3Set
        from emgp_md.models.se3set.config import settings_from_config

        return SE3Set(settings_from_config(cfg))
    if cfg.backbone == "egnn":
        if cfg.cutoff_A is not None:
            raise ValueError(f"the EGNN backbone has no cutoff, got cutoff_A={cfg.cutoff_A}; leave it unset")
        return EGNN(hidden_nf=cfg.hidden_nf, n_layers=cfg.n_layers, attention=cfg.attention)
    if cfg.backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {cfg.backbone!r}; available: {list(BACKBONES)}")
    cutoff_A = PAPER_CUTOFF_A[cfg.backbone] if cfg.cutoff_A is None else float(cfg.cutoff_A)
    if cfg.backbone == "schnet":
        return SchNet(hidden_nf=cfg.hidden_nf, n_layers=cfg.n_layers, cutoff_A=cutoff_A, n_rbf=cfg.n_rbf)
    return TorchMDET(
        hidden_nf=cfg.hidden_nf, n_layers=cfg.n_layers, cutoff_A=cutoff_A, n_rbf=cfg.n_rbf, n_heads=cfg.n_heads
    )


def build_model(
    cfg: ModelConfig, energy_scale: float = 1.0, energy_shift: float = 0.0, atom_ref: dict[int, float] | None = None
) -> EnergyModel:
    """Construct an :class:`EnergyModel` from its configuration.

    The heads are as wide as the backbone's output: ``cfg.hidden_nf``, or for SE3Set its resolved
    ``feature_nf``.
    """
    backbone = build_backbone(cfg)
    width = backbone.hidden_nf if cfg.backbone in HYPERGRAPH_BACKBONES else cfg.hidden_nf
    if cfg.head == "atomwise":
        head: nn.Module = AtomwiseEnergyHead(width)
    elif cfg.head == "pooled":
        head = PooledEnergyHead(width)
    else:
        raise ValueError(f"unknown head {cfg.head!r}; available: {list(HEADS)}")
    noise_head = NoiseLevelHead(width, cfg.noise_levels) if cfg.noise_levels > 0 else None
    distance_head = DistanceHead(width) if cfg.distance_head else None
    return EnergyModel(
        backbone,
        head,
        noise_head,
        distance_head,
        energy_scale=energy_scale,
        energy_shift=energy_shift,
        atom_ref=atom_ref,
    )


def needs_hypergraph(cfg: ModelConfig) -> bool:
    """Whether the backbone of ``cfg`` reads a hypergraph (every topology must then carry one)."""
    return cfg.backbone in HYPERGRAPH_BACKBONES


def hypergraph_options(cfg: ModelConfig) -> FragmentOptions:
    """Fragmenter settings for building hypergraphs for the model of ``cfg`` (SE3Set only).

    Raises
    ------
    ValueError
        If the backbone does not use a hypergraph.
    """
    if not needs_hypergraph(cfg):
        raise ValueError(f"the {cfg.backbone!r} backbone does not use a hypergraph")
    from emgp_md.data.fragment import PRESETS as FRAGMENT_PRESETS
    from emgp_md.models.se3set.config import settings_from_config

    return FRAGMENT_PRESETS[settings_from_config(cfg).fragmentation]


def paper_init_(model: nn.Module) -> None:
    """The authors' from-scratch MD17 init: Kaiming-uniform (a=0) on every weight (docs/method.md §4.1)."""
    for name, p in model.named_parameters():
        if "weight" in name and p.dim() >= 2:
            nn.init.kaiming_uniform_(p, a=0)
        elif "weight" in name:
            nn.init.kaiming_uniform_(p.unsqueeze(0), a=0)


def unit_distance_init_(model: EnergyModel) -> None:
    """A from-scratch EGNN init that starts off the zero-force plateau (docs/results.md §7).

    PyTorch's default draws the squared-distance column of each layer's first edge-MLP weight as
    one of ``2·hidden_nf + 5`` inputs (std 0.036 per Å² at width 128), so geometry barely reaches
    the energy and a scratch 7 × 128 EGNN fine-tuned on energies and forces sits at F ≈ 0. Here:

    - that column is drawn as an input of its own (fan-in 1): uniform with unit variance,
      ``U(−√3, √3)`` per Å²;
    - the energy readout (the last layer of the atomwise head) starts at zero, so the first steps
      are not spent flattening a random energy surface (with an energy loss that collapse takes
      the geometry signal with it).

    Every other weight keeps PyTorch's default. Changes ``model`` in place.

    Raises
    ------
    ValueError
        For a backbone other than the EGNN or a head other than the atomwise one.
    """
    if not isinstance(model.backbone, EGNN) or not isinstance(model.head, AtomwiseEnergyHead):
        raise ValueError(
            f"init 'unit_distance' is defined for the EGNN with the atomwise head, not "
            f"{type(model.backbone).__name__} with {type(model.head).__name__}; use init 'default'"
        )
    bound = 3.0**0.5
    with torch.no_grad():
        for layer in model.backbone.layers():
            layer.edge_mlp[0].weight[:, 2 * layer.hidden_nf].uniform_(-bound, bound)
        readout = model.head.mlp[2]
        readout.weight.zero_()
        readout.bias.zero_()


__all__ = [
    "BACKBONES",
    "EGNN",
    "HEADS",
    "HYPERGRAPH_BACKBONES",
    "PAPER_CUTOFF_A",
    "EnergyModel",
    "SchNet",
    "TorchMDET",
    "build_backbone",
    "build_model",
    "hypergraph_options",
    "needs_hypergraph",
    "paper_init_",
    "unit_distance_init_",
]
