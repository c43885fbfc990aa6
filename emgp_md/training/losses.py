"""Energy + force losses on normalised quantities (method doc 4.1)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def energy_force_loss(
    pred_e: torch.Tensor,
    pred_f: torch.Tensor,
    true_e: torch.Tensor,
    true_f: torch.Tensor,
    scale: float,
    energy_weight: float,
    force_weight: float,
    kind: str = "l1",
) -> torch.Tensor:
    """Weighted loss ``w_E·L(Ê/s, E/s) + w_F·L(F̂/s, F/s)``.

    Parameters
    ----------
    pred_e, true_e : (n_graphs,) energies without the constant shift, model unit
    pred_f, true_f : (n_atoms, 3) forces, model unit per Å
    scale : float
        Energy normalisation (std of training energies).
    kind : ``"l1"`` (paper) or ``"mse"``.
    """
    if kind == "l1":
        fn = F.l1_loss
    elif kind == "mse":
        fn = F.mse_loss
    else:
        raise ValueError(f"unknown loss {kind!r}; use 'l1' or 'mse'")
    return energy_weight * fn(pred_e / scale, true_e / scale) + force_weight * fn(pred_f / scale, true_f / scale)
