"""Explicit differentiable EGNN forces for training (emgp_md.models.egnn.train): equal to plain
autograd with create_graph=True (energies, forces, parameter gradients of a force loss),
gradcheck/gradgradcheck, batched = single, fallback, and identical training steps. float64, seeded."""

from __future__ import annotations

import pytest
import torch
from ase.build import molecule
from conftest import jittered_frames, make_small_model, topo_of

from emgp_md.config import ModelConfig
from emgp_md.data.graph import GraphBatch, collate, repeat_topology
from emgp_md.models import build_model
from emgp_md.models.egnn import train as egnn_train
from emgp_md.models.egnn.train import SiluGrad, dense_energy_and_forces, explicit_forces, explicit_forces_apply
from emgp_md.models.forces import energy_and_forces
from emgp_md.training.losses import energy_force_loss

REL = 1e-6  # the tolerance; float64 agreement is in fact ~1e-12


@pytest.fixture
def count_explicit(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts calls of the explicit force path."""
    calls = [0]

    def counting(*args: object) -> tuple[torch.Tensor, torch.Tensor]:
        calls[0] += 1
        return dense_energy_and_forces(*args)

    monkeypatch.setattr("emgp_md.models.egnn.plain.dense_energy_and_forces", counting)
    return calls


def _loss_and_grads(model: torch.nn.Module, graph: GraphBatch, explicit: bool) -> tuple[torch.Tensor, ...]:
    """Energies, forces, force-loss parameter gradients (zeros where none) of one training step."""
    model.zero_grad(set_to_none=True)
    with explicit_forces(explicit):
        e, f = energy_and_forces(model, graph, training=True)
    true_e, true_f = torch.zeros_like(e) + 0.3, torch.full_like(f, 0.1)
    energy_force_loss(e, f, true_e, true_f, 2.0, 0.2, 0.8).backward()
    grads = [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in model.parameters()]
    return (e.detach(), f.detach(), *grads)


def _assert_rel_close(a: torch.Tensor, b: torch.Tensor, rel: float = REL) -> None:
    scale = max(float(b.abs().max()), 1e-300)
    assert float((a - b).abs().max()) <= rel * scale


@pytest.mark.parametrize(("attention", "head"), [(True, "atomwise"), (False, "atomwise"), (True, "pooled")])
def test_equal_to_autograd_float64(attention: bool, head: str, count_explicit: list[int]) -> None:
    torch.manual_seed(1)
    cfg = ModelConfig(hidden_nf=16, n_layers=3, attention=attention, head=head)
    model = build_model(cfg, energy_scale=1.7).double().train()
    graph = jittered_frames()
    ours = _loss_and_grads(model, graph, explicit=True)
    assert count_explicit[0] == 1
    plain = _loss_and_grads(model, graph, explicit=False)
    assert count_explicit[0] == 1
    assert any(float(g.abs().max()) > 0 for g in plain[2:])
    for a, b in zip(ours, plain):
        _assert_rel_close(a, b)
    torch.testing.assert_close(ours[1], plain[1], rtol=0, atol=1e-12)


def test_batched_equals_single() -> None:
    model = make_small_model(seed=2).double().train()
    graph = jittered_frames(n_frames=3)
    e_b, f_b = energy_and_forces(model, graph, training=True)
    n = graph.pos.shape[0] // 3
    for k in range(3):
        single = repeat_topology(topo_of(molecule("CH3CH2OH")), graph.pos[k * n : (k + 1) * n].unsqueeze(0))
        e_s, f_s = energy_and_forces(model, single, training=True)
        torch.testing.assert_close(e_s, e_b[k : k + 1], rtol=0, atol=1e-12)
        torch.testing.assert_close(f_s, f_b[k * n : (k + 1) * n], rtol=0, atol=1e-12)


class _Forces(torch.nn.Module):
    """Forces (n_atoms, 3) of ``model`` by the explicit path, as a module for ``functional_call``."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, graph: GraphBatch) -> torch.Tensor:
        return dense_energy_and_forces(self.model, graph)[1]


def test_gradcheck_and_gradgradcheck_tiny_model() -> None:
    """Forces as a function of positions and one weight matrix: first and second derivatives."""
    model = make_small_model(seed=3, hidden_nf=4, n_layers=2).double().train()
    graph = jittered_frames("H2O", n_frames=2)
    name = "backbone.gcl_0.edge_mlp.2.weight"
    weight = dict(model.named_parameters())[name].detach().clone().requires_grad_(True)

    wrapper = _Forces(model)

    def forces(pos: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(wrapper, {f"model.{name}": w}, (graph.with_pos(pos),))

    pos = graph.pos.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(forces, (pos, weight))
    assert torch.autograd.gradgradcheck(forces, (pos, weight))


def test_silu_grad_gradcheck() -> None:
    gen = torch.Generator().manual_seed(4)
    grad = torch.randn(5, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    x = torch.randn(5, 3, dtype=torch.float64, generator=gen, requires_grad=True) * 3
    assert torch.autograd.gradcheck(SiluGrad.apply, (grad, x))
    assert torch.autograd.gradgradcheck(SiluGrad.apply, (grad, x))
    torch.testing.assert_close(
        SiluGrad.apply(grad, x), grad * torch.func.grad(lambda t: torch.nn.functional.silu(t).sum())(x)
    )


def test_fallback_to_autograd(count_explicit: list[int]) -> None:
    """Molecules of different sizes (no dense layout) and the switch fall back to autograd."""
    model = make_small_model(seed=5).double().train()
    mixed = collate(
        [topo_of(molecule("CH3CH2OH")), topo_of(molecule("H2O"))],
        [molecule("CH3CH2OH").positions, molecule("H2O").positions],
        torch.float64,
    )
    assert mixed.dense_edge_type is None and not explicit_forces_apply(model, mixed)
    _, f = energy_and_forces(model, mixed, training=True)
    assert f.requires_grad and count_explicit[0] == 0
    dense = jittered_frames()
    assert explicit_forces_apply(model, dense)
    with explicit_forces(False):
        assert not explicit_forces_apply(model, dense)
        energy_and_forces(model, dense, training=True)
    assert count_explicit[0] == 0
    energy_and_forces(model, dense, training=False)  # inference keeps the fused first-order path
    assert count_explicit[0] == 0
    energy_and_forces(model, dense, training=True)
    assert count_explicit[0] == 1
    with torch.no_grad():  # a training call nested in an inference block still trains
        _, f_n = energy_and_forces(model, dense, training=True)
    assert count_explicit[0] == 2 and f_n.requires_grad
    assert egnn_train.explicit_forces_apply(make_small_model(seed=5), dense)


def test_training_steps_identical() -> None:
    """Five Adam steps on a force + energy loss: same weights either way (float64)."""
    base = make_small_model(seed=6, n_layers=3).double().train()
    runs = []
    for explicit in (True, False):
        model = make_small_model(seed=6, n_layers=3).double().train()
        model.load_state_dict(base.state_dict())
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        for step in range(5):
            graph = jittered_frames(n_frames=4, seed=step)
            opt.zero_grad(set_to_none=True)
            with explicit_forces(explicit):
                e, f = energy_and_forces(model, graph, training=True)
            energy_force_loss(e, f, torch.zeros_like(e), torch.zeros_like(f), 1.0, 0.2, 0.8).backward()
            opt.step()
        runs.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    moved = float((runs[0] - torch.cat([p.detach().flatten() for p in base.parameters()])).abs().max())
    assert moved > 1e-3
    torch.testing.assert_close(runs[0], runs[1], rtol=1e-9, atol=1e-10)
