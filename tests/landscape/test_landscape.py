"""Energy landscapes: directions, grids, scans, PC-plane maps, their files, plots and the CLI."""

from __future__ import annotations

import json
from typing import ClassVar

import ase.io
import numpy as np
import pytest
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.lj import LennardJones

from emgp_md.calculator import EMGPCalculator
from emgp_md.cli import build_parser
from emgp_md.data.rmd17 import load_frames
from emgp_md.data.topology import bonds_from_distances
from emgp_md.landscape import (
    CalculatorEvaluator,
    Landscape2D,
    ModelEvaluator,
    Scan1D,
    count_local_minima,
    energy_grid,
    hessian_modes,
    kabsch_align,
    pc_energy_map,
    pca_directions,
    random_directions,
    rigid_motion_basis,
    save_landscapes,
    scan_angle,
    scan_bond,
    scan_dihedral,
)
from emgp_md.testing import random_orthogonal


class HarmonicPairs(Calculator):
    """``E = k/2 Σ_pairs (|x_i - x_j| - r0_ij)²`` (eV, Å) with analytic forces."""

    implemented_properties: ClassVar[list[str]] = ["energy", "free_energy", "forces"]

    def __init__(self, pairs: np.ndarray, r0_A: np.ndarray, k_eV_per_A2: float = 5.0) -> None:
        super().__init__()
        self.pairs, self.r0, self.k = np.asarray(pairs), np.asarray(r0_A), k_eV_per_A2

    @classmethod
    def at_rest(cls, pos: np.ndarray, pairs: np.ndarray | None = None) -> HarmonicPairs:
        """All pairs (or the given ones) at rest in ``pos``: a unique minimum there, up to rigid motion."""
        pairs = np.stack(np.triu_indices(len(pos), k=1), axis=1) if pairs is None else pairs
        return cls(pairs, np.linalg.norm(pos[pairs[:, 0]] - pos[pairs[:, 1]], axis=1))

    def calculate(self, atoms=None, properties=None, system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        pos = self.atoms.positions
        vec = pos[self.pairs[:, 0]] - pos[self.pairs[:, 1]]
        r = np.linalg.norm(vec, axis=1)
        dr = r - self.r0
        grad = (self.k * dr / r)[:, None] * vec  # dE/dx_i of each pair
        forces = np.zeros_like(pos)
        np.add.at(forces, self.pairs[:, 0], -grad)
        np.add.at(forces, self.pairs[:, 1], grad)
        energy = 0.5 * self.k * float(np.sum(dr**2))
        self.results = {"energy": energy, "free_energy": energy, "forces": forces}

    def torch_fn(self):
        """The same energy as a torch function of (n_atoms, 3) positions."""
        i, j = torch.as_tensor(self.pairs[:, 0]), torch.as_tensor(self.pairs[:, 1])
        r0 = torch.as_tensor(self.r0)
        return lambda pos: 0.5 * self.k * (((pos[i] - pos[j]).norm(dim=-1) - r0) ** 2).sum()


def _rigid_part(d: np.ndarray, pos: np.ndarray) -> float:
    basis = rigid_motion_basis(pos)
    return float(np.abs(d.reshape(len(d), -1) @ basis.T).max())


def _gram(d: np.ndarray) -> np.ndarray:
    flat = d.reshape(len(d), -1)
    return flat @ flat.T


# --------------------------------------------------------------------------- directions
def test_rigid_basis_orthonormal_and_complete(ethanol, rng):
    pos = ethanol.positions
    basis = rigid_motion_basis(pos)
    assert basis.shape == (6, 27)
    np.testing.assert_allclose(basis @ basis.T, np.eye(6), atol=1e-12)
    omega, shift = rng.normal(size=3), rng.normal(size=3)
    motion = (np.cross(omega, pos - pos.mean(axis=0)) + shift).reshape(-1)  # infinitesimal rotation + translation
    np.testing.assert_allclose(basis.T @ (basis @ motion), motion, atol=1e-12)
    linear = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 1.16], [0.0, 0.0, 2.32]])
    assert rigid_motion_basis(linear).shape == (5, 9)


