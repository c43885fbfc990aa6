"""Molecule identity from the geometry: every shipped model, any atom order, and the refusals (issue #13)."""

from __future__ import annotations

import logging
from functools import cache

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import molecule
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emgp_md import EMGPCalculator, available_models
from emgp_md.data.bonds import perceive_bonds
from emgp_md.data.convert import topology_for_atoms
from emgp_md.data.graph import collate
from emgp_md.data.identity import match_reference
from emgp_md.data.topology import Topology, bonds_from_distances
from emgp_md.errors import BondChangeError, StructureError
from emgp_md.models.checkpoint import load_checkpoint
from emgp_md.models.energy_model import EnergyModel
from emgp_md.models.forces import energy_and_forces
from emgp_md.pretrained import model_path, reference_atoms
from emgp_md.units import energy_unit_to_eV

MODELS = sorted(available_models())
SMILES = {
    "aspirin": "CC(=O)Oc1ccccc1C(=O)O",
    "benzene": "c1ccccc1",
    "ethanol": "CCO",
    "malonaldehyde": "O=CCC=O",
    "naphthalene": "c1ccc2ccccc2c1",
    "salicylic": "O=C(O)c1ccccc1O",
    "toluene": "Cc1ccccc1",
    "uracil": "O=c1cc[nH]c(=O)[nH]1",
}
E_TOL_EV = 1e-8


@cache
def _calc(name: str) -> EMGPCalculator:
    return EMGPCalculator(name, dtype="float64")


@cache
def _reference(name: str) -> tuple[Atoms, float, np.ndarray]:
    atoms = reference_atoms(name)
    atoms.calc = _calc(name)
    return atoms, atoms.get_potential_energy(), atoms.get_forces()


def _energy_on_stored_graph(name: str, atoms_in_reference_order: Atoms) -> float:
    """Energy (eV) computed with the model's *stored* reference graph, no perception involved."""
    model, meta = load_checkpoint(model_path(name))
    topo = Topology.from_dict(meta["topology"])
    assert np.array_equal(topo.z, atoms_in_reference_order.numbers)
    graph = collate([topo], [atoms_in_reference_order.positions], torch.float64)
    energy, _ = energy_and_forces(model.double(), graph)
    return float(model.total_energy(energy)[0]) * energy_unit_to_eV(meta["units"]["energy"])


def _evaluate(name: str, atoms: Atoms) -> tuple[float, np.ndarray]:
    atoms = atoms.copy()
    atoms.calc = _calc(name)
    return atoms.get_potential_energy(), atoms.get_forces()


def test_covalent_perception_reproduces_every_stored_reference_graph():
    """The covalent-radius graph of each reference frame is the graph the model was trained with (the
    authors' 1.6 Å rule for the train_01 models; the paper-regime malonaldehyde frame has a C–C bond
    stretched to 1.61 Å, which that rule would have dropped)."""
    for name in MODELS:
        _, meta = load_checkpoint(model_path(name))
        ref = Topology.from_dict(meta["topology"])
        pos = np.asarray(meta["topology"]["positions_A"])
        np.testing.assert_array_equal(perceive_bonds(ref.z, pos), ref.bonds)
        if "_train_01.npz" in str(meta.get("provenance", {}).get("split", "")):
            np.testing.assert_array_equal(bonds_from_distances(pos), ref.bonds)


@pytest.mark.parametrize("name", MODELS)
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_permutation_gives_the_same_energy(name, data):
    ref, e0, f0 = _reference(name)
    perm = np.array(data.draw(st.permutations(range(len(ref)))))
    e, f = _evaluate(name, ref[perm])
    assert abs(e - e0) < E_TOL_EV
    np.testing.assert_allclose(f, f0[perm], atol=1e-8)


@pytest.mark.parametrize("name", MODELS)
@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_permutations_that_keep_the_element_order(name, seed):
    """Swapping atoms of one element (two hydrogens, two carbons) is what the old code got wrong by eV."""
    ref, e0, f0 = _reference(name)
    rng = np.random.default_rng(seed)
    perm = np.arange(len(ref))
    for z in np.unique(ref.numbers):
        idx = np.nonzero(ref.numbers == z)[0]
        perm[idx] = rng.permutation(idx)
    assert np.array_equal(ref.numbers[perm], ref.numbers)
    e, f = _evaluate(name, ref[perm])
    assert abs(e - e0) < E_TOL_EV
    np.testing.assert_allclose(f, f0[perm], atol=1e-8)


def _rdkit_build(smiles: str, seed: int = 7) -> Atoms:
    from rdkit import Chem
    from rdkit.Chem import AllChem

    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    assert AllChem.EmbedMolecule(mol, randomSeed=seed) == 0
    AllChem.MMFFOptimizeMolecule(mol)
    return Atoms(numbers=[a.GetAtomicNum() for a in mol.GetAtoms()], positions=mol.GetConformer().GetPositions())


