"""Every backbone (EGNN, SchNet, TorchMD-Net ET) behind the energy-model interface: symmetry
contracts, exact forces, batching, checkpoints, smooth cutoffs, locality, pretraining (float64)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import molecule
from conftest import topo_of

from emgp_md.config import ModelConfig, from_dict
from emgp_md.data.graph import collate
from emgp_md.data.topology import topology_from_positions
from emgp_md.models import BACKBONES, build_backbone, build_model
from emgp_md.models.base import Backbone
from emgp_md.models.checkpoint import load_checkpoint, make_metadata, save_checkpoint
from emgp_md.models.energy_model import EnergyModel
from emgp_md.pretrain.noise import noise_levels
from emgp_md.pretrain.objectives import draw_noise, pretrain_losses
from emgp_md.testing import (
    assert_batch_equals_single,
    assert_e3_invariance,
    assert_forces_match_fd,
    assert_permutation_invariance,
    model_fn,
)

ALL = ["egnn", "schnet", "et"]
CUTOFF_BACKBONES = ["schnet", "et"]


def small_cfg(backbone: str, cutoff_A: float | None = None, **kw: object) -> ModelConfig:
    """Small architecture (hidden 16, 2 layers, 16 RBFs, 4 heads)."""
    if backbone == "egnn":
        return ModelConfig(backbone="egnn", hidden_nf=16, n_layers=2, **kw)
    return ModelConfig(backbone=backbone, hidden_nf=16, n_layers=2, n_rbf=16, n_heads=4, cutoff_A=cutoff_A, **kw)


def small(backbone: str, seed: int = 0, cutoff_A: float | None = None, **kw: object) -> EnergyModel:
    """Seeded random float32 model in eval mode."""
    torch.manual_seed(seed)
    return build_model(small_cfg(backbone, cutoff_A, **kw)).eval()


def test_registry_and_paper_sizes() -> None:
    assert BACKBONES == ("egnn", "schnet", "et", "se3set")  # SE3Set needs a hypergraph: tests/models/test_se3set.py
    counts = {b: sum(p.numel() for p in build_backbone(ModelConfig(backbone=b)).parameters()) for b in ALL}
    assert counts == {"egnn": 852_103, "schnet": 565_824, "et": 1_584_996}
    assert build_backbone(ModelConfig(backbone="schnet")).cutoff_A == 10.0
    assert build_backbone(ModelConfig(backbone="et")).cutoff_A == 5.0
    assert build_backbone(ModelConfig(backbone="et", cutoff_A=4.0)).cutoff_A == 4.0
    cfg = from_dict(ModelConfig, {"backbone": "et", "hidden_nf": 32, "n_heads": 4, "cutoff_A": 6.0})
    assert isinstance(build_backbone(cfg), torch.nn.Module) and cfg.backbone == "et"


def test_configuration_errors() -> None:
    with pytest.raises(ValueError, match="backbone"):
        build_backbone(ModelConfig(backbone="painn"))
    with pytest.raises(ValueError, match="n_heads"):
        build_backbone(ModelConfig(backbone="et", hidden_nf=20, n_heads=8))
    with pytest.raises(ValueError, match="cutoff_A"):
        build_backbone(ModelConfig(backbone="egnn", cutoff_A=5.0))
    with pytest.raises(ValueError, match="cutoff_A"):
        build_backbone(ModelConfig(backbone="schnet", cutoff_A=-1.0))


@pytest.mark.parametrize("backbone", ALL)
def test_backbone_protocol(backbone: str, ethanol) -> None:
    """EGNN, SchNet and ET implement the Backbone protocol: graph in, (n_atoms, hidden_nf) features out."""
    model = small(backbone)
    assert isinstance(model.backbone, Backbone) and not model.backbone.needs_hypergraph
    g = collate([topo_of(ethanol)], [ethanol.positions])
    h = model.backbone(g)
    assert h.shape == (len(ethanol), model.backbone.hidden_nf) and h.dtype == g.pos.dtype


@pytest.mark.parametrize("head", ["atomwise", "pooled"])
@pytest.mark.parametrize("backbone", ALL)
def test_e3_invariance(backbone: str, head: str, ethanol) -> None:
    fn = model_fn(small(backbone, seed=1, cutoff_A=2.5, head=head), topo_of(ethanol))
    _, f = fn(ethanol.positions)
    assert np.abs(f).max() > 1e-6, "forces vanish: the invariance test would be vacuous"
    assert_e3_invariance(fn, ethanol.positions, seed=7, n_trials=4, atol=1e-10)


@pytest.mark.parametrize("backbone", ALL)
def test_permutation_invariance(backbone: str, ethanol) -> None:
    model = small(backbone, seed=2, cutoff_A=2.5)

    def fn_of_perm(perm: np.ndarray):
        return model_fn(model, topology_from_positions(ethanol.numbers[perm], ethanol.positions[perm]))

    assert_permutation_invariance(fn_of_perm, ethanol.positions, seed=3, atol=1e-10)


@pytest.mark.parametrize("backbone", ALL)
def test_forces_match_finite_differences(backbone: str, ethanol, rng) -> None:
    pos = ethanol.positions + rng.normal(scale=0.05, size=ethanol.positions.shape)
    fn = model_fn(small(backbone, seed=4, cutoff_A=2.5), topo_of(ethanol))
    assert_forces_match_fd(fn, pos, delta_A=1e-5, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("backbone", ALL)
def test_batch_equals_single(backbone: str, ethanol, benzene) -> None:
    assert_batch_equals_single(
        small(backbone, seed=6, cutoff_A=2.5),
        [topo_of(ethanol), topo_of(benzene)],
        [ethanol.positions, benzene.positions],
        atol=1e-12,
    )


@pytest.mark.parametrize("backbone", ALL)
def test_checkpoint_round_trip(backbone: str, ethanol, tmp_path) -> None:
    cfg = small_cfg(backbone, cutoff_A=None if backbone == "egnn" else 3.5)
    torch.manual_seed(5)
    model = build_model(cfg, energy_scale=2.0, energy_shift=-7.0).eval()
    path = tmp_path / f"{backbone}.pt"
    save_checkpoint(path, model, make_metadata(cfg, species=[1, 6, 8], energy_unit="kcal/mol"))
    loaded, meta = load_checkpoint(path)
    assert from_dict(ModelConfig, meta["model"]) == cfg
    assert type(loaded.backbone) is type(model.backbone)
    topo = topo_of(ethanol)
    e0, f0 = model_fn(model, topo)(ethanol.positions)
    e1, f1 = model_fn(loaded, topo)(ethanol.positions)
    assert e1 == e0
    np.testing.assert_array_equal(f1, f0)


def _pair_crossing(pos: np.ndarray, cutoff_A: float) -> tuple[int, int]:
    """The pair whose distance is closest to (but not at) the cutoff."""
    d = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    i, j = np.unravel_index(np.argmin(np.abs(d - cutoff_A) + np.eye(len(pos)) * 1e9), d.shape)
    return int(i), int(j)


@pytest.mark.parametrize("backbone", ALL)
def test_energy_smooth_across_cutoff(backbone: str, ethanol) -> None:
    """Moving one atom so that a pair goes from ``r_c − ε`` to ``r_c + ε`` changes E and F by O(ε)."""
    cutoff_A, eps = 2.5, 1e-7
    fn = model_fn(small(backbone, seed=8, cutoff_A=cutoff_A), topo_of(ethanol))
    i, j = _pair_crossing(ethanol.positions, cutoff_A)
    direction = ethanol.positions[j] - ethanol.positions[i]
    direction /= np.linalg.norm(direction)

    def at(dist_A: float) -> tuple[float, np.ndarray]:
        pos = ethanol.positions.copy()
        pos[j] = pos[i] + dist_A * direction
        return fn(pos)

    (e_in, f_in), (e_out, f_out) = at(cutoff_A - eps), at(cutoff_A + eps)
    (e_far, _) = at(cutoff_A + 0.1)
    assert abs(e_far - e_in) > 1e-6, "the geometry change is invisible: test would be vacuous"
    scale = max(np.abs(f_in).max(), 1e-3)
    assert abs(e_out - e_in) < 10 * eps * scale
    np.testing.assert_allclose(f_out, f_in, atol=1e-5 * scale, rtol=0)


def _two_waters(gap_A: float, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Two water molecules; the second rotated by ``angle`` about z and shifted by ``gap_A`` along x."""
    w = molecule("H2O")
    c, s = np.cos(angle), np.sin(angle)
    rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    second = w.positions @ rot.T + np.array([gap_A, 0.0, 0.0])
    return np.concatenate([w.numbers, w.numbers]), np.concatenate([w.positions, second])


