"""Readers (issue #14 items 1 and 6): round trips through ASE-written files, units, keys, grouping, errors."""

from __future__ import annotations

from pathlib import Path

import ase.db
import ase.io
import numpy as np
import pytest
from ase import Atoms
from ase.build import molecule
from ase.calculators.singlepoint import SinglePointCalculator
from ase.units import kcal, mol

from emgp_md.data.frames import write_extxyz
from emgp_md.data.readers import detect_format, read_dataset

HERE = Path(__file__).parents[1] / "fixtures"
RMD17_SPLIT = HERE / "rmd17" / "rmd17_ethanol_train_01.npz"
ARCHIVE = HERE / "rmd17_archive"


def _labelled(name: str, n: int, seed: int) -> list[Atoms]:
    """``n`` jiggled copies of an ASE test molecule with random energies (eV) and forces (eV/Å)."""
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(n):
        atoms = molecule(name)
        atoms.positions += rng.normal(0, 0.02, atoms.positions.shape)
        atoms.calc = SinglePointCalculator(
            atoms, energy=float(rng.normal(-100, 1)), forces=rng.normal(0, 1, (len(atoms), 3))
        )
        frames.append(atoms)
    return frames


def _energies(frames: list[Atoms]) -> np.ndarray:
    return np.array([a.get_potential_energy() for a in frames])


def test_extxyz_round_trip_in_eV(tmp_path):
    frames = _labelled("CH3CH2OH", 5, 0)
    ase.io.write(tmp_path / "f.extxyz", frames)
    data = read_dataset(tmp_path / "f.extxyz")
    assert data.energy_unit == "eV" and data.n_molecules == 1 and len(data) == 5
    np.testing.assert_allclose(data.energies(), _energies(frames), rtol=1e-12)
    np.testing.assert_allclose(data.groups[0].forces, np.stack([a.get_forces() for a in frames]), atol=1e-7)
    np.testing.assert_allclose(data.groups[0].coords, np.stack([a.positions for a in frames]), atol=1e-7)


def test_declared_unit_is_kept_and_converts_through_ase_units(tmp_path):
    frames = _labelled("H2O", 3, 1)
    ase.io.write(tmp_path / "w.xyz", frames)
    data = read_dataset(tmp_path / "w.xyz", energy_unit="kcal/mol")
    assert data.energy_unit == "kcal/mol"
    np.testing.assert_allclose(data.energies(), _energies(frames))
    np.testing.assert_allclose(data.to_unit("eV").energies(), _energies(frames) * kcal / mol, rtol=1e-12)


def test_custom_keys_in_info_and_arrays(tmp_path):
    frames = _labelled("H2O", 3, 2)
    for a in frames:
        a.info["REF_energy"] = a.get_potential_energy() + 1.0
        a.arrays["REF_forces"] = a.get_forces() * 2
        a.calc = None
    ase.io.write(tmp_path / "ref.extxyz", frames)
    data = read_dataset(tmp_path / "ref.extxyz", energy_key="REF_energy", forces_key="REF_forces")
    np.testing.assert_allclose(data.energies(), [a.info["REF_energy"] for a in frames])
    np.testing.assert_allclose(data.groups[0].forces[1], frames[1].arrays["REF_forces"])


def test_missing_key_names_the_key_and_the_keys_present(tmp_path):
    frames = _labelled("H2O", 2, 3)
    for a in frames:
        a.info["REF_energy"] = 1.0
    ase.io.write(tmp_path / "f.extxyz", frames)
    with pytest.raises(ValueError, match=r"'dft_energy'.*REF_energy.*--energy-key"):
        read_dataset(tmp_path / "f.extxyz", energy_key="dft_energy")
    with pytest.raises(ValueError, match=r"no forces under the key 'F'.*forces"):
        read_dataset(tmp_path / "f.extxyz", forces_key="F")


def test_unlabelled_xyz_is_an_error_not_a_skip(tmp_path):
    ase.io.write(tmp_path / "plain.xyz", [molecule("CH4")], format="xyz")
    with pytest.raises(ValueError, match="no energy under the key 'energy'"):
        read_dataset(tmp_path / "plain.xyz")


def test_mixed_molecules_are_grouped_and_atom_orders_kept_apart(tmp_path):
    water, methane = _labelled("H2O", 3, 4), _labelled("CH4", 2, 5)
    flipped = water[0].copy()
    flipped = flipped[[1, 0, 2]]  # H, O, H: another atom order of water
    flipped.calc = SinglePointCalculator(flipped, energy=-5.0, forces=np.zeros((3, 3)))
    ase.io.write(tmp_path / "mix.extxyz", [water[0], methane[0], water[1], flipped, methane[1], water[2]])
    data = read_dataset(tmp_path / "mix.extxyz")
    assert [len(g) for g in data.groups] == [3, 2, 1]
    assert data.elements == [1, 6, 8]
    np.testing.assert_allclose(data.groups[0].energies, _energies(water))
    assert data.groups[0].name != data.groups[2].name  # both H2O: numbered apart


