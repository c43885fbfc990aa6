"""Pack what a GPU session needs into one git-ignored folder that travels with the repository.

For each molecule: every distinct frame of its ten rMD17 split files (by ``old_indices``), flagged
by membership of ``test_01`` and ``train_01`` (:mod:`emgp_md.data.packed`); plus the authors'
pretrained checkpoint ``checkpoint-3dmgp``. Coordinates and forces float32, energies float64.

Example (from the repository root)::

    PYTHONPATH=$PWD python workflows/pack_gpu_data.py --data ../shared/data --out .gpu_data
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from pathlib import Path

from emgp_md.data.packed import pack_molecule, pack_path, write_pack

DEFAULT_MOLECULES = ["aspirin", "ethanol", "malonaldehyde", "uracil"]
LIMIT_MIB = 60.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data"), help="shared data folder")
    parser.add_argument("--out", type=Path, default=Path(".gpu_data"))
    parser.add_argument("--molecules", nargs="+", default=DEFAULT_MOLECULES)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    manifest = {}
    for mol in args.molecules:
        arrays = pack_molecule(args.data / "rmd17", mol)
        path = write_pack(arrays, pack_path(args.out, mol))
        manifest[mol] = {
            "file": path.name,
            "frames": len(arrays["old_indices"]),
            "test01": int(arrays["in_test01"].sum()),
            "pool": int((~arrays["in_test01"]).sum()),
            "bytes": path.stat().st_size,
        }
    shutil.copyfile(args.data / "emgp_official" / "checkpoint-3dmgp", args.out / "checkpoint-3dmgp")
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    total = sum(p.stat().st_size for p in args.out.iterdir() if p.is_file()) / 2**20
    print(json.dumps(manifest, indent=2))
    print(f"{args.out}: {total:.1f} MiB")
    if total > LIMIT_MIB:
        print(f"over the {LIMIT_MIB:.0f} MiB limit", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
