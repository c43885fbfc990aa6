"""MD analysis: energy and temperature traces, NVE drift, h(r) against reference frames, stable time.

Protocols follow ``docs/benchmarks.md`` ("Physics and stability"):

- **NVE drift**: slope of a straight-line fit to the total energy, meV/atom/ps
  (:func:`emgp_md.md.energy_drift_meV_per_atom_ps`). Only meaningful for NVE runs.
- **Stable time** (Fu et al. 2023, "Forces are not enough"): a run becomes unstable at the first
  frame where any bond of the starting structure (distance <= 1.6 Å in frame 0) deviates from its
  starting length by more than ``threshold_A`` (0.5 Å).
- **h(r)**: the distribution of all interatomic distances, compared with the reference frames
  (e.g. an rMD17 split) by histogram overlap, Jensen–Shannon divergence and mean absolute difference.
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from emgp_md.data.rmd17 import Frames
from emgp_md.data.topology import bonds_from_distances
from emgp_md.md import LOG_FIELDS, energy_drift_meV_per_atom_ps

log = logging.getLogger(__name__)


@dataclass
class MDLog:
    """Columns of the CSV log written by :func:`emgp_md.md.run_md` (one row per recorded frame).

    Attributes
    ----------
    step : (n_frames,) int
    time_ps : (n_frames,) float, ps
    epot_eV, ekin_eV, etot_eV : (n_frames,) float, eV
    temperature_K : (n_frames,) float, K
    """

    step: np.ndarray
    time_ps: np.ndarray
    epot_eV: np.ndarray
    ekin_eV: np.ndarray
    etot_eV: np.ndarray
    temperature_K: np.ndarray


def read_md_log(path: str | Path) -> MDLog:
    """Read a ``run_md`` CSV log.

    Raises
    ------
    ValueError
        If a column of :data:`emgp_md.md.LOG_FIELDS` is missing or a cell is not a number.
    """
    with Path(path).open(newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [k for k in LOG_FIELDS if k not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"MD log {str(path)!r} lacks columns {missing}; it has {reader.fieldnames}")
        rows = list(reader)
    try:
        cols = {k: np.array([float(r[k]) for r in rows]) for k in LOG_FIELDS}
    except ValueError as exc:
        raise ValueError(f"MD log {str(path)!r} has a non-numeric cell: {exc}") from exc
    return MDLog(step=cols["step"].astype(np.int64), **{k: cols[k] for k in LOG_FIELDS if k != "step"})


def nve_drift_meV_per_atom_ps(md_log: MDLog, n_atoms: int) -> float:
    """Total-energy drift of a log (straight-line fit), meV/atom/ps; needs at least 2 rows."""
    if len(md_log.time_ps) < 2:
        raise ValueError(f"a drift needs at least 2 logged frames, got {len(md_log.time_ps)}")
    return energy_drift_meV_per_atom_ps(md_log.time_ps, md_log.etot_eV, n_atoms)


def pair_distances(frames: np.ndarray) -> np.ndarray:
    """All interatomic distances ``i < j`` of every frame.

    Parameters
    ----------
    frames : (n_frames, n_atoms, 3) float, Å

    Returns
    -------
    (n_frames, n_atoms * (n_atoms - 1) / 2) float64, Å
    """
    frames = np.asarray(frames, dtype=np.float64)
    if frames.ndim != 3 or frames.shape[2] != 3:
        raise ValueError(f"frames must have shape (n_frames, n_atoms, 3), got {frames.shape}")
    i, j = np.triu_indices(frames.shape[1], k=1)
    return np.linalg.norm(frames[:, i] - frames[:, j], axis=-1)


def distance_histogram(
    frames: np.ndarray, bins: int | np.ndarray = 200, r_max_A: float = 10.0
) -> tuple[np.ndarray, np.ndarray]:
    """Normalised distribution h(r) of all interatomic distances.

    Parameters
    ----------
    frames : (n_frames, n_atoms, 3) float, Å
    bins : int or (n_bins + 1,) array of bin edges, Å
        Number of equal bins over ``[0, r_max_A]``, or explicit edges (then ``r_max_A`` is ignored).
    r_max_A : float, Å

    Returns
    -------
    centers : (n_bins,) float64, Å
    density : (n_bins,) float64, 1/Å
        Normalised by the number of *all* distances, so ``Σ density·Δr`` is the fraction of
        distances inside the range: 1 when ``r_max_A`` covers them all, less if the molecule flew apart.
    """
    dist = pair_distances(frames).reshape(-1)
    edges = np.linspace(0.0, r_max_A, int(bins) + 1) if np.ndim(bins) == 0 else np.asarray(bins, dtype=np.float64)
    counts, edges = np.histogram(dist, bins=edges)
    density = counts / (max(dist.size, 1) * np.diff(edges))
    return 0.5 * (edges[1:] + edges[:-1]), density


@dataclass
class HistogramComparison:
    """Agreement of two distributions on the same bins.

    Attributes
    ----------
    overlap : float
        ``Σ min(p, q)·Δr``: 1 for identical distributions, 0 for disjoint ones.
    js_divergence : float
        Jensen–Shannon divergence in bits (base 2): 0 identical, 1 disjoint.
    mae_per_A : float, 1/Å
        Mean absolute difference of the densities over the bins.
    """

    overlap: float
    js_divergence: float
    mae_per_A: float


def compare_histograms(p: np.ndarray, q: np.ndarray, bin_width_A: float | np.ndarray) -> HistogramComparison:
    """Compare densities ``p`` and ``q`` (n_bins,) in 1/Å on the same bins of width ``bin_width_A``.

    Densities from :func:`distance_histogram` may integrate to less than 1 (distances beyond the
    range); that missing mass counts as one extra "beyond the range" bin in the JS divergence.
    """
    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    if p.shape != q.shape:
        raise ValueError(f"histograms of different shapes {p.shape} and {q.shape}")
    pw, qw = p * bin_width_A, q * bin_width_A
    pn, qn = (np.append(w, max(1.0 - w.sum(), 0.0)) for w in (pw, qw))
    pn, qn = pn / max(pn.sum(), 1e-300), qn / max(qn.sum(), 1e-300)
    m = 0.5 * (pn + qn)

    def kl(a: np.ndarray) -> float:
        nz = a > 0
        return float(np.sum(a[nz] * np.log2(a[nz] / m[nz])))

    overlap = float(np.minimum(pw, qw).sum())
    return HistogramComparison(overlap, 0.5 * kl(pn) + 0.5 * kl(qn), float(np.abs(p - q).mean()))


@dataclass
class Stability:
    """Bond-stability analysis of a trajectory.

    Attributes
    ----------
    stable_time_ps : float, ps
        Time (from the first frame) of the first unstable frame; the whole run length if none.
    first_unstable_frame : int or None
        Index of the first frame with a bond deviation above the threshold.
    max_bond_deviation_A : (n_frames,) float64, Å
        Largest ``|r_b(t) - r_b(0)|`` over the starting bonds, per frame.
    n_bonds : int
        Bonds of the starting structure.
    threshold_A : float, Å
    """

    stable_time_ps: float
    first_unstable_frame: int | None
    max_bond_deviation_A: np.ndarray
    n_bonds: int
    threshold_A: float


def bond_stability(
    positions: np.ndarray, times_ps: np.ndarray, bonds: np.ndarray | None = None, threshold_A: float = 0.5
) -> Stability:
    """Stable time by the bond-length criterion.

    Parameters
    ----------
    positions : (n_frames, n_atoms, 3) float, Å
    times_ps : (n_frames,) float, ps
    bonds : (n_bonds, 2) int, optional
        Default: the bonds of frame 0 (distances <= 1.6 Å, :func:`bonds_from_distances`).
    threshold_A : float, Å
        Largest allowed deviation of a bond from its starting length.
    """
    positions, times_ps = np.asarray(positions, dtype=np.float64), np.asarray(times_ps, dtype=np.float64)
    if len(positions) != len(times_ps) or len(positions) == 0:
        raise ValueError(f"{len(positions)} frames but {len(times_ps)} times")
    bonds = bonds_from_distances(positions[0]) if bonds is None else np.asarray(bonds, dtype=np.int64).reshape(-1, 2)
    if len(bonds) == 0:
        raise ValueError("the starting structure has no bonds (no distance <= 1.6 Å)")
    length = np.linalg.norm(positions[:, bonds[:, 0]] - positions[:, bonds[:, 1]], axis=-1)  # (n_frames, n_bonds)
    deviation = np.abs(length - length[0]).max(axis=1)
    broken = np.nonzero(deviation > threshold_A)[0]
    first = int(broken[0]) if len(broken) else None
    end = times_ps[first] if first is not None else times_ps[-1]
    return Stability(float(end - times_ps[0]), first, deviation, len(bonds), float(threshold_A))


def stable_time_ps(
    positions: np.ndarray, times_ps: np.ndarray, bonds: np.ndarray | None = None, threshold_A: float = 0.5
) -> float:
    """Just the stable time (ps) of :func:`bond_stability`."""
    return bond_stability(positions, times_ps, bonds, threshold_A).stable_time_ps


@dataclass
class MDAnalysis:
    """Everything :func:`analyze_trajectory` measures.

    Attributes
    ----------
    n_atoms, n_frames : int
    times_ps : (n_frames,) float, ps
    epot_eV, etot_eV : (n_frames,) float, eV (NaN when unknown)
    temperature_K : (n_frames,) float, K (NaN when unknown)
    drift_meV_per_atom_ps : float
        Total-energy drift; meaningful for NVE runs only.
    stability : Stability
    r_A : (n_bins,) float, Å
        h(r) bin centres.
    h_model : (n_bins,) float, 1/Å
    h_reference : (n_bins,) float, 1/Å, or None without reference frames
    comparison : HistogramComparison or None
    source : dict
        Input paths.
    """

    n_atoms: int
    n_frames: int
    times_ps: np.ndarray
    epot_eV: np.ndarray
    etot_eV: np.ndarray
    temperature_K: np.ndarray
    drift_meV_per_atom_ps: float
    stability: Stability
    r_A: np.ndarray
    h_model: np.ndarray
    h_reference: np.ndarray | None = None
    comparison: HistogramComparison | None = None
    source: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """Scalars only: the numbers a report quotes."""
        finite_t = self.temperature_K[np.isfinite(self.temperature_K)]
        return {
            **self.source,
            "n_atoms": self.n_atoms,
            "n_frames": self.n_frames,
            "duration_ps": float(self.times_ps[-1] - self.times_ps[0]),
            "mean_temperature_K": float(finite_t.mean()) if finite_t.size else None,
            "etot_drift_meV_per_atom_ps": _finite_or_none(self.drift_meV_per_atom_ps),
            "stable_time_ps": self.stability.stable_time_ps,
            "first_unstable_frame": self.stability.first_unstable_frame,
            "bond_threshold_A": self.stability.threshold_A,
            "n_bonds": self.stability.n_bonds,
            "max_bond_deviation_A": float(self.stability.max_bond_deviation_A.max()),
            "h_r_fraction_in_range": float(np.sum(self.h_model) * (self.r_A[1] - self.r_A[0])),
            "h_r": asdict(self.comparison) if self.comparison is not None else None,
        }

    def to_json(self, path: str | Path | None = None) -> str:
        """JSON of :meth:`summary` plus the h(r) curves; written to ``path`` when given."""
        data = self.summary()
        data["h_r_curves"] = {
            "r_A": _rounded(self.r_A),
            "model_per_A": _rounded(self.h_model),
            "reference_per_A": None if self.h_reference is None else _rounded(self.h_reference),
        }
        text = json.dumps(data, indent=2) + "\n"
        if path is not None:
            Path(path).write_text(text)
        return text


def analyze_trajectory(
    traj_path: str | Path,
    log_csv: str | Path | None = None,
    reference_frames: np.ndarray | Frames | None = None,
    threshold_A: float = 0.5,
    frame_interval_fs: float | None = None,
    bins: int = 200,
    r_max_A: float = 10.0,
) -> MDAnalysis:
    """Analyse an MD trajectory (ASE ``.traj`` or any multi-frame file ASE reads).

    Parameters
    ----------
    traj_path : path
    log_csv : path, optional
        The ``run_md`` CSV log (times, energies, temperature). Default: ``traj_path`` with a
        ``.csv`` suffix if it exists and has one row per frame.
    reference_frames : Frames or (n_ref, n_atoms, 3) float array, Å, optional
        Reference geometries for h(r), e.g. ``emgp_md.data.rmd17.load_frames(path)``; with
        ``Frames`` the chemical composition is checked against the trajectory.
    threshold_A : float, Å
        Bond-deviation threshold of the stable time.
    frame_interval_fs : float, fs, optional
        Time between frames, needed only without a log.
    bins, r_max_A : h(r) bins over ``[0, r_max_A]`` Å.
    """
    import ase.io

    frames = ase.io.read(str(traj_path), index=":")
    positions = np.stack([a.positions for a in frames])
    md_log, log_path = _find_log(traj_path, log_csv, len(frames))
    if md_log is not None:
        times, epot, etot, temp = md_log.time_ps, md_log.epot_eV, md_log.etot_eV, md_log.temperature_K
    elif frame_interval_fs is not None:
        times = np.arange(len(frames)) * frame_interval_fs / 1000.0
        epot, etot, temp = _energies_from_frames(frames)
    else:
        raise ValueError(f"no MD log for {str(traj_path)!r}: pass log_csv or frame_interval_fs")
    n_atoms = positions.shape[1]
    finite = np.isfinite(etot)
    drift = energy_drift_meV_per_atom_ps(times[finite], etot[finite], n_atoms) if finite.sum() >= 2 else float("nan")
    r, h_model = distance_histogram(positions, bins, r_max_A)
    h_ref = comparison = None
    if reference_frames is not None:
        ref = _reference_positions(reference_frames, frames[0].numbers)
        _, h_ref = distance_histogram(ref, bins, r_max_A)
        comparison = compare_histograms(h_model, h_ref, r[1] - r[0])
    return MDAnalysis(
        n_atoms,
        len(frames),
        times,
        epot,
        etot,
        temp,
        drift,
        bond_stability(positions, times, threshold_A=threshold_A),
        r,
        h_model,
        h_ref,
        comparison,
        {"trajectory": str(traj_path), "log": log_path},
    )


def _find_log(traj_path: str | Path, log_csv: str | Path | None, n_frames: int) -> tuple[MDLog | None, str | None]:
    """The given log, or ``TRAJ.csv`` when it exists; checked to have one row per frame."""
    path = Path(log_csv) if log_csv is not None else Path(traj_path).with_suffix(".csv")
    if log_csv is None and not path.is_file():
        return None, None
    md_log = read_md_log(path)
    if len(md_log.time_ps) != n_frames:
        raise ValueError(f"the log {str(path)!r} has {len(md_log.time_ps)} rows but the trajectory {n_frames} frames")
    return md_log, str(path)


def _reference_positions(reference: np.ndarray | Frames, numbers: np.ndarray) -> np.ndarray:
    """Reference coordinates (n_ref, n_atoms, 3) Å, checked against the trajectory's atoms."""
    if isinstance(reference, Frames):
        if sorted(reference.z.tolist()) != sorted(np.asarray(numbers).tolist()):
            raise ValueError(
                f"reference frames ({reference.source}) are not the trajectory's molecule: atomic "
                f"numbers {sorted(reference.z.tolist())} vs {sorted(np.asarray(numbers).tolist())}"
            )
        reference = reference.coords
    reference = np.asarray(reference, dtype=np.float64)
    if reference.ndim != 3 or reference.shape[1] != len(numbers):
        raise ValueError(f"reference frames of shape {reference.shape} do not fit {len(numbers)} atoms")
    return reference


def _energies_from_frames(frames: list[Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Potential and total energy (eV) and temperature (K) stored in trajectory frames, NaN where absent."""
    epot, etot, temp = (np.full(len(frames), np.nan) for _ in range(3))
    for k, atoms in enumerate(frames):
        if atoms.calc is not None and "energy" in atoms.calc.results:
            epot[k] = atoms.calc.results["energy"]
        if atoms.get_momenta().any():
            temp[k] = atoms.get_temperature()
            etot[k] = epot[k] + atoms.get_kinetic_energy()
    return epot, etot, temp


def _finite_or_none(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def _rounded(x: np.ndarray) -> list[float]:
    return [float(f"{v:.6g}") for v in np.asarray(x)]
