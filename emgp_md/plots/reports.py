"""Figures of the paper-reproduction reports (:mod:`emgp_md.reproduce`), drawn from plain numbers.

Phase B of the layout issue moves the MD17 and Figure 3 bar charts here as well.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from emgp_md.plots import pyplot

__all__ = ["plot_hr_grid"]


def plot_hr_grid(summaries: list[dict[str, Any]]) -> Any:
    """One panel per molecule: h(r) of the 500 K MD against the rMD17 reference frames."""
    plt = pyplot()

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
