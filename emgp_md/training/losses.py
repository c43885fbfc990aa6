"""Energy + force losses on normalised quantities (docs/method.md §4.1)."""

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
    global_counts: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Weighted loss ``w_E·L(Ê/s, E/s) + w_F·L(F̂/s, F/s)``.

    Parameters
    ----------
    pred_e, true_e : (n_graphs,) energies without the constant shift, model unit
    pred_f, true_f : (n_atoms, 3) forces, model unit per Å
    scale : float
        Energy normalisation (std of training energies).
    kind : ``"l1"`` (paper) or ``"mse"``.
    global_counts : (n_energies, n_force_components), optional
        Divide summed errors by these global counts instead of averaging locally, so that
        data-parallel shards add up to the single-process loss of the global batch.
    """
    if kind == "l1":
        fn = F.l1_loss
    elif kind == "mse":
        fn = F.mse_loss
    else:
        raise ValueError(f"unknown loss {kind!r}; use 'l1' or 'mse'")
    if global_counts is None:
        return energy_weight * fn(pred_e / scale, true_e / scale) + force_weight * fn(pred_f / scale, true_f / scale)
    n_e, n_f = global_counts
    e_term = fn(pred_e / scale, true_e / scale, reduction="sum") / n_e
    f_term = fn(pred_f / scale, true_f / scale, reduction="sum") / n_f
    return energy_weight * e_term + force_weight * f_term