def test_random_directions_orthonormal_rigid_free_rms_one(ethanol):
    pos, n_atoms = ethanol.positions, len(ethanol)
    d = random_directions(pos, seed=3)
    assert d.shape == (2, n_atoms, 3)
    np.testing.assert_allclose(_gram(d), n_atoms * np.eye(2), atol=1e-10)  # orthogonal, norm √N
    np.testing.assert_allclose(np.sqrt((d**2).sum(axis=2).mean(axis=1)), 1.0, atol=1e-12)  # 1 Å RMS per atom
    assert _rigid_part(d, pos) < 1e-10
    np.testing.assert_array_equal(d, random_directions(pos, seed=3))
    assert not np.allclose(d, random_directions(pos, seed=4))


def test_kabsch_undoes_rotation_and_translation(ethanol, rng):
    pos = ethanol.positions
    frames = np.stack([pos @ random_orthogonal(rng, reflect=False).T + rng.normal(size=3) for _ in range(4)])
    np.testing.assert_allclose(kabsch_align(frames, pos), np.broadcast_to(pos, frames.shape), atol=1e-10)


def test_pca_recovers_planted_modes(ethanol, rng):
    pos = ethanol.positions
    u = random_directions(pos, seed=7)
    c = rng.normal(size=(60, 2)) * [0.05, 0.02]  # Å RMS amplitudes, PC 1 dominant
    frames = pos + np.einsum("fk,kai->fai", c, u)
    frames = np.stack([f @ random_orthogonal(rng, reflect=False).T + rng.normal(size=3) for f in frames])
    pca = pca_directions(frames, reference=pos)
    assert _rigid_part(pca.directions, pos) < 1e-10
    np.testing.assert_allclose(_gram(pca.directions), len(pos) * np.eye(2), atol=1e-10)
    overlap = np.abs(np.einsum("kai,kai->k", pca.directions, u)) / len(pos)
    assert np.all(overlap > 0.99), overlap
    mixing = np.einsum("kai,lai->kl", u, pca.directions) / len(pos)  # planted → PCA basis (≈ ±identity)
    np.testing.assert_allclose(pca.coords_A, c @ mixing, atol=1e-3)
    assert pca.explained_variance_ratio[0] > pca.explained_variance_ratio[1]


def test_pca_on_rmd17_frames(tiny_rmd17):
    coords = load_frames(tiny_rmd17).coords
    pca = pca_directions(coords)
    assert pca.directions.shape == (2, coords.shape[1], 3) and pca.coords_A.shape == (len(coords), 2)
    assert _rigid_part(pca.directions, coords[0]) < 1e-10
    np.testing.assert_allclose(_gram(pca.directions), coords.shape[1] * np.eye(2), atol=1e-10)
    np.testing.assert_allclose(pca.coords_A[0], 0.0, atol=1e-12)  # the reference is the origin


def test_hessian_autograd_equals_finite_differences(ethanol):
    calc = HarmonicPairs.at_rest(ethanol.positions)
    auto = hessian_modes(calc.torch_fn(), ethanol)
    fd = hessian_modes(calc, ethanol)  # ASE calculator: finite differences of forces
    np.testing.assert_allclose(auto.all_eigenvalues_eV_per_A2, fd.all_eigenvalues_eV_per_A2, rtol=1e-5, atol=1e-6)
    assert len(auto.all_eigenvalues_eV_per_A2) == 3 * len(ethanol) - 6
    assert np.all(auto.all_eigenvalues_eV_per_A2 > 0)  # a true minimum, rigid zero modes removed
    assert _rigid_part(auto.directions, ethanol.positions) < 1e-10
    np.testing.assert_allclose(_gram(auto.directions), len(ethanol) * np.eye(2), atol=1e-10)
    # the grid curvature along a mode is N·λ (1 Å RMS per atom normalisation)
    land = energy_grid(calc.torch_fn(), ethanol, *auto.directions, extent_A=0.004, n=5)
    s = land.summary()
    np.testing.assert_allclose([s.curvature_a, s.curvature_b], len(ethanol) * auto.eigenvalues_eV_per_A2, rtol=1e-3)


