"""The paper's Figure 4 analogue: landscapes of differently pretrained models around the same conformers.

Two reference structures: a GEOM-like conformer (RDKit ETKDG + MMFF of a held-out GEOM-QM9 SMILES,
the kind of geometry pretraining saw) and an rMD17 molecule relaxed with its shipped fine-tuned model.
Every model is evaluated on the *same* two random directions (rigid motions removed) around each
structure; the summary gives, per model, where the grid minimum lies (distance from X0, Å RMS per
atom), the curvature at X0 and the number of local minima. The "Direct" and "Distance" ablations have
no energy (Direct regresses a coordinate update, Distance an invariant pair score) and so no landscape.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from ase import Atoms

from emgp_md.config import ModelConfig
from emgp_md.landscape.directions import random_directions
from emgp_md.landscape.evaluate import as_evaluator
from emgp_md.landscape.grid import Landscape2D, energy_grid

log = logging.getLogger(__name__)

NO_ENERGY = {
    "Direct": "regresses the last layer's coordinate update: no energy function",
    "Distance": "regresses invariant pair-distance scores: no energy function",
}


def geom_like_conformer(smiles: str, seed: int = 2021) -> Atoms:
    """Lowest-MMFF-energy ETKDG conformer of ``smiles`` (explicit hydrogens), as ASE Atoms."""
    from emgp_md.data.molecule_conformers import generate_molecule

    confs = generate_molecule(0, smiles, seed=seed)
    if confs.failure:
        raise ValueError(f"no conformer for {smiles!r}: {confs.failure} ({confs.detail})")
    best = int(np.argmin(confs.energy_eV))
    return Atoms(numbers=confs.z, positions=np.asarray(confs.pos[best], dtype=np.float64))


def relaxed_structure(name: str, fmax_eV_per_A: float = 0.005) -> Atoms:
    """A shipped molecule relaxed with its own shipped model (BFGS)."""
    from emgp_md.calculator import EMGPCalculator
    from emgp_md.pretrained import load_structure
    from emgp_md.relaxation import relax

    atoms = load_structure(name)
    atoms.calc = EMGPCalculator(name, dtype="float64")
    res = relax(atoms, fmax_eV_per_A, steps=2000)
    if not res.converged:
        log.warning("relaxation of %s stopped at fmax %.4f eV/Å", name, res.fmax_eV_per_A)
    out = res.atoms.copy()
    out.calc = None
    return out


def random_init_checkpoint(path: Path, model_cfg: ModelConfig, seed: int = 0) -> Path:
    """Save a randomly initialised pretraining-style model (the "random initialisation" panel)."""
    from emgp_md.models import build_model
    from emgp_md.models.checkpoint import make_metadata, save_checkpoint

    torch.manual_seed(seed)
    model = build_model(model_cfg)
    meta = make_metadata(
        model_cfg,
        list(range(1, 100)),
        "arbitrary",
        kind="pretrained",
        name="random-init",
        provenance={"seed": seed, "note": "untrained, PyTorch default initialisation"},
    )
    save_checkpoint(path, model, meta)
    return path


def landscapes_for(atoms: Atoms, models: dict[str, str], extent_A: float, n: int, seed: int) -> dict[str, Landscape2D]:
    """Grids of every model on one shared pair of random directions around ``atoms``."""
    from tqdm.auto import tqdm

    d1, d2 = random_directions(atoms.get_positions(), seed=seed)
    out = {}
    for label, path in tqdm(models.items(), desc="models", unit="model"):
        ev = as_evaluator(path, atoms, label, "float64")
        out[label] = energy_grid(ev, atoms, d1, d2, extent_A, n, "random", label)
    return out


def summary_table(structures: dict[str, dict[str, Landscape2D]]) -> str:
    """Markdown: per structure and model, minimum position, drop, curvature, local minima."""
    header = (
        "| structure | model | grid minimum from X0 (Å) | on grid edge | E(min) − E(X0) | "
        "curvature at X0 (a, b) | local minima |"
    )
    lines = [header, "|---|---|---|---|---|---|---|"]
    for sname, lands in structures.items():
        for label, land in lands.items():
            s = land.summary()
            unit = "a.u." if s.energy_unit == "arbitrary" else s.energy_unit
            lines.append(
                f"| {sname} | {label} | {s.min_distance_A:.3f} | {'yes' if s.min_on_edge else 'no'} | "
                f"{s.energy_drop:.3g} {unit} | {s.curvature_a:.3g}, {s.curvature_b:.3g} | {s.n_local_minima} |"
            )
    for label, why in NO_ENERGY.items():
        lines.append(f"| all | {label} | – | – | – | – | – ({why}) |")
    return "\n".join(lines)
