"""Model energy against a reference (e.g. DFT) over labelled frames, on their principal-component plane.

The frames (e.g. an rMD17 split) are aligned and projected on their top two principal components
(:func:`~emgp_md.landscape.directions.pca_directions`); the model is evaluated on every frame.
The result shows *where* in configuration space a fine-tuned model is wrong.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from emgp_md.data.rmd17 import ENERGY_UNIT, Frames
from emgp_md.landscape.directions import pca_directions
from emgp_md.landscape.evaluate import as_evaluator
from emgp_md.units import energy_unit_to_eV


@dataclass
class PCEnergyMap:
    """Model and reference energies of frames placed on their principal-component plane.

    Attributes
    ----------
    coords_A : (n_frames, 2) float64, Å
        PC coefficients relative to the reference structure (1 Å = 1 Å RMS per atom).
    model_eV : (n_frames,) float64, eV
        Model energies (absolute).
    reference_eV : (n_frames,) float64, eV
        Reference energies (absolute).
    explained_variance_ratio : (2,) float64
        Share of the positional variance on each PC.
    label : str
        The energy model.
    """

    coords_A: np.ndarray
    model_eV: np.ndarray
    reference_eV: np.ndarray
    explained_variance_ratio: np.ndarray
    label: str = "model"

    @property
    def error_eV(self) -> np.ndarray:
        """(n_frames,) model minus reference, eV."""
        return self.model_eV - self.reference_eV

    def summary(self) -> dict[str, Any]:
        """MAE, RMSE and mean (signed) error in meV, over all frames."""
        err_meV = self.error_eV * 1e3
        return {
            "label": self.label,
            "n_frames": len(err_meV),
            "energy_mae_meV": float(np.abs(err_meV).mean()),
            "energy_rmse_meV": float(np.sqrt((err_meV**2).mean())),
            "energy_mean_error_meV": float(err_meV.mean()),
            "explained_variance_ratio": [float(v) for v in self.explained_variance_ratio],
        }

    def to_csv(self, path: str | Path) -> None:
        """Columns ``pc1_A, pc2_A, model_eV, reference_eV, error_eV``."""
        with Path(path).open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["pc1_A", "pc2_A", "model_eV", "reference_eV", "error_eV"])
            for (a, b), m, r in zip(self.coords_A, self.model_eV, self.reference_eV):
                writer.writerow([f"{a:.6g}", f"{b:.6g}", f"{m:.10g}", f"{r:.10g}", f"{m - r:.6g}"])


def pc_energy_map(
    source: Any, frames: Frames, reference: np.ndarray | None = None, label: str | None = None
) -> PCEnergyMap:
    """Evaluate a model on labelled frames and place them on their PC plane.

    Parameters
    ----------
    source : evaluator, EMGPCalculator, EnergyModel, checkpoint path, ...
        See :func:`emgp_md.landscape.evaluate.as_evaluator`.
    frames : Frames
        rMD17 frames (coordinates Å, energies kcal/mol, converted to eV here).
    reference : (n_atoms, 3) float, Å, optional
        Origin of the PC coordinates; default the first frame.
    label : str, optional

    Returns
    -------
    PCEnergyMap
    """
    pca = pca_directions(frames.coords, reference)
    atoms = Atoms(numbers=frames.z, positions=pca.reference)
    evaluator = as_evaluator(source, atoms, label)
    model_eV = evaluator(frames.coords)
    reference_eV = frames.energies * energy_unit_to_eV(ENERGY_UNIT)
    return PCEnergyMap(pca.coords_A, model_eV, reference_eV, pca.explained_variance_ratio, evaluator.label)
