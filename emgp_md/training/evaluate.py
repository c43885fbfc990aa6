"""Energy and force errors of a model on labelled frames."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from emgp_md.data.graph import repeat_topology
from emgp_md.data.rmd17 import Frames
from emgp_md.data.topology import Topology
from emgp_md.models.energy_model import EnergyModel
from emgp_md.models.forces import energy_and_forces
from emgp_md.units import KCAL_PER_MOL_TO_MEV


def predict(
    model: EnergyModel,
    topology: Topology,
    coords: np.ndarray,
    batch_size: int = 64,
    dtype: torch.dtype = torch.float32,
) -> tuple[np.ndarray, np.ndarray]:
    """Energies (n_frames,) float64 with the shift, and forces (n_frames, n_atoms, 3), model units."""
    energies, forces = [], []
    device = next(model.parameters()).device
    for start in range(0, len(coords), batch_size):
        pos = torch.as_tensor(coords[start : start + batch_size], dtype=dtype)
        graph = repeat_topology(topology, pos).to(device)
        e, f = energy_and_forces(model, graph, training=False)
        energies.append(model.total_energy(e).cpu().numpy())
        forces.append(f.detach().to("cpu", torch.float64).numpy().reshape(pos.shape))
    return np.concatenate(energies), np.concatenate(forces)


def mae_metrics(pred_e: np.ndarray, pred_f: np.ndarray, frames: Frames) -> dict[str, float]:
    """Energy MAE per molecule and force MAE per Cartesian component, kcal/mol(/Å) and meV(/Å)."""
    e_mae = float(np.mean(np.abs(pred_e - frames.energies)))
    f_mae = float(np.mean(np.abs(pred_f - frames.forces)))
    return {
        "energy_mae_kcal_mol": e_mae,
        "force_mae_kcal_mol_A": f_mae,
        "energy_mae_meV": e_mae * KCAL_PER_MOL_TO_MEV,
        "force_mae_meV_A": f_mae * KCAL_PER_MOL_TO_MEV,
        "n_frames": len(frames),
    }


def evaluate(
    model: EnergyModel, topology: Topology, frames: Frames, batch_size: int = 64, dtype: torch.dtype = torch.float32
) -> dict[str, Any]:
    """MAEs of ``model`` on ``frames`` (see :func:`mae_metrics`)."""
    if not np.array_equal(topology.z, frames.z):
        raise ValueError(f"frames of atoms {frames.z.tolist()} do not match the topology's {topology.z.tolist()}")
    model = model.to(dtype)
    pred_e, pred_f = predict(model, topology, frames.coords, batch_size, dtype)
    return mae_metrics(pred_e, pred_f, frames)
