"""Figures of MD logs, MD trajectory analyses (:mod:`emgp_md.analysis`) and fine-tuning learning
curves. Functions return ``Figure`` objects and never call ``show()``; pyplot comes from
:func:`emgp_md.plots.pyplot` (Agg backend)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from emgp_md.analysis.trajectory import MDAnalysis
from emgp_md.plots import pyplot as _pyplot
from emgp_md.plots import save_figure

__all__ = ["plot_learning_curve", "plot_md_analysis", "plot_md_log", "read_csv", "save_figure"]


def read_csv(path: str | Path) -> dict[str, list[float]]:
    """Numeric columns of a CSV log (non-numeric cells become NaN)."""
    with Path(path).open() as fh:
        rows = list(csv.DictReader(fh))
    cols: dict[str, list[float]] = {}
    for row in rows:
        for key, value in row.items():
            try:
                cols.setdefault(key, []).append(float(value))
            except (TypeError, ValueError):
                cols.setdefault(key, []).append(float("nan"))
    return cols


def _column_text(path: str | Path, column: str) -> list[str]:
    with Path(path).open() as fh:
        return [row.get(column) or "" for row in csv.DictReader(fh)]


def plot_learning_curve(log_csv: str | Path) -> Any:
    """Training loss and validation energy/force MAE per epoch from a fine-tuning ``log.csv``."""
    plt = _pyplot()
    cols = read_csv(log_csv)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(cols["epoch"], cols["train_loss"], label="train loss")
    ax1.plot(cols["epoch"], cols["val_loss"], label="validation loss (weighted L1, normalised)")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("loss (normalised units)")
    ax1.set_yscale("log")
    ax1.legend()
    kinds = _column_text(log_csv, "loss_kind")
    for k in range(1, len(kinds)):
        if kinds[k] != kinds[k - 1]:
            for ax in (ax1, ax2):
                ax.axvline(cols["epoch"][k], color="grey", ls=":", lw=1)
            ax1.annotate(
                f" {kinds[k - 1]} → {kinds[k]} loss",
                (cols["epoch"][k], ax1.get_ylim()[0]),
                fontsize=8,
                color="grey",
                ha="left",
                va="bottom",
            )
    ax2.plot(cols["epoch"], cols["val_force_mae"], label="force MAE (kcal/mol/Å)")
    ax2.plot(cols["epoch"], cols["val_energy_mae"], label="energy MAE (kcal/mol)")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("validation MAE")
    ax2.set_yscale("log")
    ax2.legend()
    fig.suptitle(f"Fine-tuning: {Path(log_csv).parent.name}")
    fig.tight_layout()
    return fig


def plot_md_log(md_csv: str | Path) -> Any:
    """Potential, kinetic and total energy (eV) and temperature (K) against time (ps) of an MD log."""
    plt = _pyplot()
    cols = read_csv(md_csv)
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    t = cols["time_ps"]
    for key, label in (("epot_eV", "potential"), ("ekin_eV", "kinetic"), ("etot_eV", "total")):
        ax1.plot(t, [v - cols[key][0] for v in cols[key]], label=label)
    ax1.set_ylabel("energy − initial (eV)")
    ax1.legend()
    ax2.plot(t, cols["temperature_K"], color="tab:red")
    ax2.set_xlabel("time (ps)")
    ax2.set_ylabel("temperature (K)")
    fig.suptitle(f"MD: {Path(md_csv).stem}")
    fig.tight_layout()
    return fig


def plot_md_analysis(analysis: MDAnalysis, title: str | None = None) -> Any:
    """Energy, temperature, largest bond deviation (with the stable time) and h(r) of an MD run.

    After the first unstable frame the run is shaded red, and the y-axes of the time traces are
    scaled to the frames up to twice the stable time, so a run that explodes stays readable.
    """
    plt = _pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    view = _view_frames(analysis)
    t = analysis.times_ps
    ax = axes[0, 0]
    for values, name in ((analysis.epot_eV, "potential"), (analysis.etot_eV, "total")):
        if np.isfinite(values).any():
            ax.plot(t, values - values[np.isfinite(values)][0], label=name)
    _clip_y(ax, [analysis.epot_eV - analysis.epot_eV[0], analysis.etot_eV - analysis.etot_eV[0]], view)
    ax.set_ylabel("energy − initial (eV)")
    ax.set_title(f"Energy (total-energy drift {analysis.drift_meV_per_atom_ps:.3g} meV/atom/ps; NVE only)", fontsize=10)
    ax = axes[0, 1]
    ax.plot(t, analysis.temperature_K, color="tab:red", label="temperature")
    _clip_y(ax, [analysis.temperature_K], view)
    ax.set_ylabel("temperature (K)")
    first = analysis.stability.first_unstable_frame
    stable = analysis.temperature_K[: first or None] if first != 0 else analysis.temperature_K[:1]
    ax.set_title(f"Temperature (mean {np.nanmean(stable):.3g} K over the stable part)", fontsize=10)
    _draw_stability(axes[1, 0], analysis, view)
    for ax in (axes[0, 0], axes[0, 1], axes[1, 0]):
        _shade_unstable(ax, analysis)
        ax.set_xlabel("time (ps)")
        ax.legend(fontsize=9)
    _draw_hr(axes[1, 1], analysis)
    for a in axes.flat:
        a.grid(alpha=0.3)
    fig.suptitle(title or f"MD analysis: {Path(analysis.source.get('trajectory', '')).name}", fontsize=12)
    fig.tight_layout()
    return fig


def _view_frames(analysis: MDAnalysis) -> slice:
    """Frames that set the y-range: all of a stable run, up to twice the stable time otherwise."""
    first = analysis.stability.first_unstable_frame
    return slice(None) if first is None else slice(0, min(2 * first + 2, analysis.n_frames))


def _clip_y(ax: Any, series: list[np.ndarray], view: slice) -> None:
    values = np.concatenate([np.asarray(v)[view] for v in series])
    values = values[np.isfinite(values)]
    if view != slice(None) and values.size:
        lo, hi = float(values.min()), float(values.max())
        pad = 0.1 * (hi - lo) or 0.1 * max(abs(hi), 1e-12)
        ax.set_ylim(lo - pad, hi + pad)


def _shade_unstable(ax: Any, analysis: MDAnalysis) -> None:
    first = analysis.stability.first_unstable_frame
    if first is not None:
        t = analysis.times_ps
        ax.axvspan(t[first], t[-1], color="tab:red", alpha=0.08, label="unstable (y-axis not scaled to it)")


def _draw_stability(ax: Any, analysis: MDAnalysis, view: slice) -> None:
    st = analysis.stability
    t = analysis.times_ps
    ax.plot(t, st.max_bond_deviation_A, color="tab:purple", label="largest bond deviation")
    ax.axhline(st.threshold_A, color="black", ls="--", lw=1, label=f"threshold {st.threshold_A:g} Å")
    if st.first_unstable_frame is None:
        verdict = f"stable for the whole run ({st.stable_time_ps:.3g} ps)"
    else:
        verdict = f"unstable at {st.stable_time_ps:.3g} ps (frame {st.first_unstable_frame})"
        ax.set_ylim(0, max(3 * st.threshold_A, 1.2 * float(np.nanmax(st.max_bond_deviation_A[view]))))
    ax.set_ylabel("max |bond length − initial| (Å)")
    ax.set_title(f"Bond stability over {st.n_bonds} bonds: {verdict}", fontsize=10)


def _draw_hr(ax: Any, analysis: MDAnalysis) -> None:
    width = float(analysis.r_A[1] - analysis.r_A[0])
    inside = float(np.sum(analysis.h_model) * width)
    r_max = analysis.r_A[-1] + width / 2
    note = "" if inside > 0.995 else f", {100 * (1 - inside):.0f}% of distances beyond {r_max:g} Å"
    ax.plot(analysis.r_A, analysis.h_model, label=f"this trajectory{note}")
    if analysis.h_reference is not None:
        ax.plot(analysis.r_A, analysis.h_reference, label="reference frames", color="black", ls="--", lw=1)
    ax.set_xlabel("interatomic distance r (Å)")
    ax.set_ylabel("h(r) (1/Å)")
    cmp_ = analysis.comparison
    extra = f": overlap {cmp_.overlap:.2f}, JS {cmp_.js_divergence:.3f} bits" if cmp_ is not None else ""
    ax.set_title(f"Distribution of interatomic distances{extra}", fontsize=10)
    ax.legend(fontsize=9)
