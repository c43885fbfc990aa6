"""MD stability of shipped models (``../shared/docs/benchmarks.md``, "Physics and stability").

For each molecule: Langevin MD at 500 K with 0.5 fs steps from the shipped reference geometry,
then :func:`emgp_md.analysis.analyze_trajectory` against the molecule's rMD17 frames: the stable time
(first frame where any starting bond deviates by more than 0.5 Å; the run length when none does) and
the agreement of the interatomic-distance distribution h(r) with the reference frames. One run per
molecule is written to ``<out>/<molecule>.*``; a molecule whose ``.json`` summary exists is skipped,
so an interrupted campaign continues where it stopped.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


@dataclass
class StabilitySettings:
    """Settings of one stability run (ASE units at the boundary)."""

    temperature_K: float = 500.0
    timestep_fs: float = 0.5
    time_ps: float = 20.0
    friction_per_fs: float = 0.01
    interval: int = 20
    seed: int = 0
    dtype: str = "float32"
    threshold_A: float = 0.5

    @property
    def steps(self) -> int:
        """Number of MD steps of ``time_ps`` at ``timestep_fs``."""
        return round(self.time_ps * 1000.0 / self.timestep_fs)


def run_stability(molecule: str, out_dir: str | Path, settings: StabilitySettings,
                  reference_npz: str | Path | None = None, progress: bool = True) -> dict[str, Any]:
    """Run (or reuse) the 500 K stability MD of one shipped molecule and analyse it.

    Returns
    -------
    dict
        :meth:`emgp_md.analysis.MDAnalysis.summary` plus ``molecule``, ``md_wall_s`` and
        ``steps_per_s``; also written to ``<out_dir>/<molecule>_analysis.json``.
    """
    from emgp_md.analysis import analyze_trajectory
    from emgp_md.calculator import EMGPCalculator
    from emgp_md.data.rmd17 import load_frames, split_path
    from emgp_md.landscape_plots import plot_md_analysis
    from emgp_md.md import run_md
    from emgp_md.plotting import save_figure
    from emgp_md.pretrained import load_structure

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary_path = out / f"{molecule}_analysis.json"
    if summary_path.exists():
        log.info("skip %s: %s exists", molecule, summary_path)
        return json.loads(summary_path.read_text())
    atoms = load_structure(molecule)
    atoms.calc = EMGPCalculator(molecule, dtype=settings.dtype)
    t0 = time.perf_counter()
    result = run_md(atoms, out / molecule, "langevin", settings.temperature_K, settings.timestep_fs, settings.steps,
                    settings.friction_per_fs, settings.seed, settings.interval, progress=progress)
    wall = time.perf_counter() - t0
    reference = load_frames(reference_npz or split_path(molecule, "test", 1))
    analysis = analyze_trajectory(result.trajectory, result.log_csv, reference, settings.threshold_A)
    save_figure(plot_md_analysis(analysis), out / f"{molecule}_analysis.png", dpi=110)
    summary = {"molecule": molecule, **analysis.summary(), "md_wall_s": wall, "steps_per_s": settings.steps / wall,
               "settings": settings.__dict__}
    data = json.loads(analysis.to_json())
    data.update(summary)
    summary_path.write_text(json.dumps(data, indent=1) + "\n")
    return data


def stability_table(summaries: list[dict[str, Any]]) -> str:
    """Markdown table: stable time, run length, mean T, max bond deviation, h(r) overlap and JS divergence."""
    header = ("| molecule | simulated (ps) | stable time (ps) | mean T (K) | max bond deviation (Å) | "
              "h(r) overlap | h(r) JS divergence (bits) | MD steps/s |")
    lines = [header, "|---|---|---|---|---|---|---|---|"]
    for s in summaries:
        hr = s.get("h_r") or {}
        lines.append(f"| {s['molecule']} | {s['duration_ps']:.1f} | {s['stable_time_ps']:.1f} | "
                     f"{s['mean_temperature_K']:.0f} | {s['max_bond_deviation_A']:.2f} | "
                     f"{hr.get('overlap', float('nan')):.3f} | {hr.get('js_divergence', float('nan')):.4f} | "
                     f"{s['steps_per_s']:.0f} |")
    return "\n".join(lines)


def plot_hr_grid(summaries: list[dict[str, Any]]) -> Any:
    """One panel per molecule: h(r) of the 500 K MD against the rMD17 reference frames."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(summaries)
    cols = min(4, n)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
    for ax, s in zip(axes.flat, summaries):
        curves = s["h_r_curves"]
        ax.plot(curves["r_A"], curves["reference_per_A"], color="k", lw=1.2, label="rMD17 frames")
        ax.plot(curves["r_A"], curves["model_per_A"], color="#dd8452", lw=1.0, ls="--", label="500 K MD (model)")
        ax.set_title(f"{s['molecule']}: stable {s['stable_time_ps']:.0f}/{s['duration_ps']:.0f} ps", fontsize=9)
        ax.set_xlabel("r (Å)")
        ax.set_ylabel("h(r) (1/Å)")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    return fig
