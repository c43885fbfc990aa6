"""3D-EMGP pretraining from a YAML config (same as ``emgp-md pretrain``).

Examples::

    emgp-md conformers qm9 --out runs/conformers/qm9_26k --n-molecules 26000 --workers 2
    python workflows/pretrain.py workflows/configs/pretrain_cpu.yaml --out runs/pretrain_cpu
    python workflows/pretrain.py workflows/configs/pretrain_cpu.yaml --out runs/pretrain_cpu --resume
    torchrun --nproc_per_node 2 workflows/pretrain.py workflows/configs/pretrain_cpu.yaml --out runs/p
    emgp-md pretrain-report runs/pretrain_cpu/best.pt ../shared/data/emgp_official/checkpoint-3dmgp \\
        --data runs/conformers/qm9_26k --plot runs/pretrain_cpu/report.png
"""

from __future__ import annotations

import sys

from emgp_md.cli import main as cli_main


def main(argv: list[str] | None = None) -> int:
    return cli_main(["pretrain", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
