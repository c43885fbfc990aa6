"""Matplotlib figures. Functions return ``Figure`` objects and never call ``show()``; matplotlib is
imported lazily with the non-interactive Agg backend."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | Path, dpi: int = 120) -> Path:
    """Write ``fig`` to ``path`` (format from the suffix) and close it, so that long runs and loops
    that make many figures do not keep them all in memory. Returns the path."""
    fig.savefig(path, dpi=dpi)
    _pyplot().close(fig)
    return Path(path)


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
            ax1.annotate(f" {kinds[k - 1]} → {kinds[k]} loss", (cols["epoch"][k], ax1.get_ylim()[0]),
                         fontsize=8, color="grey", ha="left", va="bottom")
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
