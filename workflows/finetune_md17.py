"""Fine-tune an energy model on one rMD17 molecule from a YAML config (same as ``emgp-md finetune``).

Examples::

    python workflows/finetune_md17.py workflows/configs/finetune_aspirin.yaml --out runs/aspirin
    python workflows/finetune_md17.py workflows/configs/finetune_aspirin.yaml --out runs/aspirin --resume
    torchrun --nproc_per_node 2 workflows/finetune_md17.py CONFIG --out DIR    # data-parallel
"""

from __future__ import annotations

import sys

from emgp_md.cli import main as cli_main


def main(argv: list[str] | None = None) -> int:
    return cli_main(["finetune", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
