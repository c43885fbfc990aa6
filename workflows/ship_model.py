"""Copy a finished fine-tuning run into the package data as a shipped default model.

Adds the reference geometry (the frame the bond graph was frozen from) and the chemical formula to
the checkpoint metadata and updates ``emgp_md/pretrained/index.json``
(``workflows/reproduce_md17.py --ship`` does this for the best run of every molecule).

Example::

    python workflows/ship_model.py runs/md17/official/aspirin --name aspirin
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from emgp_md.reproduce.shipping import ship


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--name", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    sys.stdout.write(json.dumps(ship(args.run_dir, args.name), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
