"""Figures of an ``emgp-md learn`` run: test error against labels per round, committee disagreement along MD."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from emgp_md.plots import pyplot as _pyplot

__all__ = ["plot_disagreement", "plot_error_vs_labels"]


def plot_error_vs_labels(rounds: list[dict[str, Any]], level_of_theory: str) -> Any:
    """Test force MAE (member 0, and the committee's range) against the labels used, one point per round."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.2))
    n = [r["n_labels"] for r in rounds]
    f = [np.nan if r["test_force_mae_meV_A"] is None else r["test_force_mae_meV_A"] for r in rounds]
    ax.plot(n, f, "o-", label="model (committee member 0)")
    for r in rounds:
        members = r.get("test_force_mae_meV_A_members") or []
        if members:
            ax.vlines(r["n_labels"], min(members), max(members), color="grey", lw=3, alpha=0.4)
    ax.set_xlabel(f"training labels ({level_of_theory})")
    ax.set_ylabel("test force MAE (meV/Å)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_title("Error vs labels per round (grey: committee range)", fontsize=10)
    ax.legend(fontsize=9)
    fig.tight_layout()
    return fig


def plot_disagreement(round_dirs: list[Path], timestep_fs: float, threshold_eV_A: float) -> Any:
    """Committee force disagreement (max over atoms) along each round's probe MD, with the threshold."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for d in round_dirs:
        path = d / "probe_history.npz"
        if not path.is_file():
            continue
        score = np.load(path)["disagreement_eV_A"]
        ax.plot(np.arange(len(score)) * timestep_fs / 1000.0, score, lw=0.8, label=d.name.replace("_", " "))
    ax.axhline(threshold_eV_A, color="k", ls="--", lw=1, label="threshold")
    ax.set_xlabel("probe MD time (ps)")
    ax.set_ylabel("force disagreement (eV/Å)")
    ax.set_yscale("log")
    ax.set_title("Committee disagreement along the probe runs", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
