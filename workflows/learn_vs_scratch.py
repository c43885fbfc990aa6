"""The same labels from scratch, beside a finished ``emgp-md learn`` run (issue #15 item 6).

Writes ``OUT/scratch_comparison.json`` (test force/energy MAE and CPU time, pretrained vs scratch)
and prints it.

Example (from the repository root)::

    PYTHONPATH=$PWD python workflows/learn_vs_scratch.py runs/glycine
"""

from __future__ import annotations

import argparse
import json
import logging

from emgp_md.learn.compare import scratch_side_by_side


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="output folder of a finished emgp-md learn run")
    parser.add_argument("--epochs", type=int, help="scratch epochs (default: as many as member 0 had)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    print(json.dumps(scratch_side_by_side(args.out, epochs=args.epochs), indent=2))


if __name__ == "__main__":
    main()
