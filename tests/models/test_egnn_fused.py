"""Fused dense EGNN kernels (inference energy + forces): equal to plain autograd, gradcheck, switch,
caches, batching, and the training path left on plain autograd."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from ase.build import molecule
from conftest import make_small_model, topo_of

from emgp_md.config import ModelConfig
from emgp_md.data.graph import GraphBatch, collate, repeat_topology
from emgp_md.models import build_model
from emgp_md.models.egnn import EGNN
from emgp_md.models.egnn.buffers import WORKSPACES, clear_caches, fused_weights
from emgp_md.models.egnn.fused import FusedAtomwiseEnergy, FusedDenseEGNN, fused_energy
from emgp_md.models.forces import energy_and_forces
from emgp_md.models.heads import AtomwiseEnergyHead, sum_pool


def plain_energy_and_forces(model: torch.nn.Module, graph: GraphBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """Energy and forces by plain autograd through the (unfused) dense path."""
    with torch.enable_grad():
        pos = graph.pos.detach().requires_grad_(True)
        energy = model(graph.with_pos(pos))
        (grad,) = torch.autograd.grad(energy.sum(), pos)
    return energy.detach(), -grad


@pytest.fixture
def count_fused(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts calls of the fused kernel."""
    calls = [0]
    apply = FusedDenseEGNN.apply

    def counting(*args: object) -> torch.Tensor:
        calls[0] += 1
        return apply(*args)

    monkeypatch.setattr(FusedDenseEGNN, "apply", counting)
    return calls


def _graph(atoms_list: list, dtype: torch.dtype = torch.float64, seed: int = 0) -> GraphBatch:
    rng = np.random.default_rng(seed)
    pos = [a.positions + rng.normal(scale=0.05, size=a.positions.shape) for a in atoms_list]
    return collate([topo_of(a) for a in atoms_list], pos, dtype)


@pytest.mark.parametrize("attention", [True, False])
def test_fused_equals_plain_float64(attention: bool, count_fused: list[int]) -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(hidden_nf=16, n_layers=3, attention=attention)).double().eval()
    graph = _graph([molecule("CH3CH2OH")])
    e_f, f_f = energy_and_forces(model, graph)
    assert count_fused[0] == 1
    e_p, f_p = plain_energy_and_forces(model, graph)
    assert count_fused[0] == 1
    torch.testing.assert_close(e_f, e_p, rtol=0, atol=1e-12)
    torch.testing.assert_close(f_f, f_p, rtol=0, atol=1e-12)
    assert f_f.abs().max() > 1e-4  # not trivially zero
    e_s, f_s = energy_and_forces(model, dataclasses.replace(graph, dense_edge_type=None))  # sparse path
    torch.testing.assert_close(e_f, e_s, rtol=0, atol=1e-12)
    torch.testing.assert_close(f_f, f_s, rtol=0, atol=1e-12)


def test_fused_float32_paper_size_within_1e5() -> None:
    """7 x 128, float32: fused and plain float32 agree with the float64 result within 1e-5 (abs + rel)."""
    torch.manual_seed(1)
    model = build_model(ModelConfig(hidden_nf=128, n_layers=7)).eval()
    mols = [molecule("C6H6"), molecule("CH3CH2OH")]
    for atoms in mols:
        g64 = _graph([atoms])
        e64, f64 = plain_energy_and_forces(model.double(), g64)
        g32 = _graph([atoms], torch.float32)
        model.float()
        e32, f32 = energy_and_forces(model, g32)
        e32p, f32p = plain_energy_and_forces(model, g32)
        for e, f in ((e32, f32), (e32p, f32p)):
            assert torch.all((e.double() - e64).abs() <= 1e-5 + 1e-5 * e64.abs())
            assert torch.all((f.double() - f64).abs() <= 1e-5 + 1e-5 * f64.abs())
        assert (f32 - f32p).abs().max() <= 1e-5


