"""ASE calculator: units, exact forces, symmetry, frozen topology, input validation, shipped models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms, units
from ase.build import molecule
from conftest import make_small_model, topo_of

import emgp_md
from emgp_md import EMGPCalculator, load_checkpoint
from emgp_md.data.graph import collate
from emgp_md.errors import BondChangeError, StructureError
from emgp_md.models.forces import energy_and_forces
from emgp_md.testing import assert_e3_invariance, assert_forces_match_fd, calculator_fn

KCAL_MOL_IN_EV = units.kcal / units.mol


def test_properties_in_ev(small_checkpoint, ethanol):
    calc = EMGPCalculator(model=small_checkpoint, dtype="float64")
    ethanol.calc = calc
    e, f = ethanol.get_potential_energy(), ethanol.get_forces()
    assert set(EMGPCalculator.implemented_properties) >= {"energy", "free_energy", "forces"}
    assert calc.get_property("free_energy", ethanol) == e

    model, meta = load_checkpoint(small_checkpoint)
    assert meta["units"]["energy"] == "kcal/mol"
    model = model.double()
    graph = collate([topo_of(ethanol)], [ethanol.positions], torch.float64)
    e_ref, f_ref = energy_and_forces(model, graph)
    e_ref_kcal = float(model.total_energy(e_ref)[0])
    np.testing.assert_allclose(e, e_ref_kcal * KCAL_MOL_IN_EV, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(f, f_ref.numpy() * KCAL_MOL_IN_EV, rtol=1e-10, atol=1e-12)
    assert f.dtype == np.float64 and f.shape == (9, 3)


def test_float32_close_to_float64(small_checkpoint, ethanol):
    a64, a32 = ethanol.copy(), ethanol.copy()
    a64.calc = EMGPCalculator(model=small_checkpoint, dtype="float64")
    a32.calc = EMGPCalculator(model=small_checkpoint)
    assert a32.calc.dtype == torch.float32
    np.testing.assert_allclose(a32.get_potential_energy(), a64.get_potential_energy(), rtol=1e-5)
    np.testing.assert_allclose(a32.get_forces(), a64.get_forces(), atol=1e-4 * np.abs(a64.get_forces()).max())


def test_calculator_forces_match_finite_differences(small_checkpoint, ethanol, rng):
    ethanol.positions += rng.normal(scale=0.03, size=ethanol.positions.shape)
    ethanol.calc = EMGPCalculator(model=small_checkpoint, dtype="float64")
    assert_forces_match_fd(calculator_fn(ethanol), ethanol.positions.copy(), delta_A=1e-5, rtol=1e-5, atol=1e-8)


def test_calculator_invariance(small_checkpoint, ethanol):
    ethanol.calc = EMGPCalculator(model=small_checkpoint, dtype="float64")
    assert_e3_invariance(calculator_fn(ethanol), ethanol.positions.copy(), seed=3, n_trials=4, atol=1e-9)


def test_model_object_and_from_checkpoint(small_checkpoint, ethanol):
    model, meta = load_checkpoint(small_checkpoint)
    a, b = ethanol.copy(), ethanol.copy()
    a.calc = EMGPCalculator(model=model, metadata=meta)
    b.calc = EMGPCalculator.from_checkpoint(small_checkpoint)
    np.testing.assert_allclose(a.get_forces(), b.get_forces(), rtol=1e-6)
    with pytest.raises(ValueError, match="eval"):
        EMGPCalculator(model=make_small_model().train(), metadata=meta)


def test_topology_is_frozen_and_reset(small_checkpoint, ethanol):
    calc = EMGPCalculator(model=small_checkpoint, dtype="float64", on_bond_change="warn")
    ethanol.calc = calc
    ethanol.get_potential_energy()
    topo = calc._topology
    assert topo is not None and len(topo.bonds) == 8
    ethanol.positions *= 3.0  # every bond stretched far beyond its covalent length
    e_far = ethanol.get_potential_energy()  # "warn": computed on the frozen graph
    assert calc._topology is topo, "topology was rebuilt on a geometry change"
    calc.reset_topology()
    assert calc._topology is None
    with pytest.raises(StructureError, match="9 disconnected fragments"):
        ethanol.get_potential_energy()  # re-perceived: nine lone atoms, refused
    assert np.isfinite(e_far)


def test_bond_change_raises_by_default(small_checkpoint, ethanol):
    ethanol.calc = EMGPCalculator(model=small_checkpoint, dtype="float64")
    ethanol.get_potential_energy()
    ethanol.positions *= 3.0
    with pytest.raises(BondChangeError, match="broken") as info:
        ethanol.get_potential_energy()
    assert len(info.value.broken) == 8 and info.value.formed == []


def test_new_molecule_gets_new_topology(small_checkpoint, ethanol, benzene):
    calc = EMGPCalculator(model=small_checkpoint)
    ethanol.calc = calc
    ethanol.get_potential_energy()
    benzene.calc = calc
    assert np.all(np.isfinite(benzene.get_forces()))
    assert calc._topology.n_atoms == 12


def test_unknown_element(small_checkpoint):
    atoms = molecule("CH3Cl")
    atoms.calc = EMGPCalculator(model=small_checkpoint)
    with pytest.raises(ValueError, match="Cl"):
        atoms.get_potential_energy()


def test_nan_position_names_atom(small_checkpoint, ethanol):
    ethanol.positions[4, 1] = np.nan
    ethanol.calc = EMGPCalculator(model=small_checkpoint)
    with pytest.raises(ValueError, match=r"\[4\]"):
        ethanol.get_potential_energy()


def test_periodic_cell_rejected(small_checkpoint, ethanol):
    ethanol.cell = [10, 10, 10]
    ethanol.pbc = True
    ethanol.calc = EMGPCalculator(model=small_checkpoint)
    with pytest.raises(ValueError, match="pbc"):
        ethanol.get_potential_energy()


def test_empty_atoms_rejected(small_checkpoint):
    atoms = Atoms()
    atoms.calc = EMGPCalculator(model=small_checkpoint)
    with pytest.raises(ValueError, match="no atoms"):
        atoms.get_potential_energy()


def test_no_shipped_model_for_formula():
    atoms = molecule("CH4")
    atoms.calc = EMGPCalculator()
    with pytest.raises(ValueError, match="CH4") as info:
        atoms.get_potential_energy()
    assert "shipped models" in str(info.value)
    for name in emgp_md.available_models():
        assert name in str(info.value)


def test_unknown_shipped_name():
    with pytest.raises(ValueError, match="no shipped model named 'no-such-model'"):
        EMGPCalculator("no-such-model")


def test_name_and_model_both_rejected(small_checkpoint):
    with pytest.raises(ValueError, match="not both"):
        EMGPCalculator("aspirin", model=small_checkpoint)


def test_bad_dtype(small_checkpoint):
    with pytest.raises(ValueError, match="float16"):
        EMGPCalculator(model=small_checkpoint, dtype="float16")


def test_missing_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        EMGPCalculator(model=tmp_path / "missing.pt")


# --------------------------------------------------------------------------- shipped models
def _require_shipped(name: str) -> None:
    if name not in emgp_md.available_models():
        pytest.skip(f"no shipped model yet: {name!r} is not in emgp_md/pretrained/index.json")


@pytest.mark.parametrize("name", ["aspirin", "ethanol"])
def test_default_calculator_picks_shipped_model_by_formula(name):
    _require_shipped(name)
    from emgp_md.pretrained import reference_atoms

    atoms = reference_atoms(name) if name == "aspirin" else molecule("CH3CH2OH")
    assert atoms.get_chemical_formula(mode="hill") == emgp_md.available_models()[name]["formula"]
    atoms.calc = EMGPCalculator()
    e, f = atoms.get_potential_energy(), atoms.get_forces()
    assert atoms.calc.metadata["name"] == name
    assert atoms.calc.metadata["units"]["energy"] == "kcal/mol"
    assert np.isfinite(e) and np.all(np.isfinite(f)) and f.shape == (len(atoms), 3)
    # the energy itself, not just a finite number (ase.build's ethanol used to come out 10.4 eV too
    # high, its atoms mapped onto the wrong graph): against the model's own reference frame, an rMD17
    # frame from 500 K MD, a near-equilibrium geometry lies lower by about its thermal potential
    # energy (21 internal modes of ethanol x kT/2 at 500 K: ~0.45 eV, fluctuating), never far higher
    ref = reference_atoms(name)
    ref.calc = EMGPCalculator(name)
    assert -1.5 < e - ref.get_potential_energy() < 0.5
    assert np.abs(f).max() < 10.0


def test_shipped_model_by_name():
    _require_shipped("aspirin")
    from emgp_md.pretrained import reference_atoms

    atoms = reference_atoms("aspirin")
    assert len(atoms) == 21
    atoms.calc = EMGPCalculator("aspirin")
    f = atoms.get_forces()
    assert np.all(np.isfinite(f)) and np.isfinite(atoms.get_potential_energy())
    # an rMD17 training frame: forces of chemical size (< 10 eV/Å), not exploding
    assert np.abs(f).max() < 10.0


@pytest.fixture
def fake_shipped(tmp_path, monkeypatch):
    """A package-data folder holding one tiny 'ethanol-test' model (C2H6O) with a reference geometry."""
    import json

    from emgp_md import pretrained
    from emgp_md.config import ModelConfig
    from emgp_md.models.checkpoint import make_metadata, save_checkpoint

    atoms = molecule("CH3CH2OH")
    topo = topo_of(atoms).to_dict()
    topo["positions_A"] = atoms.positions.tolist()
    meta = make_metadata(
        ModelConfig(hidden_nf=16, n_layers=2),
        [1, 6, 8],
        "kcal/mol",
        topology=topo,
        name="ethanol-test",
        formula="C2H6O",
    )
    folder = tmp_path / "pkg"
    save_checkpoint(folder / "ethanol-test.pt", make_small_model(seed=21), meta)
    index = {
        "ethanol-test": {
            "file": "ethanol-test.pt",
            "formula": "C2H6O",
            "test": {"force_mae_kcal_mol_A": 0.5, "energy_mae_kcal_mol": 0.25},
        }
    }
    # a second molecule of the same elements: acetic acid, C2H4O2
    acid = molecule("CH3COOH")
    save_checkpoint(
        folder / "acid-test.pt",
        make_small_model(seed=22),
        make_metadata(
            ModelConfig(hidden_nf=16, n_layers=2),
            [1, 6, 8],
            "kcal/mol",
            topology=None,
            name="acid-test",
            formula=acid.get_chemical_formula(mode="hill"),
        ),
    )
    index["acid-test"] = {"file": "acid-test.pt", "formula": acid.get_chemical_formula(mode="hill")}
    for entry in index.values():  # the hash every shipped file is checked against
        entry["sha256"] = pretrained.file_sha256(folder / entry["file"])
    (folder / "index.json").write_text(json.dumps(index))
    monkeypatch.setattr(pretrained, "_folder", lambda: folder)
    return folder


def test_formula_lookup_with_fake_package_data(fake_shipped):
    from emgp_md.pretrained import load_structure, model_for_formula, reference_atoms

    assert sorted(emgp_md.available_models()) == ["acid-test", "ethanol-test"]
    assert model_for_formula("C2H6O") == "ethanol-test"
    atoms = molecule("CH3CH2OH")
    atoms.calc = EMGPCalculator()
    f = atoms.get_forces()
    assert atoms.calc.metadata["name"] == "ethanol-test" and np.all(np.isfinite(f))
    named = molecule("CH3CH2OH")
    named.calc = EMGPCalculator("ethanol-test")
    np.testing.assert_allclose(named.get_forces(), f, rtol=1e-6)
    ref = reference_atoms("ethanol-test")
    np.testing.assert_allclose(ref.positions, molecule("CH3CH2OH").positions)
    assert load_structure("ethanol-test").get_chemical_formula(mode="hill") == "C2H6O"
    with pytest.raises(ValueError, match=r"ethanol-test \(C2H6O\)"):
        model_for_formula("CH4")
    with pytest.raises(ValueError, match="neither a shipped molecule"):
        load_structure("no-such-thing")


def test_default_calculator_follows_formula_when_reused(fake_shipped):
    """One ``EMGPCalculator()`` used on two molecules picks each molecule's own shipped model."""
    calc = EMGPCalculator()
    ethanol, acid = molecule("CH3CH2OH"), molecule("CH3COOH")
    ethanol.calc = calc
    e_ethanol = ethanol.get_potential_energy()
    assert calc.metadata["name"] == "ethanol-test"
    acid.calc = calc
    f_acid = acid.get_forces()
    assert calc.metadata["name"] == "acid-test"
    fresh = molecule("CH3COOH")
    fresh.calc = EMGPCalculator("acid-test")
    np.testing.assert_allclose(f_acid, fresh.get_forces(), rtol=1e-6)
    ethanol.calc = calc
    assert ethanol.get_potential_energy() == pytest.approx(e_ethanol, rel=1e-6)
    assert calc.metadata["name"] == "ethanol-test"


