"""Noise levels, perturbations and the Riemann-Gaussian force target (docs/method.md §2.2–2.5)."""

from __future__ import annotations

import math

import torch

from emgp_md.models.heads import sum_pool


def noise_levels(sigma_begin_A: float = 10.0, sigma_end_A: float = 0.01, n_levels: int = 50) -> torch.Tensor:
    """Geometric noise levels (n_levels,) in Å from ``sigma_begin_A`` (index 0) to ``sigma_end_A``."""
    return torch.exp(torch.linspace(math.log(sigma_begin_A), math.log(sigma_end_A), n_levels, dtype=torch.float64))


def center(pos: torch.Tensor, batch: torch.Tensor, n_graphs: int) -> torch.Tensor:
    """Subtract each molecule's centroid. ``pos``: (n_atoms, 3) Å."""
    counts = torch.bincount(batch, minlength=n_graphs).to(pos.dtype).unsqueeze(1)
    return pos - (sum_pool(pos, batch, n_graphs) / counts).index_select(0, batch)


def riemann_score(pos_noisy: torch.Tensor, pos_clean: torch.Tensor, batch: torch.Tensor, n_graphs: int) -> torch.Tensor:
    """Riemann-Gaussian score (Jiao et al. 2023, the EFP force target): the α-normalised direction
    ``s = -(Ỹ A - Y B)/α`` per atom (docs/method.md §2.3 for the distribution, §2.5 for the score).

    ``A = ỸᵀỸ``, ``B = YᵀỸ`` (3×3 per molecule, centred coordinates), ``α = (‖A‖_F + ‖B‖_F)/2``.
    Equals ``σ² ∇_X̃ log Rie_σ(X̃|X) / α``. Returns (n_atoms, 3); α is treated as a constant.
    """
    y_t = center(pos_noisy, batch, n_graphs)
    y = center(pos_clean, batch, n_graphs)
    a = sum_pool(y_t.unsqueeze(2) * y_t.unsqueeze(1), batch, n_graphs)  # (n_graphs, 3, 3)
    b = sum_pool(y.unsqueeze(2) * y_t.unsqueeze(1), batch, n_graphs)
    alpha = ((a.flatten(1).norm(dim=1) + b.flatten(1).norm(dim=1)) / 2).detach()
    s = torch.einsum("nj,njk->nk", y_t, a.index_select(0, batch)) - torch.einsum(
        "nj,njk->nk", y, b.index_select(0, batch)
    )
    return -s / alpha.index_select(0, batch).unsqueeze(1)


def perturb_gaussian(
    pos: torch.Tensor, sigma_per_atom: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """``X̃ = X + σ ξ`` (the released sampler: one Langevin step from X has zero drift)."""
    noise = torch.randn(pos.shape, generator=generator, dtype=pos.dtype, device=pos.device)
    return pos + sigma_per_atom.unsqueeze(1) * noise
