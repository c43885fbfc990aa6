"""Energy evaluators: many geometries of one molecule → energies in eV, plus the Hessian.

An evaluator is called with positions (n_frames, n_atoms, 3) in Å and returns (n_frames,)
absolute energies in eV. Three kinds cover every energy source:

- :class:`ModelEvaluator`: an emgp-md :class:`EnergyModel`, evaluated in batches of frames
  (``repeat_topology`` + one forward pass under ``torch.no_grad``); Hessian by autograd.
- :class:`FunctionEvaluator`: a torch function ``pos (n_atoms, 3) -> energy`` (eV); Hessian by
  autograd.
- :class:`CalculatorEvaluator`: any ASE calculator, one call per frame; Hessian by central finite
  differences of the forces.

:func:`as_evaluator` builds the right one from a calculator, model, checkpoint path or function.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator

from emgp_md.data.convert import topology_for_atoms
from emgp_md.data.graph import collate, repeat_topology
from emgp_md.data.topology import Topology
from emgp_md.landscape.directions import NormalModes, normal_modes
from emgp_md.models.energy_model import EnergyModel
from emgp_md.units import ARBITRARY, energy_unit_to_eV

log = logging.getLogger(__name__)
TorchEnergyFn = Callable[[torch.Tensor], torch.Tensor]


@runtime_checkable
class EnergyEvaluator(Protocol):
    """Energies of many geometries of one molecule.

    Attributes
    ----------
    label : str
        Name for legends and file names.
    energy_unit : str
        ``"eV"``, or ``"arbitrary"`` for a pretraining energy head (its numbers pass through as eV).
    """

    label: str
    energy_unit: str

    def __call__(self, positions: np.ndarray) -> np.ndarray:
        """(n_frames, n_atoms, 3) Å → (n_frames,) absolute energies, eV."""
        ...

    def hessian(self, pos: np.ndarray) -> np.ndarray:
        """(n_atoms, 3) Å → (3N, 3N) second derivatives, eV/Å²."""
        ...


@dataclass
class ModelEvaluator:
    """Batched energies of an :class:`EnergyModel` on a frozen topology.

    Attributes
    ----------
    model : EnergyModel
        In eval mode; evaluated in the dtype and on the device of its parameters.
    topology : Topology
        Frozen graph of the molecule.
    energy_to_eV : float
        Factor from the model's energy unit to eV (1 for arbitrary units).
    energy_unit : str
    label : str
    batch_size : int
        Frames per forward pass.
    """

    model: EnergyModel
    topology: Topology
    energy_to_eV: float = 1.0
    energy_unit: str = "eV"
    label: str = "model"
    batch_size: int = 64

    @classmethod
    def from_metadata(
        cls, model: EnergyModel, metadata: dict[str, Any], atoms: Atoms, label: str = "model", dtype: str = "float64"
    ) -> ModelEvaluator:
        """From a model and its checkpoint metadata (units, stored topology); the model is copied to ``dtype``."""
        unit = metadata.get("units", {}).get("energy", ARBITRARY)
        dt = {"float32": torch.float32, "float64": torch.float64}[dtype]
        model = copy.deepcopy(model).to(dtype=dt).eval().requires_grad_(False)
        topo = topology_for_atoms(atoms, metadata.get("topology"))
        return cls(model, topo, energy_unit_to_eV(unit), _unit_label(unit), label)

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, atoms: Atoms, label: str | None = None, dtype: str = "float64"
    ) -> ModelEvaluator:
        """From an emgp-md checkpoint file (see :func:`emgp_md.models.checkpoint.load_checkpoint`)."""
        from emgp_md.models.checkpoint import load_checkpoint

        model, meta = load_checkpoint(path)
        return cls.from_metadata(model, meta, atoms, label or Path(path).stem, dtype)

    @classmethod
    def from_calculator(cls, calc: Any, atoms: Atoms, label: str | None = None) -> ModelEvaluator:
        """Share the model, units and topology of an :class:`~emgp_md.calculator.EMGPCalculator`."""
        if calc.model is None:  # auto mode: the first call picks the shipped model of this formula
            probe = atoms.copy()
            probe.calc = calc
            probe.get_potential_energy()
        unit = calc.metadata.get("units", {}).get("energy", ARBITRARY)
        topo = topology_for_atoms(atoms, calc.metadata.get("topology"))
        name = label or calc.metadata.get("name") or "model"
        return cls(calc.model, topo, calc.energy_to_eV, _unit_label(unit), name)

    def _param(self) -> torch.Tensor:
        return next(self.model.parameters())

    def __call__(self, positions: np.ndarray) -> np.ndarray:
        positions = _check_frames(positions, self.topology.n_atoms)
        p = self._param()
        out = []
        with torch.no_grad():
            for start in range(0, len(positions), self.batch_size):
                chunk = torch.as_tensor(positions[start : start + self.batch_size], dtype=p.dtype)
                graph = repeat_topology(self.topology, chunk).to(p.device)
                out.append(self.model.total_energy(self.model(graph), graph).cpu().numpy())
        return np.concatenate(out) * self.energy_to_eV if out else np.zeros(0)

    def energy_fn(self) -> TorchEnergyFn:
        """Differentiable ``pos (n_atoms, 3) -> energy`` (eV, without the constant shift) in float64, on CPU."""
        model = copy.deepcopy(self.model).to("cpu", torch.float64)
        graph = collate([self.topology], [np.zeros((self.topology.n_atoms, 3))], torch.float64)

        def fn(pos: torch.Tensor) -> torch.Tensor:
            return model(graph.with_pos(pos))[0] * self.energy_to_eV

        return fn

    def hessian(self, pos: np.ndarray) -> np.ndarray:
        """(3N, 3N) Hessian at ``pos`` (n_atoms, 3) Å by autograd in float64, eV/Å²."""
        return autograd_hessian(self.energy_fn(), pos)


@dataclass
class FunctionEvaluator:
    """A differentiable torch function ``pos (n_atoms, 3) float64 Å -> scalar energy (eV)``."""

    fn: TorchEnergyFn
    label: str = "function"
    energy_unit: str = "eV"

    def __call__(self, positions: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return np.array([float(self.fn(torch.as_tensor(p, dtype=torch.float64))) for p in np.asarray(positions)])

    def hessian(self, pos: np.ndarray) -> np.ndarray:
        """(3N, 3N) Hessian by autograd, eV/Å²."""
        return autograd_hessian(self.fn, pos)


@dataclass
class CalculatorEvaluator:
    """Any ASE calculator, one call per geometry.

    Attributes
    ----------
    calc : Calculator
    atoms : Atoms
        Template (atomic numbers); it is copied, never modified.
    delta_A : float
        Step of the finite-difference Hessian, Å.
    """

    calc: Calculator
    atoms: Atoms
    label: str = "calculator"
    energy_unit: str = "eV"
    delta_A: float = 1e-3
    _work: Atoms = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._work = self.atoms.copy()
        self._work.calc = self.calc
        from emgp_md.calculator import EMGPCalculator

        if isinstance(self.calc, EMGPCalculator):
            self._work.get_potential_energy()  # freezes the bond graph at the template, not at the first point

    def __call__(self, positions: np.ndarray) -> np.ndarray:
        positions = _check_frames(positions, len(self.atoms))
        out = np.empty(len(positions))
        for k, pos in enumerate(positions):
            self._work.positions = pos
            out[k] = self._work.get_potential_energy()
        return out

    def forces(self, pos: np.ndarray) -> np.ndarray:
        """(n_atoms, 3) forces at ``pos``, eV/Å."""
        self._work.positions = pos
        return np.asarray(self._work.get_forces(), dtype=np.float64)

    def hessian(self, pos: np.ndarray) -> np.ndarray:
        """(3N, 3N) Hessian ``H_kl = -(F_k(x + δe_l) - F_k(x - δe_l)) / 2δ``, symmetrised, eV/Å²."""
        pos = np.asarray(pos, dtype=np.float64)
        hess = np.empty((pos.size, pos.size))
        for col in range(pos.size):
            step = np.zeros(pos.size)
            step[col] = self.delta_A
            plus = self.forces(pos + step.reshape(pos.shape)).reshape(-1)
            minus = self.forces(pos - step.reshape(pos.shape)).reshape(-1)
            hess[:, col] = -(plus - minus) / (2 * self.delta_A)
        return 0.5 * (hess + hess.T)


def autograd_hessian(fn: TorchEnergyFn, pos: np.ndarray) -> np.ndarray:
    """(3N, 3N) Hessian of a torch energy function at ``pos`` (n_atoms, 3) Å, float64, eV/Å²."""
    x = torch.as_tensor(np.asarray(pos), dtype=torch.float64)
    hess = torch.autograd.functional.hessian(fn, x)  # (n_atoms, 3, n_atoms, 3)
    hess = hess.reshape(x.numel(), x.numel()).detach().numpy()
    return 0.5 * (hess + hess.T)


def as_evaluator(source: Any, atoms: Atoms, label: str | None = None, dtype: str = "float64") -> EnergyEvaluator:
    """Build an evaluator from whatever gives energies.

    Parameters
    ----------
    source : EnergyEvaluator, EMGPCalculator, ASE Calculator, EnergyModel, checkpoint path or torch function
        An :class:`EnergyModel` without metadata is taken to return eV on a topology frozen from
        ``atoms``; a torch function maps ``pos (n_atoms, 3) float64 Å`` to a scalar energy in eV.
    atoms : Atoms
        The molecule (atomic numbers, reference geometry for a derived topology).
    label : str, optional
    dtype : ``"float64"`` or ``"float32"``, for models loaded here.
    """
    from emgp_md.calculator import EMGPCalculator

    if isinstance(source, (ModelEvaluator, FunctionEvaluator, CalculatorEvaluator)):
        return source
    if isinstance(source, EMGPCalculator):
        return ModelEvaluator.from_calculator(source, atoms, label)
    if isinstance(source, Calculator):
        return CalculatorEvaluator(source, atoms, label or type(source).__name__)
    if isinstance(source, EnergyModel):
        meta = {"units": {"energy": "eV"}}
        return ModelEvaluator.from_metadata(source, meta, atoms, label or "model", dtype)
    if isinstance(source, (str, Path)):
        return ModelEvaluator.from_checkpoint(source, atoms, label, dtype)
    if callable(source):
        return FunctionEvaluator(source, label or getattr(source, "__name__", "function"))
    raise TypeError(f"cannot evaluate energies with a {type(source).__name__}")


def hessian_modes(source: Any, atoms: Atoms, modes: tuple[int, ...] = (0, 1)) -> NormalModes:
    """Internal normal modes of the Hessian of ``source`` at ``atoms.positions``.

    Parameters
    ----------
    source : EMGPCalculator, EnergyModel, checkpoint path, torch function or ASE calculator
        Models and torch functions (``pos (n_atoms, 3) float64 Å -> energy eV``) give the Hessian
        by autograd in float64; other ASE calculators by central differences of the forces.
    atoms : ase.Atoms
        The structure ``X0`` (positions in Å).
    modes : tuple of int
        Internal modes to return, counted from the softest (0).

    Returns
    -------
    NormalModes
        Directions (len(modes), n_atoms, 3), rigid-free, orthogonal, 1 Å RMS per atom, and their
        eigenvalues in eV/Å².
    """
    evaluator = as_evaluator(source, atoms)
    pos = atoms.positions
    return normal_modes(evaluator.hessian(pos), pos, modes)


def _unit_label(unit: str) -> str:
    return "arbitrary" if unit == ARBITRARY else "eV"


def _check_frames(positions: np.ndarray, n_atoms: int) -> np.ndarray:
    positions = np.asarray(positions, dtype=np.float64)
    if positions.ndim != 3 or positions.shape[1:] != (n_atoms, 3):
        raise ValueError(f"positions of shape {positions.shape}, expected (n_frames, {n_atoms}, 3)")
    return positions
