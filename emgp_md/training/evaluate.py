"""Energy and force errors of a model on labelled frames, in the frames' unit and in kcal/mol and meV."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from emgp_md.data.frames import Dataset, Frames
from emgp_md.data.graph import repeat_topology
from emgp_md.data.topology import Topology
from emgp_md.models.energy_model import EnergyModel
from emgp_md.models.forces import energy_and_forces
from emgp_md.units import KCAL_PER_MOL, energy_unit_to_eV


def predict(
    model: EnergyModel,
    topology: Topology,
    coords: np.ndarray,
    batch_size: int = 64,
    dtype: torch.dtype = torch.float32,
) -> tuple[np.ndarray, np.ndarray]:
    """Energies (n_frames,) float64 with the reference energy, and forces (n_frames, n_atoms, 3), model units."""
    energies, forces = [], []
    device = next(model.parameters()).device
    for start in range(0, len(coords), batch_size):
        pos = torch.as_tensor(coords[start : start + batch_size], dtype=dtype)
        graph = repeat_topology(topology, pos).to(device)
        e, f = energy_and_forces(model, graph, training=False)
        energies.append(model.total_energy(e, graph).cpu().numpy())
        forces.append(f.detach().to("cpu", torch.float64).numpy().reshape(pos.shape))
    return np.concatenate(energies), np.concatenate(forces)


def _mae_from_errors(e_err: np.ndarray, f_err: np.ndarray, n_atoms: np.ndarray, unit: str) -> dict[str, Any]:
    """MAEs from absolute errors: energies (n_frames,), force components (any shape), in ``unit``."""
    to_ev = energy_unit_to_eV(unit)
    to_kcal = to_ev / energy_unit_to_eV(KCAL_PER_MOL)
    e_mae, f_mae = float(np.mean(e_err)), float(np.mean(f_err))
    return {
        "energy_mae_kcal_mol": e_mae * to_kcal,
        "force_mae_kcal_mol_A": f_mae * to_kcal,
        "energy_mae_meV": e_mae * to_ev * 1e3,
        "force_mae_meV_A": f_mae * to_ev * 1e3,
        "energy_mae_per_atom_meV": float(np.mean(e_err / n_atoms)) * to_ev * 1e3,
        "energy_mae": e_mae,
        "force_mae": f_mae,
        "energy_unit": unit,
        "n_frames": len(e_err),
    }


def mae_metrics(pred_e: np.ndarray, pred_f: np.ndarray, frames: Frames) -> dict[str, Any]:
    """Energy MAE per molecule and force MAE per Cartesian component: in the frames' unit (``energy_mae``,
    ``force_mae``), kcal/mol(/Å) and meV(/Å); plus the energy MAE per atom in meV."""
    n_atoms = np.full(len(frames), frames.z.shape[0])
    return _mae_from_errors(
        np.abs(pred_e - frames.energies), np.abs(pred_f - frames.forces), n_atoms, frames.energy_unit
    )


def evaluate(
    model: EnergyModel, topology: Topology, frames: Frames, batch_size: int = 64, dtype: torch.dtype = torch.float32
) -> dict[str, Any]:
    """MAEs of ``model`` on one molecule's ``frames`` (see :func:`mae_metrics`)."""
    if not np.array_equal(topology.z, frames.z):
        raise ValueError(f"frames of atoms {frames.z.tolist()} do not match the topology's {topology.z.tolist()}")
    model = model.to(dtype)
    pred_e, pred_f = predict(model, topology, frames.coords, batch_size, dtype)
    return mae_metrics(pred_e, pred_f, frames)


def predict_dataset(
    model: EnergyModel,
    topologies: list[Topology],
    dataset: Dataset,
    batch_size: int = 64,
    dtype: torch.dtype = torch.float32,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per molecule of ``dataset``: predicted energies (n_frames,) and forces (n_frames, n_atoms, 3), model units."""
    model = model.to(dtype)
    return [
        predict(model, topo, g.coords, batch_size, dtype) for topo, g in zip(topologies, dataset.groups, strict=True)
    ]


def dataset_metrics(predictions: list[tuple[np.ndarray, np.ndarray]], dataset: Dataset) -> dict[str, Any]:
    """Overall MAEs (every frame, every force component) and one row per molecule (``molecules``)."""
    rows, e_err, f_err, n_atoms = [], [], [], []
    for (pe, pf), g in zip(predictions, dataset.groups, strict=True):
        rows.append({"molecule": g.name, "n_atoms": int(g.z.shape[0]), **mae_metrics(pe, pf, g)})
        e_err.append(np.abs(pe - g.energies))
        f_err.append(np.abs(pf - g.forces).reshape(-1))
        n_atoms.append(np.full(len(g), g.z.shape[0]))
    overall = _mae_from_errors(
        np.concatenate(e_err), np.concatenate(f_err), np.concatenate(n_atoms), dataset.energy_unit
    )
    return {**overall, "n_molecules": dataset.n_molecules, "molecules": rows}


def evaluate_dataset(
    model: EnergyModel,
    topologies: list[Topology],
    dataset: Dataset,
    batch_size: int = 64,
    dtype: torch.dtype = torch.float32,
) -> dict[str, Any]:
    """MAEs of ``model`` on every molecule of ``dataset`` and overall (see :func:`dataset_metrics`)."""
    return dataset_metrics(predict_dataset(model, topologies, dataset, batch_size, dtype), dataset)
