"""500 K stability workflow: MD of a shipped model, analysis against reference frames, resumable."""

from __future__ import annotations

from pathlib import Path

from emgp_md.analysis.stability import StabilitySettings, stability_table
from emgp_md.plots.reports import plot_hr_grid
from emgp_md.pretrained import available_models
from emgp_md.reproduce.stability import run_stability


def test_stability_run_analysis_and_skip(tmp_path: Path, tiny_rmd17: Path) -> None:
    settings = StabilitySettings(time_ps=0.05, interval=10)
    assert settings.steps == 100
    s = run_stability("ethanol", tmp_path, settings, reference_npz=tiny_rmd17, progress=False)
    assert s["molecule"] == "ethanol" and s["n_frames"] == 11
    assert abs(s["duration_ps"] - 0.05) < 1e-9
    assert s["stable_time_ps"] == s["duration_ps"]  # a shipped model keeps ethanol's bonds for 50 fs
    assert 0.0 < s["h_r"]["overlap"] <= 1.0
    assert s["model_sha256"] == available_models()["ethanol"]["sha256"]  # which default was run
    summary = tmp_path / "ethanol_analysis.json"
    stamp = summary.stat().st_mtime_ns
    again = run_stability("ethanol", tmp_path, settings, reference_npz=tiny_rmd17, progress=False)
    assert again["stable_time_ps"] == s["stable_time_ps"] and summary.stat().st_mtime_ns == stamp  # skipped
    assert "| ethanol | 0.1 |" in stability_table([s])
    plot_hr_grid([s]).savefig(tmp_path / "hr.png")
    assert (tmp_path / "hr.png").stat().st_size > 0
