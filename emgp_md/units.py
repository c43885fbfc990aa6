"""Unit conventions. ASE units (eV, Å, fs, K) at every public boundary; model units are converted
only through the factors below, built from :mod:`ase.units`."""

from __future__ import annotations

from ase import units

#: Energy unit of rMD17 labels and of our fine-tuned models.
KCAL_PER_MOL = "kcal/mol"
#: Energy unit of pretraining energy heads: not a physical energy.
ARBITRARY = "arbitrary"

_ENERGY_TO_EV = {
    KCAL_PER_MOL: units.kcal / units.mol,
    "eV": 1.0,
    "kJ/mol": units.kJ / units.mol,
    "meV": 1e-3,
    "Hartree": units.Hartree,
    ARBITRARY: 1.0,
}


def energy_unit_to_eV(unit: str) -> float:
    """Factor converting an energy in ``unit`` to eV (``"arbitrary"`` maps to 1)."""
    try:
        return _ENERGY_TO_EV[unit]
    except KeyError:
        raise ValueError(f"unknown energy unit {unit!r}; known: {sorted(_ENERGY_TO_EV)}") from None


#: kcal/mol → meV, for reporting MAEs.
KCAL_PER_MOL_TO_MEV = energy_unit_to_eV(KCAL_PER_MOL) * 1e3
