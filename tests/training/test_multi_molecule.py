"""Many molecules in one training set: reference energies, mixed batches, the model and its calculator."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import molecule
from ase.calculators.lj import LennardJones
from conftest import make_small_model

from emgp_md.calculator import EMGPCalculator
from emgp_md.config import FinetuneConfig, ModelConfig
from emgp_md.data.frames import Dataset, Frames
from emgp_md.models.checkpoint import load_checkpoint
from emgp_md.models.forces import energy_and_forces
from emgp_md.training.data import Reference, fit_reference, prepare
from emgp_md.training.evaluate import predict
from emgp_md.training.finetune import finetune, train_epoch

ATOM_EV = {1: -13.6, 6: -1029.0, 7: -1485.0, 8: -2041.0}


def _frames(name: str, n: int, seed: int) -> Frames:
    """``n`` jittered geometries of ``name`` with Lennard-Jones energies (eV) plus per-element offsets."""
    rng = np.random.default_rng(seed)
    atoms = molecule(name)
    atoms.calc = LennardJones(sigma=1.0, epsilon=0.01, rc=6.0)
    coords, energies, forces = [], [], []
    for _ in range(n):
        a = atoms.copy()
        a.calc = atoms.calc
        a.positions += rng.normal(scale=0.05, size=a.positions.shape)
        coords.append(a.positions.copy())
        energies.append(a.get_potential_energy() + sum(ATOM_EV[int(z)] for z in a.numbers))
        forces.append(a.get_forces())
    return Frames(atoms.numbers.astype(np.int64), np.array(coords), np.array(energies), np.array(forces), name, "eV")


@pytest.fixture(scope="module")
def mixed() -> Dataset:
    return Dataset.of([_frames("CH3CH2OH", 12, 0), _frames("CH3OH", 12, 1), _frames("H2O", 12, 2)], source="toy")


def test_reference_energies_recover_the_element_offsets(mixed: Dataset) -> None:
    ref = fit_reference(mixed)
    assert ref.atom_ref is not None and sorted(ref.atom_ref) == [1, 6, 8]
    residual = mixed.energies() - ref.of(mixed)
    assert np.abs(residual).max() < 2.0  # what remains is the small LJ part, not ~10⁴ eV
    # C2H6O, CH4O and H2O differ by CH2 units: the element counts leave one direction free (minimum-norm fit)
    one = Dataset([mixed.groups[0]], "eV")
    assert fit_reference(one).shift == pytest.approx(one.groups[0].energies.mean(), rel=1e-15)
    with pytest.raises(ValueError, match=r"element\(s\) \[7\]"):
        Reference(atom_ref={1: 0.0, 6: 0.0}).of(Dataset([_frames("CH3CN", 2, 3)], "eV"))


def test_mixed_batch_equals_single_molecule_calls(mixed: Dataset) -> None:
    torch.manual_seed(0)
    ref = fit_reference(mixed)
    model = make_small_model(seed=1).double().eval()
    model.atom_ref = dict(ref.atom_ref or {})
    prepared = prepare(mixed, ref)
    index = np.array([0, 13, 30, 5, 25])  # frames of all three molecules, interleaved
    graph, residual, forces = prepared.batch(index, torch.float64)
    energy, pred_f = energy_and_forces(model, graph)
    total = model.total_energy(energy, graph).numpy()
    group, local = mixed.locate(index)
    offset = 0
    for k, (g, i) in enumerate(zip(group, local, strict=True)):
        frames = mixed.groups[g]
        e1, f1 = predict(model, prepared.topologies[g], frames.coords[i : i + 1], dtype=torch.float64)
        n = frames.z.shape[0]
        assert total[k] == pytest.approx(e1[0], abs=1e-9)
        np.testing.assert_allclose(pred_f[offset : offset + n].detach().numpy(), f1[0], atol=1e-10)
        np.testing.assert_allclose(forces[offset : offset + n].numpy(), frames.forces[i])
        assert float(residual[k]) == pytest.approx(frames.energies[i] - prepared.reference[index[k]], abs=1e-9)
        offset += n
    with pytest.raises(ValueError, match="needs the graph"):
        model.total_energy(energy)


def test_train_epoch_on_mixed_batches_runs(mixed: Dataset) -> None:
    ref = fit_reference(mixed)
    model = make_small_model(seed=2)
    model.atom_ref = dict(ref.atom_ref or {})
    cfg = FinetuneConfig(batch_size=7, epochs=1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss = train_epoch(model, prepare(mixed, ref), cfg, opt, epoch=0)
    assert np.isfinite(loss)


def test_many_molecule_model_serves_any_molecule_of_its_elements(mixed: Dataset, tmp_path, monkeypatch) -> None:
    import emgp_md.training.finetune as ft

    monkeypatch.setattr(ft, "_read", lambda cfg, path: mixed)
    cfg = FinetuneConfig(
        data="toy", n_val=6, n_test=6, batch_size=8, epochs=2, model=ModelConfig(hidden_nf=8, n_layers=1)
    )
    result = finetune(cfg, tmp_path / "run")
    assert result["finished"] and result["test"]["n_molecules"] >= 2
    model, meta = load_checkpoint(tmp_path / "run" / "model.pt")
    assert meta["topology"] is None and meta["units"]["energy"] == "eV" and meta["species"] == [1, 6, 8]
    assert sorted(model.atom_ref) == [1, 6, 8]
    import ase.io

    held_out = ase.io.read(tmp_path / "run" / "test_frames.xyz", index=":")  # for emgp-md evaluate
    assert len(held_out) == 6 and {a.get_chemical_formula() for a in held_out} <= {"C2H6O", "CH4O", "H2O"}
    assert all(np.isin(a.get_potential_energy(), mixed.energies()) for a in held_out)  # eV, unchanged
    atoms = molecule("CH3OCH3")  # dimethyl ether: not in the training set, same elements
    atoms.calc = EMGPCalculator(str(tmp_path / "run" / "model.pt"), dtype="float64")
    e = atoms.get_potential_energy()
    expected_ref = sum(model.atom_ref[int(z)] for z in atoms.numbers)
    assert abs(e - expected_ref) < 50.0  # the reference energies carry the total energy
    perm = np.random.default_rng(0).permutation(len(atoms))
    shuffled = atoms[perm]
    shuffled.calc = EMGPCalculator(tmp_path / "run" / "model.pt", dtype="float64")
    assert shuffled.get_potential_energy() == pytest.approx(e, abs=1e-9)
    np.testing.assert_allclose(shuffled.get_forces(), atoms.get_forces()[perm], atol=1e-9)


def test_calculator_takes_a_path_and_names_a_missing_one(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        EMGPCalculator(str(tmp_path / "missing.pt"))
