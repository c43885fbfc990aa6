"""Diagnostics of a pretrained model per noise level: INP accuracy and force/target cosine.

Works for any checkpoint with the pretraining head (ours, or the authors' imported one).
For each level σ_l and each conformer, the conformer is perturbed at σ_l (seeded), and we record
whether the INP head predicts l exactly and within ±2 levels, and the cosine between the model's
forces −∇Ê and the Riemann target s/σ (and the Gaussian target −ξ for comparison).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from emgp_md.data.graph import collate
from emgp_md.data.topology import Topology
from emgp_md.models.energy_model import EnergyModel
from emgp_md.models.forces import energy_forces_pooled
from emgp_md.models.heads import PooledEnergyHead
from emgp_md.pretrain.noise import riemann_score
from emgp_md.pretrain.objectives import draw_noise, perturb


@dataclass
class LevelDiagnostics:
    """Per-level results (each list has one entry per noise level, index 0 = largest σ)."""

    sigma_A: list[float]
    inp_accuracy: list[float]
    inp_within_2: list[float]
    cosine_riemann: list[float]
    cosine_gaussian: list[float]
    n_conformers: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _cosine_per_molecule(a: torch.Tensor, b: torch.Tensor, batch: torch.Tensor, n: int) -> torch.Tensor:
    from emgp_md.models.heads import sum_pool

    dot = sum_pool((a * b).sum(1), batch, n)
    na = sum_pool((a * a).sum(1), batch, n).sqrt()
    nb = sum_pool((b * b).sum(1), batch, n).sqrt()
    return dot / (na * nb).clamp(min=1e-12)


def level_diagnostics(
    model: EnergyModel,
    conformers: Sequence[tuple[Topology, np.ndarray]],
    sigmas_A: torch.Tensor,
    seed: int = 0,
    batch_size: int = 32,
    dtype: torch.dtype = torch.float32,
) -> LevelDiagnostics:
    """Evaluate INP accuracy and force/target cosines at every level on ``conformers``."""
    if not isinstance(model.head, PooledEnergyHead):
        raise TypeError("pretraining diagnostics need a model with the pretraining ('pooled') energy head")
    model = model.to(dtype).eval()
    n_levels = len(sigmas_A)
    acc, near, cos_r, cos_g = (np.zeros(n_levels) for _ in range(4))
    for start in range(0, len(conformers), batch_size):
        chunk = conformers[start : start + batch_size]
        graph = collate([c[0] for c in chunk], [c[1] for c in chunk], dtype)
        with torch.no_grad():
            pooled_clean = model.head.pool(model.node_features(graph), graph.batch, graph.n_graphs)
        ids = list(range(start, start + len(chunk)))
        draw = draw_noise(ids, [c[0].n_atoms for c in chunk], 1, 1, seed, 0, dtype)
        for level in range(n_levels):
            sigma = sigmas_A[level].to(dtype)
            noisy_pos = perturb(graph, sigma.expand(graph.pos.shape[0]), draw.noise)
            _, forces, pooled = energy_forces_pooled(model, graph.with_pos(noisy_pos))
            target = riemann_score(noisy_pos, graph.pos, graph.batch, graph.n_graphs) / sigma
            cos_r[level] += float(_cosine_per_molecule(forces, target, graph.batch, graph.n_graphs).sum())
            cos_g[level] += float(_cosine_per_molecule(forces, -draw.noise[0], graph.batch, graph.n_graphs).sum())
            if model.noise_head is not None:
                with torch.no_grad():
                    pred = model.noise_head(pooled_clean, pooled.detach()).argmax(dim=1)
                acc[level] += float((pred == level).sum())
                near[level] += float(((pred - level).abs() <= 2).sum())
    n = len(conformers)
    nan = np.full(n_levels, np.nan)
    return LevelDiagnostics(
        sigma_A=[float(s) for s in sigmas_A],
        inp_accuracy=list(acc / n) if model.noise_head is not None else list(nan),
        inp_within_2=list(near / n) if model.noise_head is not None else list(nan),
        cosine_riemann=list(cos_r / n),
        cosine_gaussian=list(cos_g / n),
        n_conformers=n,
    )
