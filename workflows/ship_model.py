"""Copy a finished fine-tuning run into the package data as a shipped default model.

Adds the reference geometry (the frame the bond graph was frozen from) and the chemical formula to
the checkpoint metadata and updates ``emgp_md/pretrained/index.json``
(``workflows/reproduce_md17.py --ship`` does this for the best run of every molecule).

Example::

    python workflows/ship_model.py runs/md17/official/aspirin --name aspirin

``--rehash`` instead re-saves shipped checkpoints that carry no content hash (weights and metadata
unchanged) and rewrites the SHA-256 of every file in ``index.json``::

    python workflows/ship_model.py --rehash
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from emgp_md.reproduce.shipping import rehash_shipped, ship


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, nargs="?")
    parser.add_argument("--name")
    parser.add_argument("--rehash", action="store_true", help="(re)write the content and file hashes of shipped models")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    if args.rehash:
        sys.stdout.write(json.dumps(rehash_shipped(), indent=2) + "\n")
        return 0
    if args.run_dir is None or args.name is None:
        parser.error("give RUN_DIR and --name (or --rehash)")
    sys.stdout.write(json.dumps(ship(args.run_dir, args.name), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
