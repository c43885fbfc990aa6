"""Figures for energy landscapes, scans and PC-plane error maps.

Functions take the result objects of :mod:`emgp_md.landscape`, return
``matplotlib.figure.Figure`` objects and never call ``show()``; matplotlib is imported lazily with
the non-interactive Agg backend (:func:`emgp_md.plots.pyplot`).
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from typing import Any

import numpy as np

from emgp_md.landscape.grid import Landscape2D
from emgp_md.landscape.pcmap import PCEnergyMap
from emgp_md.landscape.scans import Scan1D
from emgp_md.plots import pyplot as _pyplot

_N_LEVELS = 21


def energy_label(unit: str, what: str = "E − E(X₀)") -> str:
    """Colour-bar / axis label with the unit, e.g. ``"E − E(X₀) (eV)"``."""
    return f"{what} ({'arbitrary units' if unit == 'arbitrary' else unit})"


def _levels(vmin: float, vmax: float) -> np.ndarray:
    """Contour levels dense near the bottom: equally spaced in ``sqrt(E - vmin)``.

    For a harmonic bowl this gives equally spaced rings in the (a, b) plane.
    """
    if not vmax > vmin:
        vmax = vmin + 1e-12
    return vmin + (vmax - vmin) * np.linspace(0.0, 1.0, _N_LEVELS) ** 2


def _ticks(vmin: float, vmax: float) -> list[float]:
    """Colour-bar ticks spaced like the levels (equally in ``sqrt(E - vmin)``), 2 significant figures, 0 included."""
    span = max(vmax - vmin, 1e-300)
    candidates = [0.0] if vmin <= 0.0 <= vmax else []
    candidates += [float(f"{t:.2g}") for t in vmin + span * np.linspace(0.0, 1.0, 6) ** 2]
    kept: list[float] = []
    for t in candidates:  # drop ticks that would print on top of one already kept
        u = np.sqrt(max(t - vmin, 0.0) / span)
        if vmin <= t <= vmax and all(abs(u - np.sqrt(max(k - vmin, 0.0) / span)) > 0.1 for k in kept):
            kept.append(t)
    return sorted(kept)


def _summary_text(land: Landscape2D) -> str:
    s = land.summary()
    unit = "a.u." if land.energy_unit == "arbitrary" else "eV"
    edge = " (on the grid edge)" if s.min_on_edge else ""
    return (
        f"minimum at a={s.min_a_A:+.2f}, b={s.min_b_A:+.2f} Å: {s.min_distance_A:.2f} Å from X₀{edge}\n"
        f"E(min) − E(X₀) = {s.energy_drop:.3g} {unit};  local minima on the grid: {s.n_local_minima}\n"
        f"curvature at X₀: {s.curvature_a:.3g}, {s.curvature_b:.3g} {unit}/Å²;  roughness {s.roughness:.2f}"
    )


def draw_landscape(
    ax: Any, land: Landscape2D, vmin: float | None = None, vmax: float | None = None, colorbar: bool = True
) -> Any:
    """Draw one landscape on ``ax``: filled contours, contour lines, X₀ and the grid minimum marked."""
    e = land.energies.T  # rows = b (y), columns = a (x)
    vmin = float(e.min()) if vmin is None else vmin
    vmax = float(e.max()) if vmax is None else vmax
    levels = _levels(vmin, vmax)
    clipped = vmin > float(e.min()) or vmax < float(e.max())
    filled = ax.contourf(land.a_A, land.b_A, e, levels=levels, cmap="viridis", extend="both" if clipped else "neither")
    ax.contour(land.a_A, land.b_A, e, levels=levels[::2], colors="white", linewidths=0.4, alpha=0.6)
    s = land.summary()
    ax.plot(0, 0, marker="P", ms=11, color="white", mec="black", ls="none", label="X₀ (reference)", clip_on=False)
    ax.plot(
        s.min_a_A,
        s.min_b_A,
        marker="*",
        ms=15,
        color="tab:red",
        mec="white",
        ls="none",
        label="grid minimum",
        clip_on=False,
        zorder=5,
    )
    ax.set_aspect("equal")
    ax.set_xlabel("a along d₁ (Å, RMS per atom)")
    ax.set_ylabel("b along d₂ (Å, RMS per atom)")
    ax.legend(loc="upper right", fontsize=8, framealpha=0.8)
    if colorbar:
        cbar = ax.figure.colorbar(filled, ax=ax, shrink=0.85, ticks=_ticks(vmin, vmax), format="%.2g")
        cbar.set_label(energy_label(land.energy_unit))
    return filled


def plot_landscape(land: Landscape2D, title: str | None = None) -> Any:
    """One landscape as a contour map, with its summary numbers underneath."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 6.0))
    draw_landscape(ax, land)
    ax.set_title(title or f"{land.label}: {land.method}", fontsize=11)
    ax.text(0.5, -0.13, _summary_text(land), transform=ax.transAxes, ha="center", va="top", fontsize=8.5)
    fig.subplots_adjust(bottom=0.22, top=0.93)
    return fig


