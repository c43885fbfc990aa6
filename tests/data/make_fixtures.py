"""Regenerate the tiny rMD17 fixtures of this folder from ``../shared/data/rmd17`` (CC0-1.0).

    python tests/data/make_fixtures.py            # from the repository root

- ``rmd17/rmd17_ethanol_train_01.npz``: the first 24 frames of the official ethanol train_01 split
  (per-split layout, all seven rMD17 keys).
- ``rmd17_archive/npz_data/rmd17_ethanol.npz`` + ``splits/index_{train,test}_01.csv``: the official
  archive layout, 12 of those frames with small train/test index files.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
KEYS = ("nuclear_charges", "coords", "energies", "forces", "old_indices", "old_energies", "old_forces")


def main() -> None:
    data_dir = Path(os.environ.get("EMGP_MD_DATA", HERE.parents[2] / "shared" / "data"))
    with np.load(data_dir / "rmd17" / "rmd17_ethanol_train_01.npz") as src:
        full = {k: src[k] for k in KEYS}
    per_atom = {"nuclear_charges"}

    def first(n: int) -> dict[str, np.ndarray]:
        return {k: v if k in per_atom else v[:n] for k, v in full.items()}

    out = HERE / "rmd17"
    out.mkdir(exist_ok=True)
    np.savez_compressed(out / "rmd17_ethanol_train_01.npz", **first(24))

    archive = HERE / "rmd17_archive"
    (archive / "npz_data").mkdir(parents=True, exist_ok=True)
    (archive / "splits").mkdir(parents=True, exist_ok=True)
    np.savez_compressed(archive / "npz_data" / "rmd17_ethanol.npz", **first(12))
    (archive / "splits" / "index_train_01.csv").write_text("".join(f"{i}\n" for i in (7, 0, 3, 11, 5)))
    (archive / "splits" / "index_test_01.csv").write_text("".join(f"{i}\n" for i in (1, 2, 9)))


if __name__ == "__main__":
    main()
