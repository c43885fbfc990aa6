"""Parity plots of a model against labelled frames (``emgp-md evaluate``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from emgp_md.data.frames import Dataset
from emgp_md.plots import pyplot as _pyplot

__all__ = ["plot_parity"]


def _panel(ax: Any, ref: np.ndarray, pred: np.ndarray, label: str, mae: float) -> None:
    lo, hi = float(min(ref.min(), pred.min())), float(max(ref.max(), pred.max()))
    pad = 0.03 * (hi - lo or 1.0)
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="grey", lw=1, ls="--")
    ax.scatter(ref, pred, s=4, alpha=0.4, edgecolors="none")
    ax.set_xlim(lo - pad, hi + pad)
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_xlabel(f"reference {label}")
    ax.set_ylabel(f"predicted {label}")
    ax.set_aspect("equal")
    ax.text(0.04, 0.94, f"MAE {mae:.4g}", transform=ax.transAxes, va="top")


def plot_parity(
    predictions: list[tuple[np.ndarray, np.ndarray]],
    dataset: Dataset,
    title: str = "",
    max_points: int = 200_000,
    atom_ref: dict[int, float] | None = None,
) -> Any:
    """Predicted vs reference energies (per atom, so that molecules of different size share one axis)
    and force components, in the dataset's unit.

    Energies are shown relative to each molecule's mean reference energy, or, with ``atom_ref`` (a
    many-molecule model's per-element reference energies, in the dataset's unit), relative to the sum of
    the atoms' reference energies: molecules with one frame then keep their place on the axis.

    Parameters
    ----------
    predictions : per molecule of ``dataset``, energies (n_frames,) and forces (n_frames, n_atoms, 3)
    dataset : the labelled frames
    title : figure title (e.g. model and data file)
    max_points : force components drawn at most (a seeded subsample; the MAE uses all)
    atom_ref : per-element reference energies (see above)
    """
    plt = _pyplot()
    unit = dataset.energy_unit
    e_ref, e_pred, f_ref, f_pred = [], [], [], []
    for (pe, pf), g in zip(predictions, dataset.groups, strict=True):
        n = g.z.shape[0]
        centre = sum(atom_ref[int(z)] for z in g.z) if atom_ref else g.energies.mean()
        e_ref.append((g.energies - centre) / n)
        e_pred.append((pe - centre) / n)
        f_ref.append(g.forces.reshape(-1))
        f_pred.append(pf.reshape(-1))
    er, ep, fr, fp = (np.concatenate(x) for x in (e_ref, e_pred, f_ref, f_pred))
    f_mae = float(np.mean(np.abs(fp - fr)))
    if fr.size > max_points:
        keep = np.random.default_rng(0).choice(fr.size, max_points, replace=False)
        fr, fp = fr[keep], fp[keep]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4.8))
    what = "energy − element references" if atom_ref else "energy − molecule mean"
    _panel(ax1, er, ep, f"{what}, per atom ({unit})", float(np.mean(np.abs(ep - er))))
    _panel(ax2, fr, fp, f"force component ({unit}/Å)", f_mae)
    fig.suptitle(title or f"{dataset.n_molecules} molecule(s), {len(dataset)} frames")
    fig.tight_layout()
    return fig
