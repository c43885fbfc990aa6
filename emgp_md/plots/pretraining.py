"""Figures of pretraining diagnostics (:mod:`emgp_md.pretrain.diagnostics`)."""

from __future__ import annotations

from typing import Any

from emgp_md.plots import pyplot
from emgp_md.pretrain.diagnostics import LevelDiagnostics

__all__ = ["plot_diagnostics"]


def plot_diagnostics(diags: dict[str, LevelDiagnostics]) -> Any:
    """INP accuracy and force cosine against σ (log axis), one line per model."""
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for k, (name, d) in enumerate(diags.items()):
        c = f"C{k}"
        ax1.plot(d.sigma_A, d.inp_accuracy, marker=".", color=c, label=f"{name}: exact")
        ax1.plot(d.sigma_A, d.inp_within_2, ls="--", color=c, label=f"{name}: within ±2 levels")
        ax2.plot(d.sigma_A, d.cosine_riemann, marker=".", color=c, label=f"{name}: vs Riemann target s/σ")
        ax2.plot(d.sigma_A, d.cosine_gaussian, ls="--", color=c, label=f"{name}: vs Gaussian target −ξ")
    for ax in (ax1, ax2):
        ax.set_xscale("log")
        ax.set_xlabel("noise level σ (Å)")
        ax.legend(fontsize=7)
    ax1.set_ylabel("INP accuracy")
    ax2.set_ylabel("cosine(force, target)")
    fig.suptitle("Pretraining diagnostics per noise level")
    fig.tight_layout()
    return fig