def test_gradcheck_float64() -> None:
    torch.manual_seed(2)
    for attention in (True, False):
        backbone = EGNN(hidden_nf=5, n_layers=2, attention=attention).double()
        weights = fused_weights(backbone).layers
        pos = torch.randn(2, 4, 3, dtype=torch.float64, requires_grad=True)
        h0 = torch.randn(8, 5, dtype=torch.float64, requires_grad=True)
        types = torch.randint(0, 4, (2, 4, 4))
        assert torch.autograd.gradcheck(
            lambda p, h, t=types, w=weights: FusedDenseEGNN.apply(p, h, t, w, True), (pos, h0)
        )


def test_gradcheck_fused_head_float64() -> None:
    torch.manual_seed(3)
    h = torch.randn(7, 5, dtype=torch.float64, requires_grad=True)
    batch = torch.tensor([0, 0, 0, 1, 1, 2, 2])
    w_1, b_1, w_2, b_2 = (torch.randn(*s, dtype=torch.float64) for s in ((5, 5), (5,), (5,), (1,)))
    assert torch.autograd.gradcheck(lambda x: FusedAtomwiseEnergy.apply(x, batch, 3, w_1, b_1, w_2, b_2), (h,))
    head = AtomwiseEnergyHead(5).double()
    first, last = head.mlp[0], head.mlp[2]
    with torch.no_grad():
        fused = FusedAtomwiseEnergy.apply(h, batch, 3, first.weight, first.bias, last.weight[0], last.bias)
        torch.testing.assert_close(fused, head(h, batch, 3), rtol=0, atol=1e-14)
    torch.testing.assert_close(fused, sum_pool(head.mlp(h).squeeze(1), batch, 3), rtol=0, atol=1e-14)


def test_batched_equals_single() -> None:
    model = make_small_model(seed=4, n_layers=3).double()
    a, b = molecule("CH3CH2OH"), molecule("CH3OCH3")  # same size, different bond graphs
    both = _graph([a, b])
    assert both.dense_edge_type is not None and both.dense_edge_type.shape[0] == 2
    e, f = energy_and_forces(model, both)
    n = len(a)
    for k, atoms in enumerate((a, b)):
        single = collate([topo_of(atoms)], [both.pos[k * n : (k + 1) * n]], torch.float64)
        e1, f1 = energy_and_forces(model, single)
        torch.testing.assert_close(e[k : k + 1], e1, rtol=0, atol=1e-12)
        torch.testing.assert_close(f[k * n : (k + 1) * n], f1, rtol=0, atol=1e-12)
    rng = np.random.default_rng(1)
    frames = torch.tensor(a.positions + rng.normal(scale=0.05, size=(3, n, 3)))
    e3, f3 = energy_and_forces(model, repeat_topology(topo_of(a), frames))
    e3p, f3p = plain_energy_and_forces(model, repeat_topology(topo_of(a), frames))
    torch.testing.assert_close(f3, f3p, rtol=0, atol=1e-12)
    torch.testing.assert_close(e3, e3p, rtol=0, atol=1e-12)


def test_training_path_unchanged(count_fused: list[int]) -> None:
    """training=True keeps plain autograd: same forces, and a force loss back-propagates to weights."""
    model = make_small_model(seed=5).double().train()
    graph = _graph([molecule("CH3CH2OH")])
    e_t, f_t = energy_and_forces(model, graph, training=True)
    assert count_fused[0] == 0
    assert f_t.requires_grad
    (f_t**2).sum().backward()
    grads = [p.grad for p in model.backbone.parameters() if p.grad is not None]
    assert grads and any(g.abs().max() > 0 for g in grads)
    e_i, f_i = energy_and_forces(model, graph)
    assert count_fused[0] == 1 and not f_i.requires_grad
    torch.testing.assert_close(f_i, f_t.detach(), rtol=0, atol=1e-12)
    torch.testing.assert_close(e_i, e_t.detach(), rtol=0, atol=1e-12)
    with torch.no_grad():  # a training call nested in an inference block still trains
        _, f_n = energy_and_forces(model, graph, training=True)
    assert count_fused[0] == 1 and f_n.requires_grad