def test_ase_database_round_trip_with_energy_and_data_keys(tmp_path):
    frames = _labelled("CH3OH", 4, 6)
    with ase.db.connect(tmp_path / "f.db") as db:
        for a in frames:
            db.write(a, dft=a.get_potential_energy() - 2.0, data={"dft_forces": a.get_forces() + 1.0})
    data = read_dataset(tmp_path / "f.db")
    assert detect_format(tmp_path / "f.db") == "db" and data.energy_unit == "eV"
    np.testing.assert_allclose(data.energies(), _energies(frames))
    keyed = read_dataset(tmp_path / "f.db", energy_key="dft", forces_key="dft_forces")
    np.testing.assert_allclose(keyed.energies(), _energies(frames) - 2.0)
    np.testing.assert_allclose(keyed.groups[0].forces[0], frames[0].get_forces() + 1.0)
    with pytest.raises(ValueError, match=r"'U0'.*dft"):
        read_dataset(tmp_path / "f.db", energy_key="U0")


def test_write_extxyz_reads_back(tmp_path):
    data = read_dataset(RMD17_SPLIT)
    write_extxyz(data.subset(np.arange(4)), tmp_path / "back.extxyz")
    back = read_dataset(tmp_path / "back.extxyz")
    np.testing.assert_allclose(back.energies(), data.subset(np.arange(4)).to_unit("eV").energies(), rtol=1e-10)


def test_generic_npz_needs_a_declared_unit(tmp_path):
    frames = _labelled("H2O", 3, 7)
    arrays = {
        "R": np.stack([a.positions for a in frames]),
        "z": frames[0].numbers,
        "E": _energies(frames)[:, None],
        "F": np.stack([a.get_forces() for a in frames]),
    }
    np.savez(tmp_path / "w.npz", **arrays)
    with pytest.raises(ValueError, match="carries no energy unit.*--energy-unit"):
        read_dataset(tmp_path / "w.npz")
    data = read_dataset(tmp_path / "w.npz", energy_unit="kJ/mol")
    assert data.energy_unit == "kJ/mol" and detect_format(tmp_path / "w.npz") == "npz"
    np.testing.assert_allclose(data.energies(), _energies(frames))
    np.savez(tmp_path / "u.npz", e_unit="kcal/mol", r_unit="Ang", **arrays)
    assert read_dataset(tmp_path / "u.npz").energy_unit == "kcal/mol"
    with pytest.raises(ValueError, match="says its energies are in kcal/mol, but eV was declared"):
        read_dataset(tmp_path / "u.npz", energy_unit="eV")
    with pytest.raises(ValueError, match=r"no energies under \['U'.*keys present.*--energy-key"):
        read_dataset(tmp_path / "w.npz", energy_unit="eV", energy_key="U")


def test_padded_npz_drops_padding_atoms(tmp_path):
    water, methane = _labelled("H2O", 2, 8), _labelled("CH4", 2, 9)
    n = 5
    r, z, f = np.zeros((4, n, 3)), np.zeros((4, n), dtype=np.int64), np.zeros((4, n, 3))
    for i, a in enumerate(water + methane):
        k = len(a)
        r[i, :k], z[i, :k], f[i, :k] = a.positions, a.numbers, a.get_forces()
    np.savez(tmp_path / "pad.npz", R=r, z=z, E=_energies(water + methane), F=f)
    data = read_dataset(tmp_path / "pad.npz", energy_unit="eV")
    assert [g.z.tolist() for g in data.groups] == [water[0].numbers.tolist(), methane[0].numbers.tolist()]
    np.testing.assert_allclose(data.groups[1].forces[1], methane[1].get_forces())


def test_pickled_npz_is_refused_without_unpickling(tmp_path):
    np.savez(tmp_path / "obj.npz", R=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="pickled Python objects"):
        read_dataset(tmp_path / "obj.npz", energy_unit="eV")


def test_rmd17_split_file_and_archive_layout():
    split = read_dataset(RMD17_SPLIT)
    assert detect_format(RMD17_SPLIT) == "rmd17" and split.energy_unit == "kcal/mol"
    with pytest.raises(ValueError, match="rMD17 files are in kcal/mol, but eV was declared"):
        read_dataset(RMD17_SPLIT, energy_unit="eV")
    archive = read_dataset(ARCHIVE)
    assert detect_format(ARCHIVE) == "rmd17-archive" and archive.groups[0].name == "ethanol"
    with pytest.raises(ValueError, match=r"no molecule 'aspirin'.*\['ethanol'\]"):
        read_dataset(ARCHIVE, name="aspirin")


def test_unknown_format_and_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.xyz"):
        read_dataset(tmp_path / "nowhere.xyz")
    (tmp_path / "f.csv").write_text("1,2\n")
    with pytest.raises(ValueError, match=r"cannot tell the format.*--format"):
        read_dataset(tmp_path / "f.csv")
    with pytest.raises(ValueError, match="unknown data format 'hdf5'"):
        read_dataset(tmp_path / "f.csv", format="hdf5")


def test_non_finite_labels_are_refused(tmp_path):
    frames = _labelled("H2O", 2, 10)
    frames[1].calc.results["energy"] = float("nan")
    ase.io.write(tmp_path / "nan.extxyz", frames)
    with pytest.raises(ValueError, match="energy of frame 1 is not finite"):
        read_dataset(tmp_path / "nan.extxyz")
