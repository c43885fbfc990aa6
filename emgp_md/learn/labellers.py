"""Labellers: energy (eV) and forces (eV/Å) of one geometry from a reference method.

A labeller is a picklable callable ``labeller(atoms) -> (energy_eV, forces_eV_A)`` with a
``level_of_theory`` string; it is sent to worker processes, so it holds a recipe for its calculator,
not a live one. :class:`CalculatorLabeller` wraps any ASE calculator factory; the built-ins are
:class:`XTBLabeller` (GFN2-xTB through tblite: fast, for trying the pipeline) and
:class:`PySCFLabeller` (PBE/def2-SVP with density fitting: the rMD17 level of theory, so the authors'
pretrained checkpoint and the MD17 models speak the same energy scale).

A failed or unconverged calculation raises :class:`~emgp_md.errors.LabelError`; it never returns a
number.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from ase import Atoms, units

from emgp_md.errors import LabelError


class CalculatorLabeller:
    """Labels from any ASE calculator made by ``make_calculator()`` (a picklable, module-level callable)."""

    def __init__(self, make_calculator: Callable[[], Any], level_of_theory: str) -> None:
        self.make_calculator = make_calculator
        self.level_of_theory = level_of_theory

    def __call__(self, atoms: Atoms) -> tuple[float, np.ndarray]:
        """(energy in eV, (n_atoms, 3) forces in eV/Å) of ``atoms``."""
        work = Atoms(numbers=atoms.numbers, positions=atoms.positions)
        work.calc = self.make_calculator()
        try:
            energy = float(work.get_potential_energy())
            forces = np.asarray(work.get_forces(), dtype=np.float64)
        except LabelError:
            raise
        except Exception as exc:  # any calculator's failure becomes a recorded label failure
            raise LabelError(f"{self.level_of_theory} failed: {type(exc).__name__}: {exc}") from exc
        if not np.isfinite(energy) or not np.isfinite(forces).all():
            raise LabelError(f"{self.level_of_theory} returned a non-finite energy or force")
        return energy, forces


def _xtb() -> Any:
    from emgp_md.learn.sampling import xtb_calculator

    return xtb_calculator()


class XTBLabeller(CalculatorLabeller):
    """GFN2-xTB labels (tblite); seconds for hundreds of frames."""

    def __init__(self) -> None:
        super().__init__(_xtb, "GFN2-xTB")


class PySCFLabeller:
    """Kohn-Sham DFT labels with PySCF: ``xc``/``basis``, density fitting by default, closed or open shell.

    Parameters
    ----------
    xc, basis : str
        Functional and basis set (default PBE/def2-SVP, the level of theory of rMD17).
    density_fit : bool
        Resolution of the identity for the Coulomb term (much faster, errors far below the model's).
    charge : int
    max_cycle : int
        SCF iterations; an SCF that does not converge within them raises :class:`LabelError`.
    conv_tol : float
        SCF energy convergence (Hartree).
    """

    def __init__(
        self,
        xc: str = "PBE",
        basis: str = "def2-SVP",
        density_fit: bool = True,
        charge: int = 0,
        max_cycle: int = 100,
        conv_tol: float = 1e-9,
    ) -> None:
        self.xc, self.basis, self.density_fit = xc, basis, density_fit
        self.charge, self.max_cycle, self.conv_tol = charge, max_cycle, conv_tol
        fit = ", density fitting" if density_fit else ""
        self.level_of_theory = f"{xc}/{basis} (PySCF{fit})"

    def __call__(self, atoms: Atoms) -> tuple[float, np.ndarray]:
        """(energy in eV, (n_atoms, 3) forces in eV/Å) of ``atoms``."""
        try:
            from pyscf import dft, gto
        except ImportError:  # pragma: no cover - depends on the installation
            raise ImportError("the DFT labeller needs PySCF: pip install 'emgp-md[learn]'") from None
        n_electrons = int(atoms.numbers.sum()) - self.charge
        mol = gto.M(
            atom=[(int(z), tuple(p)) for z, p in zip(atoms.numbers, atoms.positions, strict=True)],
            unit="Angstrom",
            basis=self.basis,
            charge=self.charge,
            spin=n_electrons % 2,
            verbose=0,
        )
        mf = dft.UKS(mol) if n_electrons % 2 else dft.RKS(mol)
        mf.xc = self.xc
        mf.max_cycle, mf.conv_tol = self.max_cycle, self.conv_tol
        if self.density_fit:
            mf = mf.density_fit()
        energy_Ha = mf.kernel()
        if not mf.converged:
            raise LabelError(f"{self.level_of_theory}: SCF not converged in {self.max_cycle} cycles")
        gradient = mf.nuc_grad_method().kernel()  # Hartree/Bohr
        energy = float(energy_Ha) * units.Hartree
        forces = -np.asarray(gradient, dtype=np.float64) * units.Hartree / units.Bohr
        return energy, forces
