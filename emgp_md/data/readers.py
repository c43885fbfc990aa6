"""Dataset readers (placeholder on main: rMD17 only; the readers branch brings every format)."""

from __future__ import annotations

from pathlib import Path

from emgp_md.data.frames import Dataset
from emgp_md.data.rmd17 import load_frames


def read_dataset(
    path: str | Path,
    *,
    format: str | None = None,
    energy_key: str = "energy",
    forces_key: str = "forces",
    energy_unit: str | None = None,
    label_set: str = "rmd17",
    name: str | None = None,
) -> Dataset:
    """Frames of ``path`` as a :class:`Dataset` (rMD17 ``.npz`` only in this placeholder)."""
    frames = load_frames(path, label_set)
    return Dataset([frames], frames.energy_unit, frames.source)