def test_hessian_of_model_matches_its_calculator(small_checkpoint, ethanol):
    calc = EMGPCalculator(model=small_checkpoint, dtype="float64")
    auto = hessian_modes(calc, ethanol, modes=(0, 1, 2))
    fd = hessian_modes(CalculatorEvaluator(calc, ethanol, delta_A=1e-4), ethanol, modes=(0, 1, 2))
    np.testing.assert_allclose(auto.all_eigenvalues_eV_per_A2, fd.all_eigenvalues_eV_per_A2, atol=1e-6)
    assert auto.directions.shape == (3, len(ethanol), 3)
    assert _rigid_part(auto.directions, ethanol.positions) < 1e-10


# --------------------------------------------------------------------------- grids
def test_grid_centre_is_calculator_energy_and_batches_match(small_checkpoint, ethanol):
    # grid corners stretch bonds past the bond-change limit: compare numbers on the frozen graph
    calc = EMGPCalculator(model=small_checkpoint, dtype="float64", on_bond_change="warn")
    d1, d2 = random_directions(ethanol.positions, seed=0)
    land = energy_grid(calc, ethanol, d1, d2, extent_A=0.5, n=5, method="random (seed 0)")
    atoms = ethanol.copy()
    atoms.calc = calc
    assert land.e0 == pytest.approx(atoms.get_potential_energy(), abs=1e-10)
    assert land.energies[2, 2] == pytest.approx(0.0, abs=1e-10)
    assert land.energy_unit == "eV" and land.label == "tiny-test"
    idx = [(0, 0), (4, 1), (1, 3), (3, 4)]
    points = np.stack([ethanol.positions + land.a_A[i] * d1 + land.b_A[j] * d2 for i, j in idx])
    one_by_one = CalculatorEvaluator(calc, ethanol)(points) - land.e0
    np.testing.assert_allclose([land.energies[i, j] for i, j in idx], one_by_one, atol=1e-10)
    from_file = ModelEvaluator.from_checkpoint(small_checkpoint, ethanol)(points) - land.e0
    np.testing.assert_allclose(from_file, one_by_one, atol=1e-10)


def test_grid_finds_displaced_minimum(ethanol):
    calc = HarmonicPairs.at_rest(ethanol.positions)
    d1, d2 = random_directions(ethanol.positions, seed=1)
    start = ethanol.copy()
    start.positions = ethanol.positions - 0.4 * d1 + 0.2 * d2  # the minimum sits at (a, b) = (0.4, -0.2)
    land = energy_grid(calc, start, d1, d2, extent_A=0.6, n=13)
    s = land.summary()
    assert (s.min_a_A, s.min_b_A) == (pytest.approx(0.4), pytest.approx(-0.2))
    assert s.min_distance_A == pytest.approx(np.hypot(0.4, 0.2))
    assert s.energy_drop == pytest.approx(-land.e0, abs=1e-9) and land.e0 > 0
    assert s.n_local_minima == 1 and not s.min_on_edge


def test_count_local_minima_double_well():
    x = np.linspace(-2, 2, 41)
    e = (x[:, None] ** 2 - 1) ** 2 + 0.5 * x[None, :] ** 2
    assert count_local_minima(e) == 2
    assert count_local_minima(x[:, None] ** 2 + x[None, :] ** 2) == 1


def test_grid_rejects_even_n_and_bad_shapes(ethanol):
    calc = HarmonicPairs.at_rest(ethanol.positions)
    d1, d2 = random_directions(ethanol.positions)
    with pytest.raises(ValueError, match="odd"):
        energy_grid(calc, ethanol, d1, d2, n=4)
    with pytest.raises(ValueError, match="do not fit"):
        energy_grid(calc, ethanol, d1[:3], d2, n=5)


