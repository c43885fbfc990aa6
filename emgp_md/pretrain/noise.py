"""Noise levels, perturbations and the Riemann-Gaussian force target (docs/method.md §2.2–2.5).

3D-EMGP: Jiao et al., "Energy-Motivated Equivariant Pretraining for 3D Molecular Graphs", AAAI
2023. Its equations are cited by name (the Riemann-Gaussian distribution ``Rie_σ(X̃|X)``, its
score, the EFP loss), not by number: the numbers were not checked against the paper's text.
"""

from __future__ import annotations

import math

import torch

from emgp_md.models.heads import sum_pool


def noise_levels(sigma_begin_A: float = 10.0, sigma_end_A: float = 0.01, n_levels: int = 50) -> torch.Tensor:
    """Geometric noise levels (n_levels,) in Å from ``sigma_begin_A`` (index 0) to ``sigma_end_A``.

    The 3D-EMGP noise scales ``σ_1 > … > σ_L`` (docs/method.md §2.2: 10 Å to 0.01 Å, L = 50).
    """
    return torch.exp(torch.linspace(math.log(sigma_begin_A), math.log(sigma_end_A), n_levels, dtype=torch.float64))


def center(pos: torch.Tensor, batch: torch.Tensor, n_graphs: int) -> torch.Tensor:
    """Subtract each molecule's centroid. ``pos``: (n_atoms, 3) Å."""
    counts = torch.bincount(batch, minlength=n_graphs).to(pos.dtype).unsqueeze(1)
    return pos - (sum_pool(pos, batch, n_graphs) / counts).index_select(0, batch)


def riemann_score(pos_noisy: torch.Tensor, pos_clean: torch.Tensor, batch: torch.Tensor, n_graphs: int) -> torch.Tensor:
    """**Score of the Riemann-Gaussian distribution**, α-normalised: the approximate EFP target.

    3D-EMGP (Jiao et al. 2023), the Riemann-Gaussian distribution
    ``Rie_σ(X̃|X) ∝ exp(−‖ỸỸᵀ − YYᵀ‖²_F / (4σ²))`` (docs/method.md §2.3) and its score
    ``∇_X̃ log Rie_σ(X̃|X) = −(ỸỸᵀ − YYᵀ) Ỹ / σ²`` (docs/method.md §2.5). This returns the direction
    ``s = −(Ỹ A − Y B)/α = σ² ∇_X̃ log Rie_σ(X̃|X) / α`` per atom, with ``A = ỸᵀỸ``, ``B = YᵀỸ``
    (3×3 per molecule, centred coordinates) and the paper's stabiliser ``α = (‖A‖_F + ‖B‖_F)/2``;
    the EFP target is ``s/σ``. Returns (n_atoms, 3) Å; α is treated as a constant (no gradient).
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
    """``X̃ = X + σ ξ``: the Gaussian perturbation (the Table-3 "Gaussian" ablation's sampler).

    It is also what the released Riemann-Gaussian sampler draws: one Langevin step from X has zero
    drift (docs/method.md §2.3).
    """
    noise = torch.randn(pos.shape, generator=generator, dtype=pos.dtype, device=pos.device)
    return pos + sigma_per_atom.unsqueeze(1) * noise