def plot_landscapes(
    landscapes: Mapping[str, Landscape2D], shared_scale: bool = False, title: str | None = None, ncols: int = 4
) -> Any:
    """Side-by-side landscapes of several models on the same directions.

    Parameters
    ----------
    landscapes : mapping name -> Landscape2D
    shared_scale : bool
        One colour scale for all panels (only when they share an energy unit), to compare depths;
        by default one per panel, to compare shapes.
    title : str, optional
        Figure title; default the direction method.
    ncols : int
        Panels per row; more models wrap onto further rows.
    """
    plt = _pyplot()
    items = list(landscapes.items())
    units = {land.energy_unit for _, land in items}
    shared = shared_scale and len(units) == 1 and len(items) > 1
    lo = min(float(land.energies.min()) for _, land in items) if shared else None
    hi = max(float(land.energies.max()) for _, land in items) if shared else None
    cols = max(1, min(ncols, len(items)))
    rows = -(-len(items) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6.3 * cols + 0.8 * shared, 6.0 * rows), squeeze=False)
    for ax in axes.flat[len(items) :]:
        ax.axis("off")
    filled = None
    for ax, (name, land) in zip(axes.flat, items):
        filled = draw_landscape(ax, land, lo, hi, colorbar=not shared)
        ax.set_title(name, fontsize=11)
        ax.text(0.5, -0.14, _summary_text(land), transform=ax.transAxes, ha="center", va="top", fontsize=8)
    text = textwrap.fill(
        title or f"Energy landscape around X₀ — directions: {items[0][1].method}", width=int(11 * fig.get_figwidth())
    )
    fig.suptitle(text, fontsize=12)
    top = 1.0 - (0.12 + 0.045 * text.count("\n")) / rows
    fig.subplots_adjust(
        bottom=0.22 / rows,
        top=top,
        left=0.07 + 0.05 * (len(items) == 1),
        wspace=0.35,
        hspace=0.45,
        right=0.88 if shared else 0.95,
    )
    if shared and filled is not None:
        cax = fig.add_axes((0.9, 0.3, 0.015, 0.55))
        cbar = fig.colorbar(filled, cax=cax, ticks=_ticks(lo, hi), format="%.2g")
        cbar.set_label(energy_label(units.pop()))
    return fig


def plot_scans(scans: Scan1D | Mapping[str, Scan1D]) -> Any:
    """1D scans (same coordinate) as energy relative to each scan's minimum against the coordinate."""
    plt = _pyplot()
    if isinstance(scans, Scan1D):
        scans = {f"{scans.label} ({'relaxed' if scans.relaxed else 'rigid'})": scans}
    items = dict(scans)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    first = next(iter(items.values()))
    for name, scan in items.items():
        e = scan.energies_eV - scan.energies_eV.min()
        style = "o-" if len(scan.values) <= 40 else "-"
        line = ax.plot(scan.values, e, style, ms=3.5, label=name)[0]
        x_min, e_min = scan.minimum()
        ax.plot(x_min, e_min - scan.energies_eV.min(), marker="v", ms=9, color=line.get_color(), ls="none")
    ax.set_xlabel(f"{first.name} ({first.unit})")
    ax.set_ylabel("E − E(min) (eV)")
    ax.set_title(f"Scan along {first.name} (▼ = minimum)", fontsize=11)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9)
    fig.tight_layout()
    return fig


def plot_pc_energy_map(pcmap: PCEnergyMap, title: str | None = None) -> Any:
    """Reference energy, model energy and model error of frames on their principal-component plane.

    Energies are shown relative to their own means (one colour scale for both), the error with its
    mean subtracted: the colours show *where* the model is wrong, the title gives MAE and mean error.
    """
    plt = _pyplot()
    from matplotlib.colors import TwoSlopeNorm

    ref = pcmap.reference_eV - pcmap.reference_eV.mean()
    model = pcmap.model_eV - pcmap.model_eV.mean()
    lo, hi = np.percentile(np.concatenate([ref, model]), [1, 99])
    err = pcmap.error_eV - pcmap.error_eV.mean()  # where the model is wrong; the constant offset is in the title
    lim = max(float(np.percentile(np.abs(err), 99)), 1e-12)
    fig, axes = plt.subplots(1, 3, figsize=(16, 5.2), sharex=True, sharey=True)
    x, y = pcmap.coords_A[:, 0], pcmap.coords_A[:, 1]
    same_scale = {"cmap": "viridis", "vmin": lo, "vmax": hi}
    panels = [
        (ref, "reference: E − mean (eV)", same_scale),
        (model, f"{pcmap.label}: E − mean (eV)", same_scale),
        (err, "error − mean error (eV)", {"cmap": "RdBu_r", "norm": TwoSlopeNorm(0.0, -lim, lim)}),
    ]
    for ax, (values, label, kwargs) in zip(axes, panels):
        sc = ax.scatter(x, y, c=values, s=14, edgecolors="none", **kwargs)
        fig.colorbar(sc, ax=ax, shrink=0.9, format="%.3g").set_label(label)
        ax.plot(0, 0, marker="P", ms=10, color="white", mec="black", ls="none")
        ax.set_xlabel(f"PC 1 (Å, RMS per atom; {100 * pcmap.explained_variance_ratio[0]:.0f}% of variance)")
        ax.grid(alpha=0.25)
    axes[0].set_ylabel(f"PC 2 (Å, RMS per atom; {100 * pcmap.explained_variance_ratio[1]:.0f}% of variance)")
    s = pcmap.summary()
    axes[2].set_title(
        f"error = model − reference: MAE {s['energy_mae_meV']:.3g} meV,\n"
        f"mean {s['energy_mean_error_meV']:+.3g} meV (subtracted in the colours)",
        fontsize=10,
    )
    axes[0].set_title("reference energy", fontsize=10)
    axes[1].set_title("model energy (same colour scale)", fontsize=10)
    fig.suptitle(
        title or f"{pcmap.label} on {s['n_frames']} frames, principal-component plane (+ = reference X₀)", fontsize=12
    )
    fig.tight_layout()
    return fig
