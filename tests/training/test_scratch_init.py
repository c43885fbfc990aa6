"""The ``unit_distance`` from-scratch init (issue #16 item 1: a scratch EGNN off the zero-force plateau)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from emgp_md.config import FinetuneConfig, ModelConfig
from emgp_md.data.graph import repeat_topology
from emgp_md.data.rmd17 import load_frames
from emgp_md.data.topology import topology_from_positions
from emgp_md.models.forces import energy_and_forces
from emgp_md.training.finetune import build_finetune_model

WIDTH, LAYERS = 32, 3


def _model(data, init: str, backbone: str = "egnn"):
    cfg = FinetuneConfig(
        data=str(data), model=ModelConfig(backbone=backbone, hidden_nf=WIDTH, n_layers=LAYERS), init=init, seed=3
    )
    return build_finetune_model(cfg, 1.0, 0.0)[0].double()


def _batch(data):
    frames = load_frames(data)
    topo = topology_from_positions(frames.z, frames.coords[0])
    graph = repeat_topology(topo, torch.tensor(frames.coords[:8], dtype=torch.float64))
    return graph, torch.tensor(frames.forces[:8].reshape(-1, 3), dtype=torch.float64)


def test_unit_distance_changes_only_the_distance_column_and_the_readout(tiny_rmd17):
    default, unit = _model(tiny_rmd17, "default"), _model(tiny_rmd17, "unit_distance")
    changed = set()
    for (name, a), (_, b) in zip(default.named_parameters(), unit.named_parameters(), strict=True):
        if not torch.equal(a, b):
            changed.add(name)
    assert changed == {f"backbone.gcl_{i}.edge_mlp.0.weight" for i in range(LAYERS)} | {
        "head.mlp.2.weight",
        "head.mlp.2.bias",
    }
    columns = torch.stack([unit.backbone.layers()[i].edge_mlp[0].weight[:, 2 * WIDTH] for i in range(LAYERS)]).detach()
    assert columns.abs().max() <= math.sqrt(3.0)
    assert 0.75 < float(columns.std()) < 1.25  # unit variance (default: ~0.1 at this width)
    for i in range(LAYERS):  # the rest of the first edge layer keeps PyTorch's draw
        w_def, w_unit = default.backbone.layers()[i].edge_mlp[0].weight, unit.backbone.layers()[i].edge_mlp[0].weight
        keep = [c for c in range(w_def.shape[1]) if c != 2 * WIDTH]
        assert torch.equal(w_def[:, keep], w_unit[:, keep])


def test_unit_distance_starts_flat_with_a_force_signal_in_the_readout(tiny_rmd17):
    """Zero readout: E and F start at exactly zero; the force loss's gradient on the readout is several times
    larger than at the default init, i.e. geometry reaches the last layer's features."""
    graph, true_f = _batch(tiny_rmd17)
    grads = {}
    for init in ("default", "unit_distance"):
        model = _model(tiny_rmd17, init)
        energy, forces = energy_and_forces(model, graph, training=True)
        if init == "unit_distance":
            assert torch.count_nonzero(energy) == 0 and torch.count_nonzero(forces) == 0
        loss = (forces - true_f).pow(2).mean()
        (grad,) = torch.autograd.grad(loss, model.head.mlp[2].weight)
        grads[init] = float(grad.norm())
    assert grads["unit_distance"] > 4 * grads["default"], grads  # 6.7x at this width and seed


def test_unit_distance_is_refused_for_other_backbones(tiny_rmd17):
    with pytest.raises(ValueError, match="unit_distance.*SchNet"):
        _model(tiny_rmd17, "unit_distance", backbone="schnet")


def test_unit_distance_is_a_config_choice(tiny_rmd17):
    assert FinetuneConfig(data=str(tiny_rmd17), init="unit_distance").init == "unit_distance"
    with pytest.raises(ValueError, match="init"):
        FinetuneConfig(data=str(tiny_rmd17), init="unit")
    assert np.isfinite(float(_model(tiny_rmd17, "unit_distance").backbone.layers()[0].edge_mlp[0].weight.sum()))
