"""rMD17 loaders: the per-split files of ``shared/data/rmd17`` and the official archive layout.

Units are explicit: coordinates in Å, energies in kcal/mol, forces in kcal/mol/Å (the npz native
units at PBE/def2-SVP; ``label_set="md17"`` selects the original MD17 labels ``old_energies`` and
``old_forces``, PBE+vdW-TS, same units).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from emgp_md.data.frames import Frames

MOLECULES = ("aspirin", "benzene", "ethanol", "malonaldehyde", "naphthalene", "salicylic", "toluene", "uracil")
ENERGY_UNIT = "kcal/mol"
FORCE_UNIT = "kcal/mol/Angstrom"


def _labels(data: np.lib.npyio.NpzFile, label_set: str) -> tuple[np.ndarray, np.ndarray]:
    keys = {"rmd17": ("energies", "forces"), "md17": ("old_energies", "old_forces")}
    if label_set not in keys:
        raise ValueError(f"unknown label_set {label_set!r}; use 'rmd17' or 'md17'")
    missing = [k for k in keys[label_set] if k not in data.files]
    if missing:
        raise ValueError(f"label set {label_set!r} needs keys {missing}, missing from a file with {data.files}")
    return data[keys[label_set][0]], data[keys[label_set][1]]


def load_frames(path: str | Path, label_set: str = "rmd17", indices: np.ndarray | None = None) -> Frames:
    """Load an rMD17 npz (a per-split file or a whole-molecule archive file).

    Parameters
    ----------
    path : path to ``.npz`` with keys ``nuclear_charges``, ``coords``, ``energies``, ``forces``.
    label_set : ``"rmd17"`` or ``"md17"``.
    indices : optional frame indices to keep (e.g. an official split).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"rMD17 file {str(path)!r} does not exist")
    with np.load(path) as data:
        missing = {"nuclear_charges", "coords"} - set(data.files)
        if missing:
            raise ValueError(f"{str(path)!r} lacks rMD17 keys {sorted(missing)}; it has {data.files}")
        energies, forces = _labels(data, label_set)
        frames = Frames(
            z=data["nuclear_charges"].astype(np.int64),
            coords=data["coords"].astype(np.float64),
            energies=energies.astype(np.float64).reshape(-1),
            forces=forces.astype(np.float64),
            source=str(path),
        )
    if indices is not None:
        frames = frames.subset(indices)
        frames.source += f"[{len(indices)} frames]"
    return frames


def read_split_indices(path: str | Path) -> np.ndarray:
    """Read an official ``splits/index_{train,test}_0K.csv`` (one integer per line, header allowed)."""
    values = []
    for line in Path(path).read_text().splitlines():
        line = line.strip().strip(",")
        if line and line.lstrip("-").isdigit():
            values.append(int(line))
    return np.asarray(values, dtype=np.int64)


def load_archive_split(
    root: str | Path, molecule: str, split: str = "train", index: int = 1, label_set: str = "rmd17"
) -> Frames:
    """Frames of one split from the official archive layout.

    ``root/npz_data/rmd17_<molecule>.npz`` and ``root/splits/index_<split>_0<index>.csv``.
    """
    root = Path(root)
    indices = read_split_indices(root / "splits" / f"index_{split}_{index:02d}.csv")
    return load_frames(root / "npz_data" / f"rmd17_{molecule}.npz", label_set, indices)


def default_data_dir() -> Path:
    """``$EMGP_MD_DATA`` or ``../shared/data`` next to the current folder (the project layout)."""
    return Path(os.environ.get("EMGP_MD_DATA", Path.cwd().parent / "shared" / "data"))


def split_path(molecule: str, split: str = "train", index: int = 1, root: str | Path | None = None) -> Path:
    """Path of a per-split file ``rmd17_<molecule>_<split>_0<index>.npz``."""
    if molecule not in MOLECULES:
        raise ValueError(f"unknown rMD17 molecule {molecule!r}; known: {list(MOLECULES)}")
    base = Path(root) if root is not None else default_data_dir() / "rmd17"
    return base / f"rmd17_{molecule}_{split}_{index:02d}.npz"


def train_val_split(n_frames: int, n_train: int | None, n_val: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded disjoint train/validation indices (``n_train=None``: every frame not in validation)."""
    train, val, _ = train_val_test_split(n_frames, n_train, n_val, 0, seed)
    return train, val


def train_val_test_split(
    n_frames: int, n_train: int | None, n_val: int, n_test: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeded disjoint sorted train/validation/test indices: one permutation, cut in that order.

    ``n_train=None`` takes every frame not in validation or test. The train and validation indices
    do not depend on ``n_test`` when ``n_train`` is given (the test frames come after them).
    """
    if n_train is None:
        n_train = n_frames - n_val - n_test
    if n_train < 1 or n_train + n_val + n_test > n_frames:
        raise ValueError(
            f"{n_train} train + {n_val} validation + {n_test} test frames do not fit in the {n_frames} frames available"
        )
    perm = np.random.default_rng(seed).permutation(n_frames)
    cuts = np.cumsum([n_train, n_val, n_test])
    return np.sort(perm[: cuts[0]]), np.sort(perm[cuts[0] : cuts[1]]), np.sort(perm[cuts[1] : cuts[2]])