@pytest.mark.parametrize("head", ["atomwise", "pooled"])
def test_double_backward_raises(head: str) -> None:
    """create_graph=True through the fused kernels raises at once (no silently graph-less forces)."""
    model = make_small_model(seed=6, head=head).double()
    graph = _graph([molecule("CH3CH2OH")])
    with torch.enable_grad():
        pos = graph.pos.detach().requires_grad_(True)
        energy = fused_energy(model, graph.with_pos(pos))
        with pytest.raises(RuntimeError, match="first-order backward only"):
            torch.autograd.grad(energy.sum(), pos, create_graph=True)


def test_hook_applies_where_expected(count_fused: list[int]) -> None:
    """The forces hook: None for sparse batches, a compiled wrapper's model or another model; the
    plain forward with gradients never runs fused, without gradients it does (keep=False)."""
    model = make_small_model(seed=7).double()
    graph = _graph([molecule("CH3CH2OH")])
    backbone = model.backbone
    assert backbone.fast_energy_and_forces(model, dataclasses.replace(graph, dense_edge_type=None), False) is None
    other = make_small_model(seed=7).double()
    assert backbone.fast_energy_and_forces(other, graph, False) is None  # not this model's backbone
    assert count_fused[0] == 0
    e, f = backbone.fast_energy_and_forces(model, graph, False)
    assert count_fused[0] == 1 and e.shape == (1,) and not f.requires_grad
    with torch.enable_grad():
        model(graph)
    assert count_fused[0] == 1
    with torch.no_grad():
        model(graph)
    assert count_fused[0] == 2


def test_no_grad_and_inference_mode_forward() -> None:
    model = make_small_model(seed=7).double()
    graph = _graph([molecule("CH3CH2OH")])
    e_ref, f_ref = plain_energy_and_forces(model, graph)
    clear_caches()
    with torch.inference_mode():  # buffers made here must stay usable outside
        e_inf = model(graph)
    with torch.no_grad():
        e_ng = model(graph)
    e, f = energy_and_forces(model, graph)
    for x in (e_inf, e_ng, e):
        torch.testing.assert_close(x, e_ref, rtol=0, atol=1e-12)
    torch.testing.assert_close(f, f_ref, rtol=0, atol=1e-12)


def test_weights_cache_follows_parameter_changes() -> None:
    model = make_small_model(seed=8).double()
    graph = _graph([molecule("CH3CH2OH")])
    energy_and_forces(model, graph)  # fill the cache
    first = model.backbone.gcl_0.edge_mlp[2]
    with torch.no_grad():  # in-place update (as an optimiser step)
        first.weight.mul_(1.5)
    _, f = energy_and_forces(model, graph)
    torch.testing.assert_close(f, plain_energy_and_forces(model, graph)[1], rtol=0, atol=1e-12)
    first.bias.data = first.bias.data * 2.0  # new storage behind the same Parameter
    _, f = energy_and_forces(model, graph)
    torch.testing.assert_close(f, plain_energy_and_forces(model, graph)[1], rtol=0, atol=1e-12)
    first.weight = torch.nn.Parameter(first.weight.detach() * 0.5)  # a new Parameter object
    _, f = energy_and_forces(model, graph)
    torch.testing.assert_close(f, plain_energy_and_forces(model, graph)[1], rtol=0, atol=1e-12)
    model.backbone.gcl_1.node_mlp[0] = torch.nn.Linear(32, 16).double()  # a new submodule
    _, f = energy_and_forces(model, graph)
    torch.testing.assert_close(f, plain_energy_and_forces(model, graph)[1], rtol=0, atol=1e-12)
    with torch.no_grad():  # the embedding table is cached too
        model.backbone.embedding_in.bias.add_(0.3)
    _, f = energy_and_forces(model, graph)
    torch.testing.assert_close(f, plain_energy_and_forces(model, graph)[1], rtol=0, atol=1e-12)
    model.float()  # new storage and dtype
    _, f32 = energy_and_forces(model, _graph([molecule("CH3CH2OH")], torch.float32))
    model.double()
    torch.testing.assert_close(f32.double(), plain_energy_and_forces(model, graph)[1], rtol=1e-4, atol=1e-5)