def test_explicit_model_is_kept_and_refuses_other_molecules(fake_shipped):
    """A model chosen by name is never swapped behind the user's back, and refuses another molecule."""
    calc = EMGPCalculator("ethanol-test")
    acid = molecule("CH3COOH")
    acid.calc = calc
    with pytest.raises(StructureError, match="C2H4O2 with 7 bonds.*C2H6O with 8 bonds"):
        acid.get_forces()
    assert calc.metadata["name"] == "ethanol-test"


def test_failed_formula_lookup_does_not_fall_back_to_previous_model(fake_shipped):
    calc = EMGPCalculator()
    ethanol, methane = molecule("CH3CH2OH"), molecule("CH4")
    ethanol.calc = calc
    ethanol.get_potential_energy()
    methane.calc = calc
    for _ in range(2):  # the second call sees no system change but must still refuse
        with pytest.raises(ValueError, match="no shipped model for formula CH4"):
            methane.get_potential_energy()


@pytest.mark.slow
def test_compiled_calculator_matches_eager(small_checkpoint: Path) -> None:
    """torch.compile path gives the eager numbers (slow: compilation takes tens of seconds)."""
    from ase.build import molecule

    atoms = molecule("CH3CH2OH")
    eager = EMGPCalculator(model=small_checkpoint, dtype="float64")
    compiled = EMGPCalculator(model=small_checkpoint, dtype="float64", compile=True)
    for shift in (0.0, 0.05):
        atoms.positions[0, 0] += shift
        e0, f0 = eager.get_potential_energy(atoms), eager.get_forces(atoms)
        e1, f1 = compiled.get_potential_energy(atoms), compiled.get_forces(atoms)
        assert abs(e1 - e0) < 1e-9
        np.testing.assert_allclose(f1, f0, atol=1e-9)
