"""MD stability numbers: the settings of a stability run and the table of their summaries.

A run becomes unstable at the first frame where any bond of the starting structure deviates from
its starting length by more than ``threshold_A`` (0.5 Å; Fu et al. 2023, "Forces are not enough");
see :func:`emgp_md.analysis.trajectory.bond_stability` and ``docs/benchmarks.md`` ("Physics and
stability"). The 500 K campaign over the shipped models is :func:`emgp_md.reproduce.stability.run_stability`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


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


def stability_table(summaries: list[dict[str, Any]]) -> str:
    """Markdown table: stable time, run length, mean T, max bond deviation, h(r) overlap and JS divergence."""
    header = (
        "| molecule | simulated (ps) | stable time (ps) | mean T (K) | max bond deviation (Å) | "
        "h(r) overlap | h(r) JS divergence (bits) | MD steps/s |"
    )
    lines = [header, "|---|---|---|---|---|---|---|---|"]
    for s in summaries:
        hr = s.get("h_r") or {}
        lines.append(
            f"| {s['molecule']} | {s['duration_ps']:.1f} | {s['stable_time_ps']:.1f} | "
            f"{s['mean_temperature_K']:.0f} | {s['max_bond_deviation_A']:.2f} | "
            f"{hr.get('overlap', float('nan')):.3f} | {hr.get('js_divergence', float('nan')):.4f} | "
            f"{s['steps_per_s']:.0f} |"
        )
    return "\n".join(lines)
