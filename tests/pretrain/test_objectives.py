"""Pretraining objectives: every variant gives finite losses whose gradients reach the backbone;
perturbation and noise are seeded; the authors' checkpoint beats a random initialisation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from ase.build import molecule

from emgp_md.config import ModelConfig
from emgp_md.data.graph import collate
from emgp_md.data.topology import topology_from_positions
from emgp_md.models import build_model
from emgp_md.pretrain.noise import noise_levels, riemann_score
from emgp_md.pretrain.objectives import VARIANTS, draw_noise, perturb, pretrain_losses

NAMES = ("CH3CH2OH", "C6H6", "CH3COOH", "NH3")


def _batch(dtype: torch.dtype = torch.float64):
    mols = [molecule(n) for n in NAMES]
    topos = [topology_from_positions(m.numbers, m.positions) for m in mols]
    return collate(topos, [m.positions for m in mols], dtype), topos


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("weights", [(1.0, 0.2), (1.0, 0.0), (0.0, 0.2)])
def test_losses_finite_and_gradients_flow(variant: str, weights: tuple[float, float]) -> None:
    torch.manual_seed(0)
    efp_w, inp_w = weights
    cfg = ModelConfig(hidden_nf=16, n_layers=2, head="pooled", noise_levels=50, distance_head=variant == "distance")
    model = build_model(cfg).double()
    graph, topos = _batch()
    draw = draw_noise(range(4), [t.n_atoms for t in topos], 50, 1, seed=0, epoch=0, dtype=torch.float64)
    loss, stats = pretrain_losses(model, graph, draw, noise_levels(), variant, efp_w, inp_w, global_batch=4)
    assert torch.isfinite(loss) and float(loss.detach()) > 0
    loss.backward()
    grad = model.backbone.embedding_in.weight.grad
    assert grad is not None and torch.isfinite(grad).all() and float(grad.abs().sum()) > 0
    assert stats["n"] == 4 and (stats["efp"] > 0) == (efp_w > 0) and (stats["inp"] > 0) == (inp_w > 0)


def test_noise_is_seeded_per_sample() -> None:
    a = draw_noise([3, 7], [5, 2], 50, 2, seed=1, epoch=4)
    b = draw_noise([7], [2], 50, 2, seed=1, epoch=4)
    assert int(a.levels[1]) == int(b.levels[0])
    assert torch.equal(a.noise[:, 5:], b.noise)
    c = draw_noise([7], [2], 50, 2, seed=1, epoch=5)
    assert not torch.equal(b.noise, c.noise)


def test_one_step_is_isotropic_gaussian_and_multi_step_drifts() -> None:
    graph, _ = _batch()
    noise = torch.randn(3, graph.pos.shape[0], 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    sigma = torch.full((graph.pos.shape[0],), 0.3, dtype=torch.float64)
    one = perturb(graph, sigma, noise[:1])
    torch.testing.assert_close(one, graph.pos + 0.3 * noise[0])
    three = perturb(graph, sigma, noise)
    assert not torch.allclose(three, one)
    assert torch.isfinite(three).all()


def test_riemann_score_vanishes_at_the_clean_conformer() -> None:
    graph, _ = _batch()
    s = riemann_score(graph.pos, graph.pos, graph.batch, graph.n_graphs)
    assert float(s.abs().max()) < 1e-12


def _mean_losses(model: torch.nn.Module, graph, topos, seed: int) -> tuple[float, float]:
    efp, inp = [], []
    for rep in range(4):
        draw = draw_noise(
            range(len(topos)), [t.n_atoms for t in topos], 50, 1, seed=seed, epoch=rep, dtype=graph.pos.dtype
        )
        _, st = pretrain_losses(model, graph, draw, noise_levels(), "riemann", 1.0, 0.2, len(topos))
        efp.append(st["efp"] / st["n"])
        inp.append(st["inp"] / st["n"])
    return float(np.mean(efp)), float(np.mean(inp))


def test_official_checkpoint_beats_random_initialisation(official_checkpoint: Path) -> None:
    from emgp_md.models.official import import_official

    official, _ = import_official(official_checkpoint)
    torch.manual_seed(0)
    random = build_model(ModelConfig(head="pooled", noise_levels=50))
    graph, topos = _batch(torch.float32)
    off_efp, off_inp = _mean_losses(official.float(), graph, topos, seed=3)
    rnd_efp, rnd_inp = _mean_losses(random.float(), graph, topos, seed=3)
    assert off_efp < 0.5 * rnd_efp, (off_efp, rnd_efp)
    assert off_inp < 0.5 * rnd_inp, (off_inp, rnd_inp)
