"""Sampling and labelling of ``emgp-md learn`` (issue #15 items 1, 2, 7): tiny molecules, xTB and PySCF."""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor

import ase.io
import numpy as np
import pytest
from ase import Atoms
from ase.build import molecule
from ase.calculators.emt import EMT

pytest.importorskip("tblite", reason="sampling and the xTB labeller need tblite (pip install '.[learn]')")

from emgp_md.errors import LabelError
from emgp_md.learn.labelling import (
    CalculatorLabeller,
    PySCFLabeller,
    XTBLabeller,
    label_frames,
    load_store,
)
from emgp_md.learn.sampling import molecule_from_smiles, sample_xtb_md, start_structure

CALLS: list[int] = []


class FailingOn:
    """A picklable EMT labeller that fails on frames whose first x coordinate is above ``limit``."""

    level_of_theory = "EMT (test)"

    def __init__(self, limit: float) -> None:
        self.limit = limit

    def __call__(self, atoms: Atoms) -> tuple[float, np.ndarray]:
        CALLS.append(1)
        if atoms.positions[0, 0] > self.limit:
            raise LabelError("SCF not converged (test)")
        return CalculatorLabeller(EMT, "EMT")(atoms)


def _jiggled(name: str, n: int, seed: int = 0) -> list[Atoms]:
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(n):
        atoms = molecule(name)
        atoms.positions += rng.normal(0, 0.05, atoms.positions.shape)
        frames.append(atoms)
    return frames


def test_smiles_to_structure_and_clear_errors():
    atoms = molecule_from_smiles("CCO", seed=1)
    assert atoms.get_chemical_formula() == "C2H6O"
    with pytest.raises(ValueError, match=r"cannot parse the SMILES 'C1CC\('"):
        molecule_from_smiles("C1CC(")


def test_start_structure_from_file_is_relaxed_with_xtb(tmp_path):
    ase.io.write(tmp_path / "w.xyz", _jiggled("H2O", 1)[0])
    atoms = start_structure(str(tmp_path / "w.xyz"))
    assert atoms.calc is None and len(atoms) == 3
    check = atoms.copy()
    check.calc = XTBLabeller().make_calculator()
    assert np.abs(check.get_forces()).max() < 0.06  # relaxed to fmax 0.05 eV/Å
    (tmp_path / "empty.xyz").write_text("0\n\n")
    with pytest.raises(ValueError, match="empty.xyz"):
        start_structure(str(tmp_path / "empty.xyz"))


def test_xtb_md_frames_are_distinct_geometries_without_labels():
    frames = sample_xtb_md(molecule("H2O"), 5, 500.0, 0.5, stride_steps=10, equilibration_steps=20, progress=False)
    assert len(frames) == 5 and all(f.calc is None for f in frames)
    positions = np.array([f.positions for f in frames])
    assert np.abs(np.diff(positions, axis=0)).max() > 1e-3
    again = sample_xtb_md(molecule("H2O"), 5, 500.0, 0.5, stride_steps=10, equilibration_steps=20, progress=False)
    np.testing.assert_allclose(np.array([f.positions for f in again]), positions)  # seeded


def test_xtb_labels_match_tblite_and_finite_differences():
    atoms = _jiggled("H2O", 1)[0]
    energy, forces = XTBLabeller()(atoms)
    direct = atoms.copy()
    direct.calc = XTBLabeller().make_calculator()
    assert energy == pytest.approx(direct.get_potential_energy(), abs=1e-8)
    h, i, k = 1e-4, 1, 2
    plus, minus = atoms.copy(), atoms.copy()
    plus.positions[i, k] += h
    minus.positions[i, k] -= h
    fd = -(XTBLabeller()(plus)[0] - XTBLabeller()(minus)[0]) / (2 * h)
    assert forces[i, k] == pytest.approx(fd, abs=2e-3)


def test_pyscf_defaults_and_forces_against_finite_differences():
    pytest.importorskip("pyscf", reason="the DFT labeller needs PySCF")
    default = PySCFLabeller()
    assert default.level_of_theory == "PBE/def2-SVP (PySCF, density fitting)"
    labeller = PySCFLabeller(basis="sto-3g")
    atoms = Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.78]])
    energy, forces = labeller(atoms)
    h = 1e-3
    plus, minus = atoms.copy(), atoms.copy()
    plus.positions[1, 2] += h
    minus.positions[1, 2] -= h
    fd = -(labeller(plus)[0] - labeller(minus)[0]) / (2 * h)
    assert forces[1, 2] == pytest.approx(fd, abs=2e-3)
    assert forces[0, 2] == pytest.approx(-forces[1, 2], abs=1e-6)
    assert -40 < energy < -20  # eV, not Hartree (H2 ~ -1.1 Ha)


