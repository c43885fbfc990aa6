"""emgp-md: 3D-EMGP pretrained-then-fine-tuned equivariant energy models as ASE calculators.

Quick start::

    from emgp_md import EMGPCalculator
    atoms.calc = EMGPCalculator()        # the shipped model whose formula matches the atoms

Public names are imported lazily, so ``import emgp_md`` has no side effects and stays light.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["EMGPCalculator", "__version__", "available_models", "load_checkpoint", "relax", "run_md"]

_LAZY = {
    "EMGPCalculator": ("emgp_md.calculator", "EMGPCalculator"),
    "available_models": ("emgp_md.pretrained", "available_models"),
    "load_checkpoint": ("emgp_md.models.checkpoint", "load_checkpoint"),
    "run_md": ("emgp_md.md", "run_md"),
    "relax": ("emgp_md.relaxation", "relax"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'emgp_md' has no attribute {name!r}")