def test_landscape_files_roundtrip(ethanol, tmp_path):
    calc = HarmonicPairs.at_rest(ethanol.positions)
    d1, d2 = random_directions(ethanol.positions)
    land = energy_grid(calc, ethanol, d1, d2, extent_A=0.3, n=5, method="random (seed 0)", label="harmonic")
    land.save_npz(tmp_path / "one.npz")
    back = Landscape2D.load_npz(tmp_path / "one.npz")
    np.testing.assert_array_equal(back.energies, land.energies)
    assert (back.method, back.label, back.e0) == (land.method, land.label, land.e0)
    paths = save_landscapes(tmp_path / "both", {"x": land, "y": land})
    assert [p.suffix for p in paths] == [".npz", ".csv", ".json"]
    np.testing.assert_array_equal(Landscape2D.load_npz(paths[0], label="y").directions, land.directions)
    with pytest.raises(ValueError, match="several"):
        Landscape2D.load_npz(paths[0])
    rows = paths[1].read_text().splitlines()
    assert rows[0] == "model,a_A,b_A,energy,energy_unit" and len(rows) == 1 + 2 * 25
    summary = json.loads(paths[2].read_text())
    assert summary["models"]["x"]["min_distance_A"] == pytest.approx(0.0)


# --------------------------------------------------------------------------- scans
def test_lj_dimer_bond_scan_finds_minimum(tmp_path):
    dimer = Atoms("Ar2", positions=[[0, 0, 0], [0, 0, 1.5]])
    dimer.calc = LennardJones(sigma=1.0, epsilon=1.0, rc=10.0)
    scan = scan_bond(dimer, (0, 1), np.linspace(1.0, 1.4, 41))
    np.testing.assert_allclose(scan.values, np.linspace(1.0, 1.4, 41), atol=1e-12)
    r_min, _ = scan.minimum()
    assert r_min == pytest.approx(2 ** (1 / 6), abs=1e-3)
    scan.save_npz(tmp_path / "scan.npz")
    back = Scan1D.load_npz(tmp_path / "scan.npz")
    np.testing.assert_array_equal(back.energies_eV, scan.energies_eV)
    scan.to_csv(tmp_path / "scan.csv")
    assert (tmp_path / "scan.csv").read_text().startswith("value_A,energy_eV,converged")


def test_harmonic_bond_scan_moves_the_fragment(ethanol):
    ethanol.calc = HarmonicPairs.at_rest(ethanol.positions, bonds_from_distances(ethanol.positions))
    r0 = ethanol.get_distance(0, 1)
    scan = scan_bond(ethanol, (0, 1), r0 + np.linspace(-0.2, 0.2, 9))
    assert scan.minimum()[0] == pytest.approx(r0, abs=1e-9)
    assert scan.energies_eV.min() == pytest.approx(0.0, abs=1e-12)  # only the scanned bond is strained


def test_relaxed_angle_and_dihedral_scans(ethanol):
    # a harmonic bond model holds the molecule together (a random network's relaxation tears it apart,
    # which the calculator now refuses)
    ethanol.calc = HarmonicPairs.at_rest(ethanol.positions, bonds_from_distances(ethanol.positions))
    angles = scan_angle(ethanol, (1, 0, 2), [100.0, 105.0, 110.0], relax=True, fmax_eV_per_A=0.01, steps=15)
    dihedrals = scan_dihedral(ethanol, (2, 0, 1, 8), [0.0, 120.0, 240.0], relax=True, fmax_eV_per_A=0.01, steps=15)
    for scan, targets in ((angles, [100.0, 105.0, 110.0]), (dihedrals, [0.0, 120.0, 240.0])):
        assert scan.relaxed and scan.converged.dtype == bool and np.all(np.isfinite(scan.energies_eV))
        np.testing.assert_allclose(scan.values, targets, atol=1e-3)  # the coordinate is held during relaxation
        assert np.all(np.diff(scan.values) > 0)
    rigid = scan_angle(ethanol, (1, 0, 2), [100.0, 105.0, 110.0])
    assert not rigid.relaxed and np.all(rigid.energies_eV >= angles.energies_eV - 1e-9)  # relaxing never raises E
    with pytest.raises(ValueError, match="distinct atom indices"):
        scan_angle(ethanol, (1, 1, 2), [100.0])


