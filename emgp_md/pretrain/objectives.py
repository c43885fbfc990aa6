"""3D-EMGP pretraining losses (docs/method.md §2 and 3): EFP, INP and the Table-3 ablations.

3D-EMGP: Jiao et al., "Energy-Motivated Equivariant Pretraining for 3D Molecular Graphs", AAAI
2023; its losses are cited by name (``L_EFP``, ``L_INP``, ``L = λ1 L_EFP + λ2 L_INP``), not by
equation number (not checked against the paper's text).

Noise is drawn per molecule from a generator seeded by ``(seed, epoch, sample id)``, so a sample
gets the same level and perturbation whichever process or batch position it lands in; losses are
sums normalised by the *global* batch size. Together these make data-parallel training reproduce
single-process training.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from emgp_md.data.graph import GraphBatch
from emgp_md.models.energy_model import EnergyModel
from emgp_md.models.forces import energy_forces_pooled
from emgp_md.models.heads import sum_pool
from emgp_md.pretrain.noise import riemann_score

VARIANTS = ("riemann", "gaussian", "direct", "distance")


@dataclass
class NoiseDraw:
    """Levels (n_graphs,) long and standard-normal noise (steps, n_atoms, 3) for one batch."""

    levels: torch.Tensor
    noise: torch.Tensor


def draw_noise(
    sample_ids: Sequence[int],
    n_atoms: Sequence[int],
    n_levels: int,
    steps: int,
    seed: int,
    epoch: int,
    dtype: torch.dtype = torch.float32,
) -> NoiseDraw:
    """One noise level per molecule and Gaussian noise per atom, each from its own seeded generator."""
    levels, noise = [], []
    for sid, n in zip(sample_ids, n_atoms):
        state = np.random.SeedSequence([seed, epoch + 1, int(sid)]).generate_state(1)[0]
        gen = torch.Generator().manual_seed(int(state))
        levels.append(int(torch.randint(n_levels, (1,), generator=gen)))
        noise.append(torch.randn(steps, n, 3, generator=gen, dtype=torch.float64))
    return NoiseDraw(torch.tensor(levels, dtype=torch.long), torch.cat(noise, dim=1).to(dtype))


def perturb(graph: GraphBatch, sigma_atom: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Perturbed positions (n_atoms, 3) Å: the released sampler of the **Riemann-Gaussian**
    ``Rie_σ(X̃|X)`` (3D-EMGP; docs/method.md §2.3).

    ``X̃ᵗ = X̃ᵗ⁻¹ + η_t s(X̃ᵗ⁻¹, X) + √(2η_t) σ ξ_t`` with ``η_t = 2⁻ᵗ``, from ``X̃⁰ = X``. One step
    (the released setting) is ``X + σξ`` since ``s(X, X) = 0``.
    """
    x = graph.pos
    for t in range(noise.shape[0]):
        eta = 2.0 ** -(t + 1)
        drift = riemann_score(x, graph.pos, graph.batch, graph.n_graphs) if t > 0 else 0.0
        x = x + eta * drift + math.sqrt(2 * eta) * sigma_atom.unsqueeze(1) * noise[t]
    return x


