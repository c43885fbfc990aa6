"""MD analysis: log reading, drift, h(r), stable time, the analysis of a trajectory, its plot and CLI."""

from __future__ import annotations

import csv
import json

import ase.io
import numpy as np
import pytest
from ase import Atoms
from ase.io.trajectory import Trajectory

from emgp_md.analysis import (
    analyze_trajectory,
    bond_stability,
    compare_histograms,
    distance_histogram,
    nve_drift_meV_per_atom_ps,
    read_md_log,
    stable_time_ps,
)
from emgp_md.cli import build_parser
from emgp_md.data.rmd17 import Frames, load_frames
from emgp_md.md import LOG_FIELDS
from emgp_md.testing import random_orthogonal


def _write_log(path, time_ps, etot_eV, temperature_K=300.0):
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=LOG_FIELDS)
        writer.writeheader()
        for k, (t, e) in enumerate(zip(time_ps, etot_eV)):
            writer.writerow(
                {
                    "step": 10 * k,
                    "time_ps": t,
                    "epot_eV": e - 0.1,
                    "ekin_eV": 0.1,
                    "etot_eV": e,
                    "temperature_K": temperature_K,
                }
            )


def test_read_md_log_and_drift(tmp_path):
    t = np.linspace(0.0, 10.0, 101)
    etot = -5.0 + 0.009 * t + 1e-6 * np.sin(7 * t)  # 9 meV/ps over 9 atoms = 1 meV/atom/ps
    _write_log(tmp_path / "run.csv", t, etot)
    md_log = read_md_log(tmp_path / "run.csv")
    np.testing.assert_allclose(md_log.time_ps, t)
    assert md_log.step.dtype == np.int64 and md_log.step[-1] == 1000
    assert nve_drift_meV_per_atom_ps(md_log, n_atoms=9) == pytest.approx(1.0, rel=1e-3)
    (tmp_path / "bad.csv").write_text("step,time_ps\n0,0\n")
    with pytest.raises(ValueError, match="lacks columns"):
        read_md_log(tmp_path / "bad.csv")


def test_distance_histogram_of_rigid_triangle(rng):
    side = 1.52  # inside a bin, not on an edge
    tri = np.array([[0.0, 0.0, 0.0], [side, 0.0, 0.0], [side / 2, side * np.sqrt(3) / 2, 0.0]])
    frames = np.stack([tri @ random_orthogonal(rng).T + rng.normal(size=3) for _ in range(5)])
    r, h = distance_histogram(frames, bins=100, r_max_A=5.0)
    width = r[1] - r[0]
    assert np.sum(h * width) == pytest.approx(1.0)
    peak = np.nonzero(h)[0]
    assert len(peak) == 1 and abs(r[peak[0]] - side) <= width / 2
    _, h_short = distance_histogram(frames, bins=10, r_max_A=1.0)  # all distances beyond the range
    assert h_short.sum() == 0.0


def test_compare_histograms():
    h = np.array([0.0, 1.0, 1.0, 0.0])
    same = compare_histograms(h, h, 0.5)
    assert (same.overlap, same.js_divergence, same.mae_per_A) == (pytest.approx(1.0), pytest.approx(0.0), 0.0)
    apart = compare_histograms(np.array([2.0, 0, 0, 0]), np.array([0, 0, 0, 2.0]), 0.5)
    assert apart.overlap == 0.0 and apart.js_divergence == pytest.approx(1.0)


def _stretched_ethanol(ethanol, n_frames, per_frame_A):
    """Frames in which the O-H bond (atoms 2-3 of ase's ethanol) grows by ``per_frame_A`` per frame."""
    pos = ethanol.positions
    unit = (pos[3] - pos[2]) / np.linalg.norm(pos[3] - pos[2])
    frames = np.repeat(pos[None], n_frames, axis=0)
    frames[:, 3] += np.arange(n_frames)[:, None] * per_frame_A * unit
    return frames


def test_stable_time_detects_bond_break(ethanol):
    frames = _stretched_ethanol(ethanol, 10, 0.12)  # deviation 0.48 Å at frame 4, 0.60 Å at frame 5
    times = 0.1 + 0.05 * np.arange(10)
    st = bond_stability(frames, times, threshold_A=0.5)
    assert st.first_unstable_frame == 5
    assert st.stable_time_ps == pytest.approx(0.25)
    assert st.n_bonds == 8
    np.testing.assert_allclose(st.max_bond_deviation_A, 0.12 * np.arange(10), atol=1e-12)
    calm = _stretched_ethanol(ethanol, 10, 0.01)
    assert stable_time_ps(calm, times) == pytest.approx(0.45)  # nothing breaks: the whole run
    assert bond_stability(calm, times).first_unstable_frame is None