@pytest.mark.parametrize("backbone", CUTOFF_BACKBONES)
def test_no_interaction_beyond_cutoff(backbone: str) -> None:
    """With an atomwise head, molecules farther apart than r_c add up exactly, also at r_c < d < 2 r_c
    where the authors' bare cosine SchNet cutoff grows back (docs/method.md §7.8) and the authors' ET
    still exchanges vector messages (7.9)."""
    cutoff_A = 3.0
    model = small(backbone, seed=9, cutoff_A=cutoff_A)
    water = molecule("H2O")
    e_one, f_one = model_fn(model, topology_from_positions(water.numbers, water.positions))(water.positions)
    for gap_A, angle in [(4.2, 0.3), (4.6, 1.7)]:
        z, pos = _two_waters(gap_A, angle)
        d = np.linalg.norm(pos[:3, None] - pos[None, 3:], axis=-1)
        assert cutoff_A < d.min() and d.max() < 2 * cutoff_A
        e_two, f_two = model_fn(model, topology_from_positions(z, pos))(pos)
        np.testing.assert_allclose(e_two, 2 * e_one, rtol=0, atol=1e-10)
        c, s = np.cos(angle), np.sin(angle)
        rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
        np.testing.assert_allclose(f_two[:3], f_one, rtol=0, atol=1e-10)  # each molecule feels only itself
        np.testing.assert_allclose(f_two[3:], f_one @ rot.T, rtol=0, atol=1e-10)
    # and they do interact inside the cutoff
    z, pos = _two_waters(2.6, 0.3)
    e_close, _ = model_fn(model, topology_from_positions(z, pos))(pos)
    assert abs(e_close - 2 * e_one) > 1e-6