def _pairwise_distance(pos: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
    diff = pos.index_select(0, edge_index[0]) - pos.index_select(0, edge_index[1])
    return diff.norm(dim=1)


def _node_loss(pred: torch.Tensor, target: torch.Tensor, graph: GraphBatch) -> torch.Tensor:
    """Σ over atoms and xyz of the squared error, per molecule (n_graphs,)."""
    return sum_pool(((pred - target) ** 2).sum(dim=1), graph.batch, graph.n_graphs)


def denoising_loss(
    model: EnergyModel, graph: GraphBatch, noisy: GraphBatch, sigma_atom: torch.Tensor, variant: str, need_pred: bool
) -> tuple[torch.Tensor | None, torch.Tensor]:
    """Per-molecule denoising loss (n_graphs,) (None when ``need_pred`` is False) and the pooled
    representation of the noisy conformer (n_graphs, hidden_nf) for INP.

    For the "riemann" variant this is the **EFP loss** (node-level equivariant force prediction,
    3D-EMGP, the final EFP objective ``σ² ‖F̂/σ − ∇_X̃ log Rie_σ(X̃|X)/α‖²_F``; docs/method.md §2.5):
    ``Σ_i ‖F̂_i − s_i/σ‖²`` with ``F̂ = −∂Ê/∂X̃`` and ``s`` the α-normalised Riemann-Gaussian score
    of :func:`emgp_md.pretrain.noise.riemann_score`, which is the same number. The other variants
    are the Table-3 ablations (docs/method.md §3): "gaussian" (target ``(X − X̃)/σ``), "direct"
    (EGNN coordinate output instead of forces), "distance" (per-edge distance denoising)."""
    sig = sigma_atom.unsqueeze(1)
    if variant in ("riemann", "gaussian"):
        if not need_pred:
            return None, model.energy_and_pooled(noisy)[1]
        _, forces, pooled = energy_forces_pooled(model, noisy, training=True)
        if variant == "riemann":
            target = riemann_score(noisy.pos, graph.pos, graph.batch, graph.n_graphs) / sig
        else:
            target = (graph.pos - noisy.pos) / sig
        return _node_loss(forces, target, graph), pooled
    if variant == "direct":
        h, pos_out = model.backbone.features_and_coords(noisy)
        pooled = model.head.pool(h, graph.batch, graph.n_graphs)
        if not need_pred:
            return None, pooled
        target = riemann_score(noisy.pos, graph.pos, graph.batch, graph.n_graphs) / sig
        return _node_loss((pos_out - noisy.pos) / sig, target, graph), pooled
    if variant == "distance":
        if model.distance_head is None:
            raise ValueError("the 'distance' variant needs model.distance_head: true")
        h = model.node_features(noisy)
        pooled = model.head.pool(h, graph.batch, graph.n_graphs)
        if not need_pred:
            return None, pooled
        d_noisy = _pairwise_distance(noisy.pos, noisy.edge_index)
        target = (_pairwise_distance(graph.pos, graph.edge_index) - d_noisy) / sigma_atom.index_select(
            0, graph.edge_index[0]
        )
        err = (model.distance_head(h, noisy.edge_index, d_noisy) - target) ** 2
        edge_graph = graph.batch.index_select(0, graph.edge_index[0])
        per_mol = sum_pool(err, edge_graph, graph.n_graphs)
        return per_mol / (graph.n_atoms_per_graph - 1).clamp(min=1).to(err.dtype), pooled
    raise ValueError(f"unknown pretraining variant {variant!r}; use one of {list(VARIANTS)}")


def pretrain_losses(
    model: EnergyModel,
    graph: GraphBatch,
    draw: NoiseDraw,
    sigmas_A: torch.Tensor,
    variant: str,
    efp_weight: float,
    inp_weight: float,
    global_batch: int,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Total loss ``(λ1 Σ L_EFP + λ2 Σ L_INP) / global_batch`` and summed statistics.

    ``L_INP`` is the **INP loss** (graph-level invariant noise-scale prediction, 3D-EMGP;
    docs/method.md §2.6): cross-entropy of the noise-level classifier on the pooled clean and
    noisy representations; ``L_EFP`` is :func:`denoising_loss` (docs/method.md §2.5). The weights
    are the paper's ``λ1 = 1``, ``λ2 = 0.2`` by default (docs/method.md §2.7).

    Returns
    -------
    loss : scalar tensor
    stats : sums over this batch's molecules: ``efp``, ``inp``, ``correct``, ``n``
    """
    sigma_atom = sigmas_A.to(graph.pos.dtype)[draw.levels].index_select(0, graph.batch)
    noisy = graph.with_pos(perturb(graph, sigma_atom, draw.noise))
    efp, pooled_noisy = denoising_loss(model, graph, noisy, sigma_atom, variant, need_pred=efp_weight > 0)
    loss = torch.zeros((), dtype=graph.pos.dtype)
    stats = {"n": float(graph.n_graphs), "efp": 0.0, "inp": 0.0, "correct": 0.0}
    if efp is not None:
        loss = loss + efp_weight * efp.sum()
        stats["efp"] = float(efp.detach().sum())
    if inp_weight > 0 and model.noise_head is not None:
        pooled_clean = model.head.pool(model.node_features(graph), graph.batch, graph.n_graphs)
        logits = model.noise_head(pooled_clean, pooled_noisy)
        ce = F.cross_entropy(logits, draw.levels, reduction="none")
        loss = loss + inp_weight * ce.sum()
        stats["inp"] = float(ce.detach().sum())
        stats["correct"] = float((logits.argmax(dim=1) == draw.levels).sum())
    return loss / global_batch, stats