def _write_traj(path, ethanol, frames):
    with Trajectory(str(path), "w") as traj:
        for pos in frames:
            atoms = ethanol.copy()
            atoms.positions = pos
            traj.write(atoms)


def test_analyze_trajectory(ethanol, tmp_path, rng):
    frames = ethanol.positions + 0.02 * rng.normal(size=(12, len(ethanol), 3))
    _write_traj(tmp_path / "run.traj", ethanol, frames)
    times = 0.005 * np.arange(12)
    _write_log(tmp_path / "run.csv", times, -3.0 + 0.018 * times)  # found next to the trajectory
    result = analyze_trajectory(tmp_path / "run.traj", reference_frames=frames, bins=50, r_max_A=5.0)
    s = result.summary()
    assert s["n_frames"] == 12 and s["n_atoms"] == 9 and s["log"] == str(tmp_path / "run.csv")
    assert s["etot_drift_meV_per_atom_ps"] == pytest.approx(2.0)
    assert s["stable_time_ps"] == pytest.approx(times[-1]) and s["first_unstable_frame"] is None
    assert s["h_r"]["overlap"] == pytest.approx(1.0) and s["h_r"]["js_divergence"] == pytest.approx(0.0, abs=1e-12)
    data = json.loads(result.to_json(tmp_path / "a.json"))
    assert data == json.loads((tmp_path / "a.json").read_text()) and len(data["h_r_curves"]["r_A"]) == 50
    _write_log(tmp_path / "short.csv", times[:5], times[:5])
    with pytest.raises(ValueError, match="5 rows but the trajectory 12 frames"):
        analyze_trajectory(tmp_path / "run.traj", log_csv=tmp_path / "short.csv")


def test_analyze_without_log_needs_frame_interval(ethanol, tmp_path):
    _write_traj(tmp_path / "bare.traj", ethanol, np.repeat(ethanol.positions[None], 3, axis=0))
    with pytest.raises(ValueError, match="frame_interval_fs"):
        analyze_trajectory(tmp_path / "bare.traj")
    result = analyze_trajectory(tmp_path / "bare.traj", frame_interval_fs=5.0)
    np.testing.assert_allclose(result.times_ps, [0.0, 0.005, 0.01])
    assert np.all(np.isnan(result.etot_eV)) and result.summary()["etot_drift_meV_per_atom_ps"] is None
    benzene_like = Frames(np.array([6] * 9), np.zeros((1, 9, 3)), np.zeros(1), np.zeros((1, 9, 3)), "fake")
    with pytest.raises(ValueError, match="not the trajectory's molecule"):
        analyze_trajectory(tmp_path / "bare.traj", frame_interval_fs=5.0, reference_frames=benzene_like)


def test_md_analysis_plot_headless(ethanol, tmp_path):
    from emgp_md.plots.md import plot_md_analysis

    frames = _stretched_ethanol(ethanol, 8, 0.1)
    _write_traj(tmp_path / "run.traj", ethanol, frames)
    _write_log(tmp_path / "run.csv", 0.01 * np.arange(8), np.zeros(8))
    result = analyze_trajectory(tmp_path / "run.traj", reference_frames=frames[:1])
    fig = plot_md_analysis(result)
    fig.savefig(tmp_path / "md.png", dpi=50)
    assert (tmp_path / "md.png").stat().st_size > 1000
    assert "unstable" in fig.axes[2].get_title()


def test_cli_analyze_end_to_end(small_checkpoint, tiny_rmd17, tmp_path, capsys):
    from emgp_md.cli import main

    frames = load_frames(tiny_rmd17)
    xyz = tmp_path / "x0.xyz"
    ase.io.write(xyz, Atoms(numbers=frames.z, positions=frames.coords[0]))
    run = tmp_path / "md" / "run"
    assert (
        main(
            [
                "md",
                str(xyz),
                "--model",
                str(small_checkpoint),
                "--out",
                str(run),
                "--steps",
                "6",
                "--interval",
                "2",
                "--quiet",
                "--ensemble",
                "nve",
                "--dtype",
                "float64",
            ]
        )
        == 0
    )
    out = tmp_path / "an" / "run"
    args = build_parser().parse_args(
        ["analyze", str(run.with_suffix(".traj")), "--reference", str(tiny_rmd17), "--out", str(out)]
    )
    capsys.readouterr()
    assert args.func(args) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["n_frames"] == 4 and printed["h_r"] is not None
    assert out.with_suffix(".png").is_file()
    assert json.loads(out.with_suffix(".json").read_text())["stable_time_ps"] == pytest.approx(0.003)
