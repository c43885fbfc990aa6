"""EGNN backbone: size, symmetry contracts (float64), exact forces, batching, coordinate output."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import topo_of

from emgp_md.config import ModelConfig
from emgp_md.data.graph import collate
from emgp_md.data.topology import topology_from_positions
from emgp_md.models import build_model
from emgp_md.models.egnn import EGNN
from emgp_md.testing import (
    assert_batch_equals_single,
    assert_e3_invariance,
    assert_forces_match_fd,
    assert_permutation_invariance,
    model_fn,
    random_orthogonal,
)


def test_paper_backbone_parameter_count():
    backbone = EGNN(hidden_nf=128, n_layers=7)
    assert sum(p.numel() for p in backbone.parameters()) == 852_103
    assert backbone.embedding_in.in_features == 300


def test_backbone_rejects_empty_architecture():
    with pytest.raises(ValueError, match="n_layers"):
        EGNN(hidden_nf=16, n_layers=0)


@pytest.mark.parametrize("head", ["atomwise", "pooled"])
def test_e3_invariance(small_model, ethanol, head):
    model = small_model(seed=1, head=head)
    assert_e3_invariance(model_fn(model, topo_of(ethanol)), ethanol.positions, seed=7, n_trials=4, atol=1e-10)


def test_invariance_is_not_trivial(small_model, ethanol):
    """The model does depend on geometry: a deformation changes energy and forces."""
    fn = model_fn(small_model(seed=1), topo_of(ethanol))
    e0, f0 = fn(ethanol.positions)
    pos = ethanol.positions.copy()
    pos[0] += [0.1, -0.05, 0.02]
    e1, f1 = fn(pos)
    assert abs(e1 - e0) > 1e-6
    assert np.abs(f1 - f0).max() > 1e-6
    assert np.abs(f0).max() > 1e-6


def test_permutation_invariance(small_model, ethanol):
    model = small_model(seed=2)

    def fn_of_perm(perm):
        return model_fn(model, topology_from_positions(ethanol.numbers[perm], ethanol.positions[perm]))

    assert_permutation_invariance(fn_of_perm, ethanol.positions, seed=3, atol=1e-10)


def test_forces_match_finite_differences(small_model, ethanol, rng):
    model = small_model(seed=4)
    pos = ethanol.positions + rng.normal(scale=0.05, size=ethanol.positions.shape)
    assert_forces_match_fd(model_fn(model, topo_of(ethanol)), pos, delta_A=1e-5, rtol=1e-5, atol=1e-8)


def test_forces_sum_to_zero(small_model, benzene):
    """Translation invariance implies no net force."""
    _, f = model_fn(small_model(seed=5), topo_of(benzene))(benzene.positions)
    np.testing.assert_allclose(f.sum(axis=0), 0.0, atol=1e-12)


def test_batch_equals_single_different_sizes(small_model, ethanol, benzene):
    model = small_model(seed=6)
    assert ethanol.get_global_number_of_atoms() != benzene.get_global_number_of_atoms()
    assert_batch_equals_single(
        model, [topo_of(ethanol), topo_of(benzene)], [ethanol.positions, benzene.positions], atol=1e-12
    )


def test_update_coords_equivariant(ethanol, rng):
    torch.manual_seed(0)
    backbone = EGNN(hidden_nf=16, n_layers=2).double()
    # the released init makes the last coordinate layer ~1e-3; enlarge it so the shift is not negligible
    torch.nn.init.normal_(backbone.gcl_1.coord_mlp[2].weight, std=0.5)
    topo = topo_of(ethanol)

    def run(pos):
        g = collate([topo], [pos], torch.float64)
        with torch.no_grad():
            return backbone.features_and_coords(g)

    h0, x0 = run(ethanol.positions)
    shift0 = x0.numpy() - ethanol.positions
    assert np.abs(shift0).max() > 1e-3, "coordinate update is negligible: test would be vacuous"
    q = random_orthogonal(rng)
    t = rng.normal(scale=2.0, size=3)
    h1, x1 = run(ethanol.positions @ q.T + t)
    np.testing.assert_allclose(x1.numpy(), x0.numpy() @ q.T + t, atol=1e-10)
    np.testing.assert_allclose(h1.numpy(), h0.numpy(), atol=1e-10)
    g = collate([topo], [ethanol.positions], torch.float64)
    with torch.no_grad():
        h = backbone(g)  # the Backbone protocol: features only, the dense path (no coordinate update)
    np.testing.assert_allclose(h.numpy(), run(ethanol.positions)[0].numpy(), atol=1e-10)


def test_build_model_heads_and_errors():
    m = build_model(ModelConfig(hidden_nf=8, n_layers=1, head="pooled", noise_levels=5))
    assert m.noise_head is not None and m.noise_head.noise_pred[-1].out_features == 5
    assert build_model(ModelConfig(hidden_nf=8, n_layers=1)).noise_head is None
    with pytest.raises(ValueError, match="head"):
        build_model(ModelConfig(hidden_nf=8, n_layers=1, head="nope"))
    with pytest.raises(ValueError, match="backbone"):
        build_model(ModelConfig(hidden_nf=8, n_layers=1, backbone="nope"))


def test_energy_and_pooled_consistent_with_forward(small_model, ethanol):
    model = small_model(seed=8, head="pooled").double()
    g = collate([topo_of(ethanol)], [ethanol.positions], torch.float64)
    with torch.no_grad():
        e, pooled = model.energy_and_pooled(g)
        torch.testing.assert_close(e, model(g), rtol=0, atol=1e-12)
    assert pooled.shape == (1, 16)
    with pytest.raises(TypeError, match="pooled"):
        small_model(seed=8).double().energy_and_pooled(g)


def test_energy_scale_and_shift(ethanol):
    from conftest import make_small_model

    base = make_small_model(seed=9).double()
    scaled = make_small_model(seed=9, energy_scale=3.0, energy_shift=-1234.5).double()
    g = collate([topo_of(ethanol)], [ethanol.positions], torch.float64)
    with torch.no_grad():
        e0, e1 = base(g), scaled(g)
    torch.testing.assert_close(e1, 3.0 * e0, rtol=1e-12, atol=0)
    total = scaled.total_energy(e1)
    assert total.dtype == torch.float64
    torch.testing.assert_close(total, e1 - 1234.5, rtol=0, atol=1e-12)


def test_dense_path_equals_sparse_path() -> None:
    """Equal-size fully connected molecules take the dense path; it gives the sparse numbers."""
    import dataclasses

    from ase.build import molecule

    from emgp_md.config import ModelConfig
    from emgp_md.data.graph import collate, repeat_topology
    from emgp_md.data.topology import topology_from_positions
    from emgp_md.models import build_model
    from emgp_md.models.forces import energy_and_forces

    torch.manual_seed(0)
    model = build_model(ModelConfig(hidden_nf=16, n_layers=3)).double()
    a, b = molecule("CH3CH2OH"), molecule("CH3OCH3")  # same size, different bond graphs
    ta, tb = (topology_from_positions(m.numbers, m.positions) for m in (a, b))
    rng = np.random.default_rng(0)
    frames = torch.tensor(a.positions + rng.normal(scale=0.05, size=(4, len(a), 3)))
    for graph in (collate([ta, tb], [a.positions, b.positions], torch.float64), repeat_topology(ta, frames)):
        assert graph.dense_edge_type is not None
        sparse = dataclasses.replace(graph, dense_edge_type=None)
        e_d, f_d = energy_and_forces(model, graph)
        e_s, f_s = energy_and_forces(model, sparse)
        torch.testing.assert_close(e_d, e_s, rtol=0, atol=1e-10)
        torch.testing.assert_close(f_d, f_s, rtol=0, atol=1e-10)
    benzene = molecule("C6H6")
    mixed = collate([ta, topology_from_positions(benzene.numbers, benzene.positions)], [a.positions, benzene.positions])
    assert mixed.dense_edge_type is None  # different sizes: sparse path
