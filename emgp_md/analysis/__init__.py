"""Analysis of MD trajectories: numbers only (the figures are in :mod:`emgp_md.plots.md`).

- :mod:`~emgp_md.analysis.trajectory`: energy and temperature traces, NVE drift, h(r) against
  reference frames, bond stability and stable time of one trajectory.
- :mod:`~emgp_md.analysis.stability`: settings and summary table of the 500 K stability runs.

The public names of both modules are re-exported here, so ``from emgp_md.analysis import X`` works.
"""

from __future__ import annotations

from emgp_md.analysis.stability import StabilitySettings, stability_table
from emgp_md.analysis.trajectory import (
    HistogramComparison,
    MDAnalysis,
    MDLog,
    Stability,
    analyze_trajectory,
    bond_stability,
    compare_histograms,
    distance_histogram,
    nve_drift_meV_per_atom_ps,
    pair_distances,
    read_md_log,
    stable_time_ps,
)

__all__ = [
    "HistogramComparison",
    "MDAnalysis",
    "MDLog",
    "Stability",
    "StabilitySettings",
    "analyze_trajectory",
    "bond_stability",
    "compare_histograms",
    "distance_histogram",
    "nve_drift_meV_per_atom_ps",
    "pair_distances",
    "read_md_log",
    "stability_table",
    "stable_time_ps",
]
