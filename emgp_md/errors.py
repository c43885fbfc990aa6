"""Exceptions that name what a user passed in and what to do about it.

Every public entry point refuses input it cannot stand behind with one of these (or a plain
``ValueError``); none of them is raised for a programming error.
"""

from __future__ import annotations


class StructureError(ValueError):
    """A structure the model cannot evaluate honestly (overlapping atoms, several fragments for a
    single-molecule model, a bond graph that is not the model's, coordinates out of range)."""


class BondChangeError(RuntimeError):
    """The bond graph perceived from the current geometry departs from the frozen one.

    Attributes
    ----------
    broken : list of (int, int)
        Bonds of the frozen graph that are now broken (atom indices of the structure, ``i < j``).
    formed : list of (int, int)
        Pairs that are not bonded in the frozen graph but now are.
    """

    def __init__(self, message: str, broken: list[tuple[int, int]], formed: list[tuple[int, int]]) -> None:
        super().__init__(message)
        self.broken = broken
        self.formed = formed


class ModelIntegrityError(ValueError):
    """A model file whose bytes, content hash, metadata or weights are not what they claim to be."""


class LabelError(RuntimeError):
    """A reference calculation (DFT, xTB) that failed or did not converge: no label, never a wrong one.

    Labelling records it for that frame and goes on with the others."""
