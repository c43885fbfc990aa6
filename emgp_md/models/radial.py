"""Radial building blocks shared by the distance-based backbones (SchNet, TorchMD-Net ET).

- :func:`safe_norm` – edge lengths whose gradient stays finite when two atoms coincide.
- :func:`cosine_cutoff` – ``½(cos(π d / r_c) + 1)`` for ``d < r_c`` and exactly 0 beyond; value and
  first derivative are continuous at ``r_c``.
- :class:`GaussianRBF` – SchNet's Gaussian smearing on ``[0, r_c]``.
- :class:`ExpNormalRBF` – PhysNet/TorchMD-Net exponential-normal basis, times the cosine cutoff.
- :class:`ShiftedSoftplus` – ``softplus(x) − ln 2`` (zero at the origin).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def safe_norm(vec: torch.Tensor) -> torch.Tensor:
    """Euclidean norm over the last axis with a zero (not NaN) gradient at the zero vector.

    Parameters
    ----------
    vec : (..., 3) float, Å

    Returns
    -------
    (...) float, Å
    """
    sq = (vec * vec).sum(dim=-1)
    positive = sq > 0
    return torch.where(positive, torch.sqrt(torch.where(positive, sq, torch.ones_like(sq))), torch.zeros_like(sq))


def cosine_cutoff(dist_A: torch.Tensor, cutoff_A: float) -> torch.Tensor:
    """Smooth cutoff ``½(cos(π d/r_c) + 1)`` for ``d < r_c``, 0 for ``d ≥ r_c``.

    The distance is clamped at ``r_c`` before the cosine, so the function is flat (value 0,
    gradient 0) beyond the cutoff instead of growing back as the bare cosine does for
    ``r_c < d < 2 r_c``.

    Parameters
    ----------
    dist_A : (n_edges,) float, Å
    cutoff_A : float, Å

    Returns
    -------
    (n_edges,) float in [0, 1]
    """
    return 0.5 * (torch.cos(dist_A.clamp(max=cutoff_A) * (math.pi / cutoff_A)) + 1.0)


class GaussianRBF(nn.Module):
    """``exp(−½ (d − μ_k)² / Δ²)``, centres ``μ_k`` evenly spaced on ``[0, r_c]``, ``Δ = r_c/(n_rbf−1)``.

    Parameters
    ----------
    cutoff_A : float
        Last centre, Å.
    n_rbf : int
        Number of Gaussians (at least 2).
    """

    def __init__(self, cutoff_A: float, n_rbf: int) -> None:
        super().__init__()
        if n_rbf < 2:
            raise ValueError(f"GaussianRBF needs n_rbf >= 2, got {n_rbf}")
        offset = torch.linspace(0.0, cutoff_A, n_rbf)
        self.coeff = -0.5 / float(offset[1] - offset[0]) ** 2
        self.register_buffer("offset", offset, persistent=False)

    def forward(self, dist_A: torch.Tensor) -> torch.Tensor:
        """``dist_A``: (n_edges,) Å → (n_edges, n_rbf)."""
        return torch.exp(self.coeff * (dist_A.unsqueeze(-1) - self.offset) ** 2)


class ExpNormalRBF(nn.Module):
    """``C(d) · exp(−β_k (exp(−α d) − μ_k)²)`` with ``α = 5/r_c`` (Unke & Meuwly 2019, TorchMD-Net).

    Means start evenly spaced on ``[exp(−r_c), 1]`` and ``β_k = (2(1 − exp(−r_c))/n_rbf)⁻²``, as in
    TorchMD-Net (``cutoff_lower = 0``); both are trainable parameters.

    Parameters
    ----------
    cutoff_A : float
        Cutoff radius ``r_c``, Å.
    n_rbf : int
        Number of basis functions.
    """

    def __init__(self, cutoff_A: float, n_rbf: int) -> None:
        super().__init__()
        if n_rbf < 1:
            raise ValueError(f"ExpNormalRBF needs n_rbf >= 1, got {n_rbf}")
        self.cutoff_A = float(cutoff_A)
        self.alpha = 5.0 / self.cutoff_A
        start = math.exp(-self.cutoff_A)
        self.means = nn.Parameter(torch.linspace(start, 1.0, n_rbf))
        self.betas = nn.Parameter(torch.full((n_rbf,), (2.0 / n_rbf * (1.0 - start)) ** -2))

    def forward(self, dist_A: torch.Tensor) -> torch.Tensor:
        """``dist_A``: (n_edges,) Å → (n_edges, n_rbf), zero beyond the cutoff."""
        d = dist_A.unsqueeze(-1)
        basis = torch.exp(-self.betas * (torch.exp(-self.alpha * d) - self.means) ** 2)
        return cosine_cutoff(d, self.cutoff_A) * basis


class ShiftedSoftplus(nn.Module):
    """``softplus(x) − ln 2``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.softplus(x) - math.log(2.0)