# --------------------------------------------------------------------------- PC-plane energies
def test_pc_energy_map(small_checkpoint, tiny_rmd17):
    frames = load_frames(tiny_rmd17)
    pcmap = pc_energy_map(small_checkpoint, frames)
    calc = EMGPCalculator(model=small_checkpoint, dtype="float64")
    atoms = Atoms(numbers=frames.z, positions=frames.coords[5])
    atoms.calc = calc
    assert pcmap.model_eV[5] == pytest.approx(atoms.get_potential_energy(), abs=1e-9)
    np.testing.assert_allclose(pcmap.error_eV, pcmap.model_eV - pcmap.reference_eV)
    assert pcmap.coords_A.shape == (len(frames), 2)
    assert pcmap.summary()["energy_mae_meV"] == pytest.approx(1e3 * np.abs(pcmap.error_eV).mean())


# --------------------------------------------------------------------------- plots
def test_landscape_plots_headless(ethanol, tiny_rmd17, small_checkpoint, tmp_path):
    from emgp_md.plots.landscape import plot_landscape, plot_landscapes, plot_pc_energy_map, plot_scans

    calc = HarmonicPairs.at_rest(ethanol.positions)
    d1, d2 = random_directions(ethanol.positions)
    land = energy_grid(calc, ethanol, d1, d2, extent_A=0.3, n=7, label="harmonic")
    other = energy_grid(calc.torch_fn(), ethanol, d1, d2, extent_A=0.3, n=7, label="torch")
    ethanol.calc = calc
    scan = scan_bond(ethanol, (0, 1), np.linspace(1.3, 1.7, 5))
    pcmap = pc_energy_map(small_checkpoint, load_frames(tiny_rmd17))
    figures = {
        "one": plot_landscape(land),
        "two": plot_landscapes({"a": land, "b": other}, shared_scale=True),
        "two_sep": plot_landscapes({"a": land, "b": other}),
        "scan": plot_scans(scan),
        "pcmap": plot_pc_energy_map(pcmap),
    }
    for name, fig in figures.items():
        fig.savefig(tmp_path / f"{name}.png", dpi=50)
        assert (tmp_path / f"{name}.png").stat().st_size > 1000
    labels = [ax.get_xlabel() + ax.get_ylabel() for ax in figures["one"].axes]
    assert any("Å" in lab for lab in labels) and any("eV" in lab for lab in labels)


# --------------------------------------------------------------------------- CLI
def _cli(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


def test_cli_landscape_random_two_models(small_checkpoint, ethanol, tmp_path):
    xyz = tmp_path / "ethanol.xyz"
    ase.io.write(xyz, ethanol)
    out = tmp_path / "land" / "eth"
    rc = _cli(
        [
            "landscape",
            str(xyz),
            "--model",
            f"A={small_checkpoint}",
            "--model",
            f"B={small_checkpoint}",
            "--n",
            "5",
            "--extent-A",
            "0.5",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    for suffix in (".png", ".npz", ".csv", ".json"):
        assert out.with_suffix(suffix).is_file(), suffix
    summary = json.loads(out.with_suffix(".json").read_text())
    assert set(summary["models"]) == {"A", "B"} and summary["grid"] == {"n": 5, "extent_A": 0.5}
    assert summary["models"]["A"] == summary["models"]["B"]


def test_cli_landscape_hessian_and_pca_with_error_map(small_checkpoint, tiny_rmd17, tmp_path):
    frames = load_frames(tiny_rmd17)
    xyz = tmp_path / "x0.xyz"
    ase.io.write(xyz, Atoms(numbers=frames.z, positions=frames.coords[0]))
    out = tmp_path / "hess"
    assert (
        _cli(
            [
                "landscape",
                str(xyz),
                "--model",
                str(small_checkpoint),
                "--directions",
                "hessian",
                "--n",
                "5",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert "Hessian modes 0, 1" in json.loads(out.with_suffix(".json").read_text())["method"]
    out = tmp_path / "pca"
    assert (
        _cli(
            [
                "landscape",
                str(xyz),
                "--model",
                str(small_checkpoint),
                "--directions",
                "pca",
                "--frames",
                str(tiny_rmd17),
                "--error-map",
                "--n",
                "5",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert (tmp_path / "pca_pcmap_tiny.png").is_file() and (tmp_path / "pca_pcmap.json").is_file()
    with pytest.raises(ValueError, match="needs --frames"):
        _cli(["landscape", str(xyz), "--model", str(small_checkpoint), "--directions", "pca", "--out", str(out)])
