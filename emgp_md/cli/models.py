"""``emgp-md models``: list the shipped models.

Register the command with :func:`register`; the command calls the library and reports.
"""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(sub: Any) -> None:
    """Add ``models`` to the CLI's sub-parsers (``sub = parser.add_subparsers(...)``)."""
    p = sub.add_parser("models", help="list the shipped models")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=models_command)


def models_command(args: argparse.Namespace) -> int:
    """Run ``emgp-md models``: the shipped models with their test errors (or JSON)."""
    from emgp_md.pretrained import available_models

    models = available_models()
    if args.json:
        print(json.dumps(models, indent=2))
        return 0
    for name, info in sorted(models.items()):
        test = info.get("test", {})
        print(
            f"{name:14s} {info['formula']:10s} test force MAE {test.get('force_mae_kcal_mol_A', float('nan')):.3f} "
            f"kcal/mol/Å, energy MAE {test.get('energy_mae_kcal_mol', float('nan')):.3f} kcal/mol"
        )
    return 0
