"""Figure 4 building blocks: GEOM-like conformer, random-init checkpoint, shared-direction grids, summary."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from emgp_md.config import ModelConfig
from emgp_md.models.checkpoint import load_checkpoint
from emgp_md.reproduce.figure4 import (
    NO_ENERGY,
    geom_like_conformer,
    landscapes_for,
    random_init_checkpoint,
    summary_table,
)


def test_figure4_pipeline_on_small_models(tmp_path: Path) -> None:
    atoms = geom_like_conformer("CCO")
    assert atoms.get_chemical_formula() == "C2H6O"
    d = atoms.get_all_distances()[np.triu_indices(len(atoms), 1)]
    assert d.min() > 0.9  # a real 3D conformer, not a collapsed embedding
    cfg = ModelConfig(hidden_nf=8, n_layers=2, head="pooled", noise_levels=50)
    a = random_init_checkpoint(tmp_path / "a.pt", cfg, seed=0)
    b = random_init_checkpoint(tmp_path / "b.pt", cfg, seed=1)
    _, meta = load_checkpoint(a)
    assert meta["units"]["energy"] == "arbitrary"
    lands = landscapes_for(atoms, {"a": str(a), "b": str(b)}, extent_A=0.2, n=5, seed=3)
    assert set(lands) == {"a", "b"}
    np.testing.assert_array_equal(lands["a"].directions, lands["b"].directions)  # same directions for all
    assert abs(lands["a"].energies[2, 2]) < 1e-12  # energies relative to X0 at the centre
    assert not np.allclose(lands["a"].energies, lands["b"].energies)
    table = summary_table({"geom_like": lands})
    assert table.count("| geom_like |") == 2
    assert all(label in table for label in NO_ENERGY)