def _in_reference_order(name: str, atoms: Atoms) -> tuple[Atoms, np.ndarray]:
    """The structure's atoms reordered into the reference order (``atoms[index]``) and ``index``, checked
    independently of the matcher: every stored reference bond must be a short bond of the reordered geometry."""
    _, meta = load_checkpoint(model_path(name))
    ref = Topology.from_dict(meta["topology"])
    perm = match_reference(atoms.numbers, perceive_bonds(atoms.numbers, atoms.positions), ref.z, ref.bonds)
    index = np.argsort(perm)
    ordered = atoms[index]
    d = np.linalg.norm(ordered.positions[ref.bonds[:, 0]] - ordered.positions[ref.bonds[:, 1]], axis=1)
    assert np.array_equal(ordered.numbers, ref.z) and d.max() < 1.7
    return ordered, index


@pytest.mark.parametrize("name", MODELS)
def test_rdkit_build_from_smiles_gets_the_reference_graph(name):
    atoms = _rdkit_build(SMILES[name])
    e, f = _evaluate(name, atoms)
    ordered, index = _in_reference_order(name, atoms)
    assert abs(e - _energy_on_stored_graph(name, ordered)) < E_TOL_EV
    e_ordered, f_ordered = _evaluate(name, ordered)
    assert abs(e - e_ordered) < E_TOL_EV
    np.testing.assert_allclose(f[index], f_ordered, atol=1e-8)
    # an MMFF geometry of the same molecule lies within a few tenths of an eV of the DFT frame
    assert abs(e - _reference(name)[1]) < 2.0


def test_ase_build_ethanol_energy_is_right():
    """`ase.build.molecule("CH3CH2OH")` numbers its atoms unlike rMD17: was +10.4 eV off, now the stored graph's value."""
    atoms = molecule("CH3CH2OH")
    e, _ = _evaluate("ethanol", atoms)
    assert abs(e - _energy_on_stored_graph("ethanol", _in_reference_order("ethanol", atoms)[0])) < E_TOL_EV
    assert e == pytest.approx(-4210.19, abs=0.05)


def test_another_formula_of_the_same_elements_is_refused():
    with pytest.raises(StructureError, match=r"H with 0 bonds.*C2H6O with 8 bonds"):
        _evaluate("ethanol", Atoms("H", positions=[[0.0, 0.0, 0.0]]))
    with pytest.raises(StructureError, match="C2H4O2"):
        _evaluate("ethanol", molecule("CH3COOH"))


def test_an_isomer_is_refused():
    """Dimethyl ether has ethanol's formula but not its graph."""
    with pytest.raises(StructureError, match="not the molecule of this model"):
        _evaluate("ethanol", molecule("CH3OCH3"))


def test_two_molecules_far_apart_are_refused():
    ref = reference_atoms("ethanol")
    far = ref.copy()
    far.positions += 1000.0
    with pytest.raises(StructureError, match="2 disconnected fragments"):
        _evaluate("ethanol", ref + far)


def test_overlapping_atoms_are_refused():
    atoms = reference_atoms("ethanol")
    atoms.positions[4] = atoms.positions[0] + [0.1, 0.0, 0.0]
    with pytest.raises(StructureError, match=r"overlap.*[CHO]0–[CHO]4 at 0\.100 Å"):
        _evaluate("ethanol", atoms)


def test_coordinates_beyond_a_sane_box_are_refused():
    atoms = reference_atoms("ethanol")
    atoms.positions[2] = 1e30
    with pytest.raises(StructureError, match=r"beyond ±10000 Å for atom index\(es\) \[2\]"):
        _evaluate("ethanol", atoms)


def test_non_finite_model_output_is_refused():
    model, meta = load_checkpoint(model_path("ethanol"))
    with torch.no_grad():
        next(model.head.parameters()).fill_(float("nan"))
    atoms = reference_atoms("ethanol")
    atoms.calc = EMGPCalculator(model=model, metadata=meta)
    with pytest.raises(StructureError, match="non-finite energy"):
        atoms.get_potential_energy()


def test_a_broken_bond_during_a_run_raises_and_names_it():
    atoms = reference_atoms("ethanol")
    atoms.calc = EMGPCalculator("ethanol")
    atoms.get_potential_energy()
    h = int(np.nonzero(atoms.numbers == 1)[0][0])
    atoms.positions[h] += [1.5, 0.0, 0.0]  # the same Atoms object: a run, not a new structure
    with pytest.raises(BondChangeError, match=f"broken [CO]\\d+–H{h}") as info:
        atoms.get_potential_energy()
    assert len(info.value.broken) == 1 and h in info.value.broken[0]