@pytest.mark.parametrize("backbone", ALL)
def test_coinciding_atoms_give_finite_forces(backbone: str, ethanol) -> None:
    pos = ethanol.positions.copy()
    pos[1] = pos[0]
    e, f = model_fn(small(backbone, seed=10), topo_of(ethanol))(pos)
    assert np.isfinite(e) and np.isfinite(f).all()


@pytest.mark.parametrize("backbone", ALL)
def test_pretraining_losses_have_gradients(backbone: str) -> None:
    torch.manual_seed(11)
    model = build_model(small_cfg(backbone, head="pooled", noise_levels=50)).double()
    mols = [molecule(n) for n in ("CH3CH2OH", "C6H6", "NH3")]
    topos = [topology_from_positions(m.numbers, m.positions) for m in mols]
    graph = collate(topos, [m.positions for m in mols], torch.float64)
    draw = draw_noise(range(3), [t.n_atoms for t in topos], 50, 1, seed=0, epoch=0, dtype=torch.float64)
    loss, stats = pretrain_losses(model, graph, draw, noise_levels(), "riemann", 1.0, 0.2, global_batch=3)
    assert torch.isfinite(loss) and float(loss.detach()) > 0 and stats["efp"] > 0 and stats["inp"] > 0
    loss.backward()
    named = dict(model.backbone.named_parameters())
    dead = [name for name, p in named.items() if p.grad is None]
    assert all("coord_mlp" in name for name in dead), (
        f"parameters without gradient: {dead}"
    )  # EGNN: docs/method.md §7.10
    grads = [p.grad for p in named.values() if p.grad is not None]
    assert all(torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0
