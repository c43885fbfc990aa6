"""Compiled EGNN training step (emgp_md.models.egnn.compiled): its one-graph function equals the
explicit forces and plain autograd (energies, forces, parameter gradients of a force loss) in
float64, applies only where it should, and falls back to the eager path when compiling fails.
The real inductor compile is checked in a slow test (it takes minutes on a small CPU)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
import torch
from conftest import jittered_frames

from emgp_md.config import FinetuneConfig, ModelConfig
from emgp_md.data.graph import GraphBatch
from emgp_md.models import build_model
from emgp_md.models.egnn import compiled
from emgp_md.models.egnn.compiled import compiled_forces, compiled_forces_apply
from emgp_md.models.egnn.train import explicit_forces
from emgp_md.models.forces import energy_and_forces
from emgp_md.training.losses import energy_force_loss


def _step(model: torch.nn.Module, graph: GraphBatch, *, compile_on: bool, explicit: bool = True) -> list[torch.Tensor]:
    """Energies, forces and the force-loss gradient of every parameter (zeros where none)."""
    model.zero_grad(set_to_none=True)
    with explicit_forces(explicit), compiled_forces(compile_on):
        e, f = energy_and_forces(model, graph, training=True)
    energy_force_loss(e, f, torch.zeros_like(e) + 0.3, torch.full_like(f, 0.1), 2.0, 0.2, 0.8).backward()
    grads = [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in model.parameters()]
    return [e.detach(), f.detach(), *grads]


def _assert_all_close(a: list[torch.Tensor], b: list[torch.Tensor], rel: float = 1e-10) -> None:
    for x, y in zip(a, b, strict=True):
        scale = max(float(y.abs().max()), 1e-300)
        assert float((x - y).abs().max()) <= rel * scale


@pytest.mark.parametrize("attention", [True, False])
def test_one_graph_function_equals_explicit_and_autograd(attention: bool, compile_calls: list[dict[str, Any]]) -> None:
    torch.manual_seed(1)
    model = build_model(ModelConfig(hidden_nf=16, n_layers=3, attention=attention), energy_scale=1.7)
    model = model.double().train()
    graph = jittered_frames()
    one_graph = _step(model, graph, compile_on=True)
    assert len(compile_calls) == 1 and compile_calls[0]["dynamic"] is False  # it went through the compiled path
    explicit = _step(model, graph, compile_on=False)
    plain = _step(model, graph, compile_on=False, explicit=False)
    assert any(float(g.abs().max()) > 0 for g in plain[2:])
    _assert_all_close(one_graph, explicit)
    _assert_all_close(one_graph, plain)


def test_applies_only_inside_the_block_and_with_the_atomwise_head(compile_calls: list[dict[str, Any]]) -> None:
    graph = jittered_frames()
    atomwise = build_model(ModelConfig(hidden_nf=8, n_layers=2)).double()
    pooled = build_model(ModelConfig(hidden_nf=8, n_layers=2, head="pooled")).double()
    assert not compiled_forces_apply(atomwise, graph)
    with compiled_forces():
        assert compiled_forces_apply(atomwise, graph)
        assert not compiled_forces_apply(pooled, graph)
        with explicit_forces(False):
            assert not compiled_forces_apply(atomwise, graph)
        with compiled_forces(False):
            assert not compiled_forces_apply(atomwise, graph)
    with pytest.raises(ValueError, match="compile mode 'fastest'"), compiled_forces(mode="fastest"):
        pass


def test_failed_compile_falls_back_to_the_same_numbers(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(fn: Callable[..., Any], **kwargs: Any) -> Callable[..., Any]:
        def run(*args: Any) -> Any:
            raise RuntimeError("no C++ compiler found")

        return run

    monkeypatch.setattr(compiled.torch, "compile", broken)
    monkeypatch.setattr(compiled, "_compiled", {})
    monkeypatch.setattr(compiled, "_failed", set())
    torch.manual_seed(2)
    model = build_model(ModelConfig(hidden_nf=8, n_layers=2)).double().train()
    graph = jittered_frames()
    with caplog.at_level(logging.WARNING, logger="emgp_md.models.egnn.compiled"):
        fallback = _step(model, graph, compile_on=True)
    assert "no C++ compiler found" in caplog.text and "eager explicit forces" in caplog.text
    _assert_all_close(fallback, _step(model, graph, compile_on=False), rel=0.0)
    with compiled_forces():  # not tried again in this process
        assert not compiled_forces_apply(model, graph)


def test_finetune_config_keys() -> None:
    assert FinetuneConfig(data="x.xyz").compile_step is False
    with pytest.raises(ValueError, match="compile_mode"):
        FinetuneConfig(data="x.xyz", compile_mode="fastest")


@pytest.mark.slow
def test_inductor_compile_equals_explicit_float64() -> None:
    """The real thing: inductor's compiled graph (forward, forces, their backward) in float64."""
    pytest.importorskip("torch._inductor")
    torch.manual_seed(3)
    model = build_model(ModelConfig(hidden_nf=8, n_layers=2), energy_scale=1.3).double().train()
    graph = jittered_frames("H2O", n_frames=2)
    _assert_all_close(_step(model, graph, compile_on=True), _step(model, graph, compile_on=False))
    assert "default" not in compiled._failed