def test_bond_change_warn_policy_warns_once(caplog):
    atoms = reference_atoms("ethanol")
    atoms.calc = EMGPCalculator("ethanol", on_bond_change="warn")
    atoms.get_potential_energy()
    h = int(np.nonzero(atoms.numbers == 1)[0][0])
    with caplog.at_level(logging.WARNING, logger="emgp_md.calculator"):
        for shift in (1.5, 1.6, 1.7):
            atoms.positions[h] += [0.1 if shift > 1.5 else shift, 0.0, 0.0]
            assert np.isfinite(atoms.get_potential_energy())
    assert sum("bond graph changed" in r.message for r in caplog.records) == 1
    with pytest.raises(ValueError, match="on_bond_change"):
        EMGPCalculator("ethanol", on_bond_change="ignore")


def test_vibrations_of_the_rmd17_frames_are_not_events(shared_data):
    """rMD17 frames (500 K MD) of ethanol and salicylic acid (hydrogen bond) pass the watch of the reference graph."""
    for name in ("ethanol", "salicylic"):
        data = np.load(shared_data / "rmd17" / f"rmd17_{name}_train_01.npz")
        atoms = reference_atoms(name)
        atoms.calc = EMGPCalculator(name)
        for pos in data["coords"][::20]:
            atoms.positions = pos
            assert np.isfinite(atoms.get_potential_energy())


def test_reset_topology_rederives_for_a_renumbered_structure():
    """The same Atoms object given renumbered positions: the watch raises, reset_topology re-matches."""
    ref, e0, _ = _reference("ethanol")
    atoms = ref.copy()
    atoms.calc = EMGPCalculator("ethanol", dtype="float64")
    atoms.get_potential_energy()
    z = atoms.numbers
    hs = np.nonzero(z == 1)[0]
    perm = np.arange(len(atoms))
    perm[hs[0]], perm[hs[-1]] = hs[-1], hs[0]
    atoms.positions = ref.positions[perm]
    with pytest.raises(BondChangeError):
        atoms.get_potential_energy()
    atoms.calc.reset_topology()
    assert abs(atoms.get_potential_energy() - e0) < E_TOL_EV


def test_hypergraph_is_relabelled_with_the_atoms(ethanol):
    """SE3Set: a reference hypergraph follows the atom order of the structure (energy unchanged)."""
    from emgp_md.data.fragment import PRESETS as FRAGMENT_PRESETS
    from emgp_md.models import build_model
    from emgp_md.models.se3set.config import se3set_model_config

    torch.manual_seed(0)
    model: EnergyModel = build_model(se3set_model_config("tiny")).eval().double()
    ref = topology_for_atoms(ethanol, hypergraph_options=FRAGMENT_PRESETS["md17"])
    perm = np.random.default_rng(1).permutation(len(ethanol))
    moved = ethanol[perm]
    topo = topology_for_atoms(moved, ref.to_dict(), hypergraph_options=FRAGMENT_PRESETS["md17"])
    e_ref, f_ref = energy_and_forces(model, collate([ref], [ethanol.positions], torch.float64))
    e_new, f_new = energy_and_forces(model, collate([topo], [moved.positions], torch.float64))
    assert abs(float(e_ref[0] - e_new[0])) < 1e-10
    np.testing.assert_allclose(f_new.numpy(), f_ref.numpy()[perm], atol=1e-10)


def test_cli_md_refuses_a_bad_structure_before_anything_else(tmp_path, caplog):
    """Was numpy's "Eigenvalues did not converge" for a NaN position; now the refusal, and no output files."""
    import ase.io

    from emgp_md.cli import main

    atoms = molecule("CH3CH2OH")
    atoms.positions[3] = np.nan
    ase.io.write(tmp_path / "bad.extxyz", atoms)
    out = tmp_path / "md" / "run"
    assert main(["md", str(tmp_path / "bad.extxyz"), "--out", str(out), "--steps", "2", "--quiet"]) == 2
    assert "non-finite positions for atom index(es) [3]" in caplog.text
    assert not out.parent.exists() or not any(out.parent.iterdir())


def test_a_copy_served_from_the_cache_is_the_same_structure():
    """ASE answers an identical copy from its cache without calculate(); the copy then moving on is a run."""
    ref = reference_atoms("ethanol")
    calc = EMGPCalculator("ethanol", on_bond_change="warn")
    ref.calc = calc
    ref.get_potential_energy()
    work = ref.copy()
    work.calc = calc
    work.get_potential_energy()  # cached: same geometry
    h = int(np.nonzero(work.numbers == 1)[0][0])
    work.positions[h] += [1.5, 0.0, 0.0]  # a broken bond of the adopted structure: watched, not re-perceived
    assert np.isfinite(work.get_potential_energy())


def test_atoms_moved_onto_each_other_during_a_run_are_refused_under_either_policy():
    """The per-call watch also checks overlaps (same distances): 'warn' never lets them through."""
    for policy in ("raise", "warn"):
        atoms = reference_atoms("ethanol")
        atoms.calc = EMGPCalculator("ethanol", on_bond_change=policy)
        atoms.get_potential_energy()
        atoms.positions[1] = atoms.positions[0] + [0.1, 0.0, 0.0]
        with pytest.raises(StructureError, match="overlap"):
            atoms.get_potential_energy()
