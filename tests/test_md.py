"""MD and relaxation wrappers, drift analysis, MD plot."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.lj import LennardJones
from ase.io import read

import emgp_md
from emgp_md import EMGPCalculator
from emgp_md.md import LOG_FIELDS, energy_drift_meV_per_atom_ps, run_md
from emgp_md.plots.md import plot_md_log, read_csv, save_figure
from emgp_md.relaxation import relax
from emgp_md.testing import assert_energy_conserved


def _rows(path):
    with open(path) as fh:
        reader = csv.DictReader(fh)
        return reader.fieldnames, list(reader)


def test_langevin_writes_traj_and_csv(small_checkpoint, ethanol, tmp_path):
    ethanol.calc = EMGPCalculator(model=small_checkpoint)
    res = run_md(
        ethanol,
        tmp_path / "out" / "eth",
        ensemble="langevin",
        temperature_K=300.0,
        timestep_fs=0.5,
        steps=6,
        interval=2,
        seed=1,
        progress=False,
    )
    assert res.steps == 6
    assert res.trajectory == tmp_path / "out" / "eth.traj" and res.trajectory.is_file()
    assert res.log_csv == tmp_path / "out" / "eth.csv" and res.log_csv.is_file()
    fields, rows = _rows(res.log_csv)
    assert fields == LOG_FIELDS == ["step", "time_ps", "epot_eV", "ekin_eV", "etot_eV", "temperature_K"]
    assert [int(r["step"]) for r in rows] == [0, 2, 4, 6]
    for r in rows:
        vals = {k: float(v) for k, v in r.items()}
        assert all(np.isfinite(v) for v in vals.values())
        assert vals["time_ps"] == pytest.approx(vals["step"] * 0.5e-3)
        assert vals["etot_eV"] == pytest.approx(vals["epot_eV"] + vals["ekin_eV"])
        assert vals["temperature_K"] > 0
    frames = read(res.trajectory, index=":")
    assert len(frames) == len(rows)
    assert not np.allclose(frames[0].positions, frames[-1].positions)
    # FixCom: the Langevin run keeps the centre of mass
    np.testing.assert_allclose(frames[-1].get_center_of_mass(), frames[0].get_center_of_mass(), atol=1e-8)


def test_md_is_seeded(small_checkpoint, ethanol, tmp_path):
    finals = []
    for k in range(2):
        atoms = ethanol.copy()
        atoms.calc = EMGPCalculator(model=small_checkpoint)
        finals.append(run_md(atoms, tmp_path / f"run{k}", steps=3, interval=1, seed=5, progress=False).atoms.positions)
    np.testing.assert_array_equal(finals[0], finals[1])


def test_run_md_errors(small_checkpoint, ethanol, tmp_path):
    with pytest.raises(ValueError, match="calculator"):
        run_md(ethanol, tmp_path / "x", steps=1, progress=False)
    ethanol.calc = EMGPCalculator(model=small_checkpoint)
    with pytest.raises(ValueError, match="ensemble"):
        run_md(ethanol, tmp_path / "x", ensemble="npt", steps=1, progress=False)
    with pytest.raises(ValueError, match="timestep_fs"):
        run_md(ethanol, tmp_path / "x", timestep_fs=0.0, steps=1, progress=False)


def test_nve_small_model_conserves_energy(small_checkpoint, ethanol, tmp_path):
    # a random model does not hold the molecule together: bonds break, which is not this test's subject
    ethanol.calc = EMGPCalculator(model=small_checkpoint, dtype="float64", on_bond_change="warn")
    res = run_md(
        ethanol,
        tmp_path / "nve",
        ensemble="nve",
        temperature_K=300.0,
        timestep_fs=0.5,
        steps=100,
        interval=2,
        seed=0,
        progress=False,
    )
    cols = read_csv(res.log_csv)
    assert_energy_conserved(np.array(cols["time_ps"]), np.array(cols["etot_eV"]), len(ethanol), 1.0)
    # velocity Verlet with exact forces: total-energy noise far below the potential-energy swing
    assert np.ptp(cols["epot_eV"]) > 1e-2
    assert np.ptp(cols["etot_eV"]) < 1e-3 * np.ptp(cols["epot_eV"])


# --------------------------------------------------------------------------- relaxation
def _lj_trimer(seed: int) -> Atoms:
    rng = np.random.default_rng(seed)
    pos = np.array([[0.0, 0.0, 0.0], [1.3, 0.0, 0.0], [0.6, 1.0, 0.0]]) + rng.normal(scale=0.05, size=(3, 3))
    atoms = Atoms("Ar3", positions=pos)
    atoms.calc = LennardJones(sigma=1.0, epsilon=1.0, rc=10.0)
    return atoms


@pytest.mark.parametrize("optimizer", ["BFGS", "FIRE"])
def test_relax_converges_lj_trimer(optimizer):
    atoms = _lj_trimer(seed=0)
    res = relax(atoms, fmax_eV_per_A=1e-3, steps=500, optimizer=optimizer)
    assert res.converged and 0 < res.steps < 500
    assert res.fmax_eV_per_A < 1e-3
    assert res.fmax_eV_per_A == pytest.approx(np.linalg.norm(atoms.get_forces(), axis=1).max())
    # the LJ trimer minimum is an equilateral triangle of side 2^(1/6) σ, energy -3 ε (+ cutoff shift)
    d = atoms.get_all_distances()[np.triu_indices(3, 1)]
    np.testing.assert_allclose(d, 2 ** (1 / 6), atol=1e-3)
    assert res.energy_eV == pytest.approx(atoms.get_potential_energy())


def test_relax_errors(ethanol):
    with pytest.raises(ValueError, match="calculator"):
        relax(ethanol)
    atoms = _lj_trimer(seed=1)
    with pytest.raises(ValueError, match="optimizer"):
        relax(atoms, optimizer="LBFGS-nope")


def test_relax_with_emgp_calculator_lowers_energy(small_checkpoint, ethanol):
    ethanol.calc = EMGPCalculator(model=small_checkpoint, dtype="float64")
    e0 = ethanol.get_potential_energy()
    assert np.abs(ethanol.get_forces()).max() > 1e-3
    res = relax(ethanol, fmax_eV_per_A=1e-5, steps=5, optimizer="FIRE")
    assert res.steps == 5 and not res.converged
    assert res.energy_eV < e0


# --------------------------------------------------------------------------- analysis
def test_drift_recovers_slope_exactly():
    t = np.linspace(0.0, 2.5, 101)
    n_atoms, slope_meV_per_atom_ps = 9, 0.37
    etot = -123.4 + slope_meV_per_atom_ps * 1e-3 * n_atoms * t
    assert energy_drift_meV_per_atom_ps(t, etot, n_atoms) == pytest.approx(slope_meV_per_atom_ps, rel=1e-9)


def test_assert_energy_conserved_bounds(rng):
    t = np.linspace(0.0, 1.0, 50)
    noisy_flat = 5.0 + rng.normal(scale=1e-5, size=t.size)
    drift = assert_energy_conserved(t, noisy_flat, 10, bound_meV_per_atom_ps=0.1)
    assert abs(drift) < 0.1
    with pytest.raises(AssertionError, match="exceeds"):
        assert_energy_conserved(t, 5.0 + 0.02 * t, 10, bound_meV_per_atom_ps=1.0)  # 2 meV/atom/ps


def test_plot_md_log_writes_png(small_checkpoint, ethanol, tmp_path):
    ethanol.calc = EMGPCalculator(model=small_checkpoint)
    res = run_md(ethanol, tmp_path / "p", steps=4, interval=1, progress=False)
    import matplotlib.pyplot as plt

    fig = plot_md_log(res.log_csv)
    assert len(fig.axes) == 2
    png = save_figure(fig, tmp_path / "p.png", dpi=50)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not plt.fignum_exists(fig.number)  # closed: loops that plot do not accumulate figures


# --------------------------------------------------------------------------- shipped model
def test_nve_drift_shipped_ethanol(tmp_path):
    if "ethanol" not in emgp_md.available_models():
        pytest.skip("no shipped model yet: 'ethanol' is not in emgp_md/pretrained/index.json")
    from emgp_md.pretrained import reference_atoms

    atoms = reference_atoms("ethanol")
    atoms.calc = EMGPCalculator("ethanol", dtype="float64")
    res = run_md(
        atoms,
        tmp_path / "nve",
        ensemble="nve",
        temperature_K=300.0,
        timestep_fs=0.5,
        steps=200,
        interval=2,
        seed=0,
        progress=False,
    )
    cols = read_csv(res.log_csv)
    assert len(cols["step"]) == 101
    drift = assert_energy_conserved(np.array(cols["time_ps"]), np.array(cols["etot_eV"]), len(atoms), 1.0)
    assert np.isfinite(drift)
    assert max(cols["temperature_K"]) < 2000  # no blow-up


@pytest.mark.slow
def test_nve_drift_shipped_aspirin_long(tmp_path):
    """2000 steps (1 ps) of float64 NVE on the shipped aspirin model: drift below 1 meV/atom/ps."""
    if "aspirin" not in emgp_md.available_models():
        pytest.skip("no shipped model yet: 'aspirin' is not in emgp_md/pretrained/index.json")
    from emgp_md.pretrained import reference_atoms

    atoms = reference_atoms("aspirin")
    atoms.calc = EMGPCalculator("aspirin", dtype="float64")
    res = run_md(
        atoms,
        tmp_path / "nve",
        ensemble="nve",
        temperature_K=300.0,
        timestep_fs=0.5,
        steps=2000,
        interval=10,
        seed=0,
        progress=False,
    )
    cols = read_csv(res.log_csv)
    assert len(cols["step"]) == 201
    assert_energy_conserved(np.array(cols["time_ps"]), np.array(cols["etot_eV"]), len(atoms), 1.0)
    assert max(cols["temperature_K"]) < 2000
