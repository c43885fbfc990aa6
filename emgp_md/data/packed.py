"""Compact per-molecule rMD17 packs: every distinct frame of the ten split files, flagged by split.

rMD17 ships five train/test splits per molecule (``rmd17_<mol>_{train,test}_0K.npz``, 1,000 frames
each) that overlap; together they hold 9,633 distinct frames per molecule, identified by
``old_indices`` (the frame index in the original trajectory). A pack keeps each distinct frame
once, sorted by ``old_indices``, with flags for membership of ``test_01`` and ``train_01``, so that
a machine without the shared data folder can rebuild:

- the paper's data regime: every frame outside ``test_01`` (:meth:`PackedMolecule.pool`),
- the 1,000-frame regime of ``train_01`` in its file order (:meth:`PackedMolecule.train01`),
- the test frames of ``test_01`` in its file order (:meth:`PackedMolecule.test01`).

Units are those of rMD17: coordinates Å, energies kcal/mol (kept float64), forces kcal/mol/Å.
Coordinates and forces are stored as float32 (training runs in float32), which halves the size.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emgp_md.data.rmd17 import Frames

log = logging.getLogger(__name__)
SPLITS = tuple((kind, k) for k in range(1, 6) for kind in ("train", "test"))


def split_file(root: Path, molecule: str, kind: str, index: int) -> Path:
    """``root/rmd17_<molecule>_<kind>_0<index>.npz``."""
    return Path(root) / f"rmd17_{molecule}_{kind}_{index:02d}.npz"


def pack_molecule(root: str | Path, molecule: str) -> dict[str, np.ndarray]:
    """Arrays of the distinct frames of a molecule's ten split files (see the module docstring).

    Returns
    -------
    dict
        ``z`` (n_atoms,) int64; ``old_indices`` (n,) int64 sorted; ``coords`` (n, n_atoms, 3) float32 Å;
        ``energies`` (n,) float64 kcal/mol; ``forces`` (n, n_atoms, 3) float32 kcal/mol/Å;
        ``in_test01`` / ``in_train01`` (n,) bool; ``test01_order`` / ``train01_order`` (1000,) int64:
        row of each frame of those files, in file order.

    Raises
    ------
    ValueError
        When two files disagree on the atoms, or on the labels of a frame with the same ``old_indices``.
    """
    root = Path(root)
    rows: dict[int, tuple[np.ndarray, float, np.ndarray]] = {}
    orders: dict[str, np.ndarray] = {}
    z_ref: np.ndarray | None = None
    for kind, k in SPLITS:
        path = split_file(root, molecule, kind, k)
        with np.load(path) as d:
            z, old = d["nuclear_charges"].astype(np.int64), d["old_indices"].astype(np.int64).reshape(-1)
            coords, energies, forces = d["coords"], d["energies"].reshape(-1), d["forces"]
        if z_ref is None:
            z_ref = z
        elif not np.array_equal(z, z_ref):
            raise ValueError(f"{path}: atoms {z.tolist()} differ from the other split files' {z_ref.tolist()}")
        for i, o in enumerate(old.tolist()):
            if o in rows:
                c0, e0, _ = rows[o]
                if not (np.allclose(c0, coords[i], atol=1e-6) and abs(e0 - float(energies[i])) < 1e-6):
                    raise ValueError(f"{path}: frame old_index {o} differs from the same frame in another split file")
            else:
                rows[o] = (np.asarray(coords[i]), float(energies[i]), np.asarray(forces[i]))
        if k == 1:
            orders[kind] = old
    assert z_ref is not None
    old_sorted = np.array(sorted(rows), dtype=np.int64)
    pos = {o: r for r, o in enumerate(old_sorted.tolist())}
    out = {
        "z": z_ref,
        "old_indices": old_sorted,
        "coords": np.stack([rows[o][0] for o in old_sorted.tolist()]).astype(np.float32),
        "energies": np.array([rows[o][1] for o in old_sorted.tolist()], dtype=np.float64),
        "forces": np.stack([rows[o][2] for o in old_sorted.tolist()]).astype(np.float32),
        "test01_order": np.array([pos[o] for o in orders["test"].tolist()], dtype=np.int64),
        "train01_order": np.array([pos[o] for o in orders["train"].tolist()], dtype=np.int64),
    }
    for kind in ("test", "train"):
        flag = np.zeros(len(old_sorted), dtype=bool)
        flag[out[f"{kind}01_order"]] = True
        out[f"in_{kind}01"] = flag
    log.info(
        "%s: %d distinct frames (%d in test_01, %d outside)",
        molecule,
        len(old_sorted),
        int(out["in_test01"].sum()),
        int((~out["in_test01"]).sum()),
    )
    return out


def write_pack(arrays: dict[str, np.ndarray], path: str | Path) -> Path:
    """Write a pack as a compressed ``.npz``; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    return path


@dataclass
class PackedMolecule:
    """A loaded pack (arrays as in :func:`pack_molecule`); ``source`` is the file it came from."""

    z: np.ndarray
    old_indices: np.ndarray
    coords: np.ndarray
    energies: np.ndarray
    forces: np.ndarray
    in_test01: np.ndarray
    in_train01: np.ndarray
    test01_order: np.ndarray
    train01_order: np.ndarray
    source: str

    def __len__(self) -> int:
        return len(self.old_indices)

    def frames(self, rows: np.ndarray, label: str) -> Frames:
        """The frames at ``rows`` of the pack, as float64 :class:`Frames`."""
        rows = np.asarray(rows, dtype=np.int64)
        return Frames(
            self.z,
            self.coords[rows].astype(np.float64),
            self.energies[rows],
            self.forces[rows].astype(np.float64),
            f"{self.source}[{label}: {len(rows)} frames]",
        )

    def pool_rows(self) -> np.ndarray:
        """Rows of every frame outside ``test_01`` (the paper's data regime), ascending ``old_indices``."""
        return np.flatnonzero(~self.in_test01)

    def pool(self) -> Frames:
        """Every frame outside ``test_01``."""
        return self.frames(self.pool_rows(), "pool")

    def test01(self) -> Frames:
        """The frames of ``test_01`` in file order."""
        return self.frames(self.test01_order, "test_01")

    def train01(self) -> Frames:
        """The frames of ``train_01`` in file order."""
        return self.frames(self.train01_order, "train_01")


def load_packed(path: str | Path) -> PackedMolecule:
    """Load a pack written by :func:`write_pack`."""
    with np.load(path) as d:
        arrays = {k: d[k] for k in d.files}
    return PackedMolecule(source=str(path), **arrays)


def pack_path(root: str | Path, molecule: str) -> Path:
    """``root/rmd17_<molecule>_packed.npz``."""
    return Path(root) / f"rmd17_{molecule}_packed.npz"