def test_weights_cache_hits_until_something_changes() -> None:
    """The cached split weights are reused as such, and rebuilt after each kind of change."""
    backbone = make_small_model(seed=11).double().backbone
    first = fused_weights(backbone)
    assert fused_weights(backbone) is first  # nothing changed: the same object
    layer = backbone.gcl_0.edge_mlp[0]
    with torch.no_grad():
        layer.weight.add_(0.1)  # version counter
    second = fused_weights(backbone)
    assert second is not first and fused_weights(backbone) is second
    layer.bias = torch.nn.Parameter(layer.bias.detach().clone())  # a new Parameter object
    third = fused_weights(backbone)
    assert third is not second
    torch.testing.assert_close(third.layers[0].b_node, second.layers[0].b_node, rtol=0, atol=0)
    backbone.gcl_0.add_module("extra", torch.nn.Linear(2, 2))  # a new child anywhere in the tree
    assert fused_weights(backbone) is not third


def test_live_graphs_do_not_share_workspaces() -> None:
    """Two forwards before their backwards, and a retained graph, give the right forces."""
    model = make_small_model(seed=9).double()
    g1, g2 = _graph([molecule("CH3CH2OH")], seed=1), _graph([molecule("CH3CH2OH")], seed=2)
    with torch.enable_grad():
        p1, p2 = g1.pos.detach().requires_grad_(True), g2.pos.detach().requires_grad_(True)
        e1, e2 = fused_energy(model, g1.with_pos(p1)), fused_energy(model, g2.with_pos(p2))
        (d2,) = torch.autograd.grad(e2.sum(), p2, retain_graph=True)
        (d1,) = torch.autograd.grad(e1.sum(), p1)
        (d2_again,) = torch.autograd.grad(e2.sum(), p2)
    torch.testing.assert_close(-d1, plain_energy_and_forces(model, g1)[1], rtol=0, atol=1e-12)
    torch.testing.assert_close(-d2, plain_energy_and_forces(model, g2)[1], rtol=0, atol=1e-12)
    torch.testing.assert_close(d2_again, d2, rtol=0, atol=0)


def test_workspaces_are_pooled_and_bounded() -> None:
    clear_caches()
    model = make_small_model(seed=10).double()
    graph = _graph([molecule("CH3CH2OH")])
    energy_and_forces(model, graph)
    sizes = WORKSPACES.free_sizes()
    assert len(sizes) == 1  # back in the pool once the graph is gone
    ws = WORKSPACES.acquire(sizes[0])
    WORKSPACES.release(sizes[0], ws)
    assert WORKSPACES.acquire(sizes[0]) is ws  # reused
    for n_frames in range(2, 8):
        frames = graph.pos.detach().expand(n_frames, -1, -1)
        energy_and_forces(model, repeat_topology(topo_of(molecule("CH3CH2OH")), frames))
    assert len(WORKSPACES.free_sizes()) <= WORKSPACES.max_keys


def test_calculator_uses_fused_path(small_checkpoint, count_fused: list[int]) -> None:
    from emgp_md import EMGPCalculator, load_checkpoint

    atoms = molecule("CH3CH2OH")
    atoms.calc = EMGPCalculator(model=small_checkpoint, dtype="float64")
    f = atoms.get_forces()
    assert count_fused[0] == 1
    model, _ = load_checkpoint(small_checkpoint)
    graph = collate([topo_of(atoms)], [atoms.positions], torch.float64)
    _, f_ref = plain_energy_and_forces(model.double(), graph)
    from ase import units

    np.testing.assert_allclose(f, f_ref.numpy() * units.kcal / units.mol, rtol=0, atol=1e-12)
