"""Fine-tune an energy model on one rMD17 molecule from a YAML config.

Example::

    python workflows/finetune_md17.py workflows/configs/finetune_aspirin.yaml --out runs/aspirin
    python workflows/finetune_md17.py workflows/configs/finetune_aspirin.yaml --out runs/aspirin --resume
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from emgp_md.config import FinetuneConfig, load_yaml
from emgp_md.training.finetune import finetune


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="YAML file with FinetuneConfig fields")
    parser.add_argument("--out", required=True, help="output folder (checkpoints, log.csv, plots)")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/state.pt")
    parser.add_argument("--epochs", type=int, help="override the number of epochs")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    overrides = {"epochs": args.epochs} if args.epochs else {}
    cfg = load_yaml(FinetuneConfig, args.config, overrides)
    result = finetune(cfg, args.out, resume=args.resume)
    logging.getLogger("finetune_md17").info("result: %s", json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
