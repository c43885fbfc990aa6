"""Figures of the paper-reproduction reports (:mod:`emgp_md.reproduce`), drawn from plain numbers:
the reports compute the numbers, these functions draw them and return the figure."""

from __future__ import annotations

from typing import Any

import numpy as np

from emgp_md.plots import pyplot

__all__ = [
    "plot_backbone_bars",
    "plot_data_efficiency",
    "plot_hr_grid",
    "plot_learn_vs_scratch",
    "plot_md17_force_mae",
]


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


def plot_md17_force_mae(values: dict[str, list[float]], schnet: list[float], molecules: list[str]) -> Any:
    """Grouped bars: test force MAE (kcal/mol/Å) per molecule for ``values["scratch"|"ours"|"official"]``
    (NaN: no result), with the SchNet MD17 number per molecule as a marker (the bar to beat)."""
    plt = pyplot()

    specs = [
        ("scratch", "scratch (4×64)", "#bbbbbb"),
        ("ours", "our pretraining (4×64)", "#4c72b0"),
        ("official", "authors' checkpoint (7×128)", "#dd8452"),
    ]
    fig, ax = plt.subplots(figsize=(9, 4.8))
    x = np.arange(len(molecules))
    width = 0.26
    for k, (spec, label, color) in enumerate(specs):
        ax.bar(x + (k - 1) * width, values[spec], width, label=label, color=color)
    ax.scatter(x, schnet, marker="_", s=600, color="k", zorder=3, label="SchNet, MD17 N=1000 (bar to beat)")
    ax.set_yscale("log")
    ax.set_xticks(x, molecules, rotation=20)
    ax.set_ylabel("test_01 force MAE (kcal/mol/Å)")
    ax.set_title("rMD17, 950 train / 50 val frames: fine-tuning from scratch vs pretrained")
    ax.legend(fontsize=8, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.2), frameon=False)
    ax.grid(axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    return fig


def plot_backbone_bars(
    values: dict[str, dict[str, list[float]]], backbone_labels: list[str], subtitle: str = ""
) -> Any:
    """Grouped bars: test force MAE (kcal/mol/Å) per backbone, one panel per molecule (log y).

    ``values[molecule][init]`` holds one number per backbone (NaN: unfinished, marked "–"), ``init`` in
    ``("scratch", "pretrained")``; ``subtitle`` (e.g. the budgets) goes under the title."""
    plt = pyplot()

    colors = {"scratch": "#bbbbbb", "pretrained": "#4c72b0"}
    molecules = list(values)
    fig, axes = plt.subplots(1, len(molecules), figsize=(4.2 * len(molecules), 4.0), squeeze=False)
    x = np.arange(len(backbone_labels))
    width = 0.38
    for ax, mol in zip(axes[0], molecules):
        vals = {init: np.array(v, dtype=float) for init, v in values[mol].items()}
        finite = np.concatenate(list(vals.values()))
        finite = finite[np.isfinite(finite) & (finite > 0)]
        lo, hi = (finite.min() / 3, finite.max() * 3) if len(finite) else (0.1, 10.0)
        ax.set_yscale("log")
        ax.set_ylim(lo, hi)
        for k, init in enumerate(vals):
            # bars start at the bottom of the log axis; unfinished runs are marked, not drawn
            heights = np.where(np.isfinite(vals[init]), vals[init] - lo, np.nan)
            bars = ax.bar(x + (k - 0.5) * width, heights, width, bottom=lo, label=init, color=colors[init])
            for bar, v in zip(bars, vals[init]):
                cx = bar.get_x() + bar.get_width() / 2
                if np.isfinite(v):
                    ax.annotate(f"{v:.2f}", (cx, v), ha="center", va="bottom", fontsize=7)
                else:
                    ax.annotate("–", (cx, lo), ha="center", va="bottom", fontsize=9, color="0.4")
        ax.grid(axis="y", which="both", alpha=0.3)
        if not len(finite):
            ax.text(0.5, 0.5, "no finished runs yet", transform=ax.transAxes, ha="center", va="center")
        ax.set_xticks(x, backbone_labels)
        ax.set_xlabel("backbone")
        ax.set_ylabel("test force MAE (kcal/mol/Å)")
        ax.set_title(f"rMD17 {mol}")
        ax.legend(fontsize=8, title="initialisation", title_fontsize=8)
    fig.suptitle(
        "Fine-tuning from scratch vs from 3D-EMGP pretraining, per backbone" + (f"\n{subtitle}" if subtitle else ""),
        fontsize=11,
    )
    fig.tight_layout()
    return fig


def plot_data_efficiency(
    stats: dict[tuple[str, int, str], dict[str, Any]], title: str, zero_force: dict[str, float] | None = None
) -> Any:
    """Log-log force MAE vs N, one panel per molecule, both inits, min–max bars over seeds; a dashed line
    at the MAE of predicting zero forces (the plateau) where ``zero_force`` gives it."""
    plt = pyplot()

    mols = sorted({m for m, _, _ in stats})
    ncol = min(4, max(1, len(mols)))
    nrow = -(-len(mols) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 3.6 * nrow + 0.9), squeeze=False)
    for ax, mol in zip(axes.flat, mols):
        for init, color in (("pretrained", "tab:blue"), ("scratch", "tab:orange")):
            pts = sorted((n, v) for (m, n, i), v in stats.items() if m == mol and i == init and v["n"])
            if not pts:
                continue
            ns = np.array([n for n, _ in pts])
            mean = np.array([v["force_mean"] for _, v in pts])
            lo = mean - np.array([v["force_min"] for _, v in pts])
            hi = np.array([v["force_max"] for _, v in pts]) - mean
            label = "authors' checkpoint" if init == "pretrained" else "from scratch"
            ax.errorbar(ns, mean, yerr=[lo, hi], marker="o", capsize=3, color=color, label=label)
        if zero_force and mol in zero_force:
            ax.axhline(zero_force[mol], color="grey", ls="--", lw=1, label="F = 0 (zero-force plateau)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(mol)
        ax.set_xlabel("training frames N")
        ax.set_ylabel("test_01 force MAE (kcal/mol/Å)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(mols) :]:
        ax.set_visible(False)
    fig.suptitle(title, fontsize=8, wrap=True)
    fig.tight_layout(rect=(0, 0, 1, 0.9))
    return fig


def plot_learn_vs_scratch(rows: list[dict[str, Any]], title: str) -> Any:
    """Test force MAE (meV/Å, log) of each ``emgp-md learn`` run: the pretrained model beside the same
    labels from scratch (same epochs, and 10× where given), with the zero-force baseline as a tick.

    ``rows``: dicts with ``name``, ``pretrained``, ``scratch``, optional ``scratch_10x``, ``zero_force``
    (all meV/Å; missing values are left out).
    """
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(1.9 * len(rows) + 2.5, 3.8))
    x = np.arange(len(rows))
    bars = (
        ("pretrained", "authors' checkpoint", "tab:blue"),
        ("scratch", "scratch, same epochs", "tab:orange"),
        ("scratch_10x", "scratch, 10× the epochs", "tab:red"),
    )
    width = 0.8 / len(bars)
    for k, (key, label, color) in enumerate(bars):
        vals = [r.get(key) for r in rows]
        offset = (k - (len(bars) - 1) / 2) * width  # bars centred on the tick
        xs = [xi + offset for xi, v in zip(x, vals) if v is not None]
        ys = [v for v in vals if v is not None]
        if ys:
            ax.bar(xs, ys, width, color=color, label=label)
    zf = [(xi, r["zero_force"]) for xi, r in zip(x, rows) if r.get("zero_force") is not None]
    if zf:
        ax.scatter([p[0] for p in zf], [p[1] for p in zf], marker="_", s=900, color="k", label="F = 0 baseline")
    ax.set_yscale("log")
    ax.set_ylim(bottom=10.0)  # bars on a log axis need a common floor
    ax.set_xticks(x)
    ax.set_xticklabels([r["name"] for r in rows], fontsize=8)
    ax.set_ylabel("test force MAE (meV/Å)")
    ax.grid(True, axis="y", which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_title(title, fontsize=8, wrap=True)
    fig.tight_layout()
    return fig


def plot_paper_regime_curves(runs: list[dict[str, Any]], targets: dict[str, float], title: str) -> Any:
    """Validation force MAE against epochs of long fine-tuning runs, one panel per molecule.

    ``runs``: ``molecule``, ``label`` (legend text, with the run's budget), ``epoch`` and
    ``val_force`` (kcal/mol/Å) lists, optional ``shipped_val`` (the previous default on the same
    validation frames); ``targets``: molecule → target force MAE, drawn dashed.
    """
    plt = pyplot()
    mols = sorted({r["molecule"] for r in runs})
    fig, axes = plt.subplots(1, len(mols), figsize=(4.8 * len(mols), 5.2), squeeze=False)
    for ax, mol in zip(axes.flat, mols):
        for r in (r for r in runs if r["molecule"] == mol):
            (line,) = ax.plot(r["epoch"], r["val_force"], marker=".", ms=3, label=r["label"])
            if r.get("shipped_val") is not None:
                ax.axhline(
                    r["shipped_val"], color=line.get_color(), ls=":", lw=1, label="previous default, same frames"
                )
        if mol in targets:
            ax.axhline(targets[mol], color="grey", ls="--", lw=1, label=f"issue target {targets[mol]:.2f}")
        ax.set_yscale("log")
        ax.set_title(mol)
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation force MAE (kcal/mol/Å)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16))
    fig.suptitle(title, fontsize=8, wrap=True)
    fig.tight_layout(rect=(0, 0, 1, 0.9))
    return fig