def test_unconverged_scf_is_a_recorded_failure(tmp_path):
    pytest.importorskip("pyscf", reason="the DFT labeller needs PySCF")
    atoms = _jiggled("H2O", 1)[0]
    with pytest.raises(LabelError, match="SCF not converged"):
        PySCFLabeller(basis="sto-3g", max_cycle=1)(atoms)
    result = label_frames([atoms], PySCFLabeller(basis="sto-3g", max_cycle=1), tmp_path / "s", progress=False)
    assert not result.labelled and len(result.failed) == 1 and "SCF" in result.failed[0]["error"]


def test_store_files_resume_and_failures(tmp_path):
    frames = _jiggled("CH4", 5, seed=3)
    store = tmp_path / "labels"
    CALLS.clear()
    first = label_frames(frames[:3], FailingOn(np.inf), store, progress=False)
    assert len(first.labelled) == 3 and len(CALLS) == 3
    assert sorted(p.name for p in store.iterdir()) == ["000000.json", "000001.json", "000002.json"]
    limit = frames[4].positions[0, 0] - 1e-9  # frame 4 fails (and any frame as far out)
    second = label_frames(frames, FailingOn(limit), store, progress=False)
    assert len(CALLS) == 5  # the three stored frames are not relabelled
    assert [r["index"] for r in second.failed] == [i for i in (3, 4) if frames[i].positions[0, 0] > limit]
    labels = load_store(store).to_frames()
    assert labels.energy_unit == "eV" and labels.coords.shape == (len(second.labelled), 5, 3)
    direct = frames[1].copy()
    direct.calc = EMT()
    np.testing.assert_allclose(labels.energies[1], direct.get_potential_energy())
    np.testing.assert_allclose(labels.forces[1], direct.get_forces())
    with pytest.raises(ValueError, match="another geometry"):
        label_frames(_jiggled("CH4", 1, seed=9), FailingOn(np.inf), store, progress=False)


def test_worker_processes_and_a_given_executor_give_the_inline_labels(tmp_path):
    frames = _jiggled("H2O", 4, seed=5)
    labeller = CalculatorLabeller(EMT, "EMT")
    inline = label_frames(frames, labeller, tmp_path / "a", progress=False).to_frames()
    pooled = label_frames(frames, labeller, tmp_path / "b", max_workers=2, progress=False).to_frames()
    with ProcessPoolExecutor(2) as pool:
        given = label_frames(frames, labeller, tmp_path / "c", executor=pool, progress=False).to_frames()
    for other in (pooled, given):
        np.testing.assert_allclose(other.energies, inline.energies)
        np.testing.assert_allclose(other.forces, inline.forces)
    assert load_store(tmp_path / "a").to_dataset().energy_unit == "eV"


class FakeClient:
    """Stands in for a dask.distributed client: what label_frames uses of it is get_executor()."""

    def __init__(self) -> None:
        self.asked = 0

    def get_executor(self):
        from concurrent.futures import ThreadPoolExecutor

        self.asked += 1
        return ThreadPoolExecutor(2)


def test_a_cluster_client_executor_labels_the_frames(tmp_path):
    frames = _jiggled("H2O", 3, seed=6)
    client = FakeClient()
    result = label_frames(frames, CalculatorLabeller(EMT, "EMT"), tmp_path / "d", client=client, progress=False)
    assert client.asked == 1 and len(result.labelled) == 3


def test_dask_scheduler_without_dask_says_how_to_install(monkeypatch):
    import builtins

    from emgp_md.learn.active import dask_client

    real_import = builtins.__import__

    def no_dask(name, *args, **kwargs):
        if name.startswith("dask"):
            raise ImportError("no dask")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_dask)
    with pytest.raises(ImportError, match=r"tcp://cluster:8786.*emgp-md\[dask\]"):
        dask_client("tcp://cluster:8786")
    assert dask_client(None) is None


def test_a_smiles_rdkit_cannot_embed_is_named(monkeypatch):
    from rdkit.Chem import AllChem

    monkeypatch.setattr(AllChem, "EmbedMolecule", lambda *args, **kwargs: -1)
    with pytest.raises(ValueError, match=r"cannot embed the SMILES 'CCO' in 3D"):
        molecule_from_smiles("CCO")
