"""ASE calculator for emgp-md energy models (thin: conversion, one forward/backward, units)."""

from __future__ import annotations

import copy
import logging
import weakref
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes

from emgp_md.concurrency import one_thread_at_a_time
from emgp_md.data.bonds import BondWatch
from emgp_md.data.convert import check_atoms, check_coordinates, refuse_overlaps, topology_for_atoms
from emgp_md.data.features import validate_atomic_numbers
from emgp_md.data.graph import GraphBatch, collate
from emgp_md.data.topology import Topology
from emgp_md.errors import BondChangeError, StructureError
from emgp_md.models.checkpoint import load_checkpoint
from emgp_md.models.energy_model import EnergyModel
from emgp_md.models.forces import energy_and_forces
from emgp_md.units import ARBITRARY, energy_unit_to_eV

log = logging.getLogger(__name__)
_DTYPES = {"float32": torch.float32, "float64": torch.float64}
BOND_CHANGE_POLICIES = ("raise", "warn")


class EMGPCalculator(Calculator):
    """Energy (eV) and forces (eV/Å) from an emgp-md model.

    Parameters
    ----------
    name : str, optional
        A shipped model (``emgp_md.available_models()``), e.g. ``"aspirin"``. With neither
        ``name`` nor ``model``, the shipped model whose formula matches the atoms is used.
    model : path or EnergyModel, optional
        A checkpoint file (fine-tuned, or a pretrained one whose energy is in arbitrary units),
        or a ready model (then pass ``metadata`` too).
    device : str
        Torch device, e.g. ``"cpu"`` or ``"cuda"``.
    dtype : ``"float32"`` (default) or ``"float64"`` (relaxations, finite-difference checks).
    compile : bool
        Compile the backbone with ``torch.compile`` (inductor) at the first call for a structure
        size; the first call takes tens of seconds to a few minutes. For the EGNN the default
        eager path (fused inference kernels, :mod:`emgp_md.models.egnn.fused`) is faster than the
        compiled plain path; compiling may still pay off for the other backbones.
    per_frame_hypergraph : bool
        Models with a hypergraph (SE3Set) only: rebuild the geometry-dependent part of the
        hypergraph (merging, overlap, incidences) for every structure, as the SE3Set authors did,
        instead of keeping the one frozen from the reference geometry. **Energies and forces are
        then not smooth**: they jump when a fragment boundary changes, and NVE energy is not
        conserved. Off by default.
    on_bond_change : ``"raise"`` (default) or ``"warn"``
        What to do when the bond graph perceived from the current geometry departs from the frozen
        one (a bond broken or formed, :mod:`emgp_md.data.bonds`): raise
        :class:`~emgp_md.errors.BondChangeError`, or log a warning once per new event and go on
        with the frozen graph (the numbers are then those of the unreacted molecule's graph).

    Notes
    -----
    The bond graph is perceived from the geometry (covalent radii) whenever a structure is new to
    the calculator (another ``Atoms`` object, other atomic numbers, or after
    :meth:`reset_topology`); for a model of one molecule it is matched onto the model's reference
    graph by graph isomorphism, so atoms may come in any order. Structures that are not that
    molecule, several fragments, overlapping atoms and coordinates beyond 1e4 Å are refused with a
    :class:`~emgp_md.errors.StructureError`. One instance is not for concurrent use by several
    threads: give each thread its own calculator.
    """

    implemented_properties: ClassVar[list[str]] = ["energy", "free_energy", "forces"]

    def __init__(
        self,
        name: str | Path | None = None,
        *,
        model: str | Path | EnergyModel | None = None,
        metadata: dict[str, Any] | None = None,
        device: str = "cpu",
        dtype: str = "float32",
        compile: bool = False,
        per_frame_hypergraph: bool = False,
        on_bond_change: str = "raise",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if on_bond_change not in BOND_CHANGE_POLICIES:
            raise ValueError(f"on_bond_change must be one of {BOND_CHANGE_POLICIES}, got {on_bond_change!r}")
        self.on_bond_change = on_bond_change
        if name is not None and model is not None:
            raise ValueError("give either a shipped model name or model=..., not both")
        if name is not None and _looks_like_path(name):
            name, model = None, name  # EMGPCalculator("path/to/model.pt")
        if dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
        self.device, self.dtype = torch.device(device), _DTYPES[dtype]
        self.compile = compile
        self.per_frame_hypergraph = per_frame_hypergraph
        self._forward: torch.nn.Module | None = None
        self.model: EnergyModel | None = None
        self.metadata: dict[str, Any] = {}
        self._topology: Topology | None = None
        self._graph: GraphBatch | None = None  # frozen graph of the current atoms; positions replaced per call
        self._auto_formula: str | None = None  # set when the model was picked by the atoms' formula
        self._watch: BondWatch | None = None  # hysteresis check of the frozen bond graph
        self._source: weakref.ref[Atoms] | None = None  # the Atoms object the frozen graph was derived for
        self._reported: set[tuple[tuple[tuple[int, int], ...], tuple[tuple[int, int], ...]]] = set()
        if isinstance(model, EnergyModel):
            self._set_model(copy.deepcopy(model), metadata or {})  # never change the caller's model
        elif model is not None:
            self._set_model(*load_checkpoint(model))
        elif name is not None:
            self._load_shipped(name)

    @classmethod
    def from_checkpoint(cls, path: str | Path, **kwargs: Any) -> EMGPCalculator:
        """Calculator for a checkpoint file."""
        return cls(model=path, **kwargs)

    def _load_shipped(self, name: str) -> None:
        from emgp_md.pretrained import model_path

        self._set_model(*load_checkpoint(model_path(name)))

    def _set_model(self, model: EnergyModel, metadata: dict[str, Any]) -> None:
        self._watch, self._source = None, None
        if model.training:
            raise ValueError("EMGPCalculator needs a model in eval mode (call model.eval())")
        self.model = model.to(device=self.device, dtype=self.dtype).requires_grad_(False)
        self._forward = self._compiled(self.model) if self.compile else self.model
        self.metadata = metadata
        unit = metadata.get("units", {}).get("energy", ARBITRARY)
        if unit == ARBITRARY:
            log.warning("this model's energy is in arbitrary units (a pretraining energy head)")
        self.energy_to_eV = energy_unit_to_eV(unit)
        self._topology, self._graph = None, None

    @staticmethod
    def _compiled(model: EnergyModel) -> EnergyModel:
        """The same model with its backbone compiled by ``torch.compile`` (parameters shared).

        Only the backbone is compiled: inductor's CPU code generation fails on the per-molecule
        sum of the head for a single molecule (torch 2.13), and the head is cheap. A molecule is
        always fully connected, so the backbone runs its dense path (no scatter kernels: the
        sparse path's generated scatter corrupted memory with 2 OpenMP threads in our tests).
        """
        backbone = torch.compile(model.backbone, dynamic=False)
        return EnergyModel(
            backbone,
            model.head,
            energy_scale=model.energy_scale,
            energy_shift=model.energy_shift,
            atom_ref=model.atom_ref,
        )

    @one_thread_at_a_time  # one instance is not thread-safe: a second thread gets a RuntimeError
    def calculate(
        self, atoms: Atoms | None = None, properties: list[str] | None = None, system_changes: list[str] = all_changes
    ) -> None:
        super().calculate(atoms, properties or ["energy"], system_changes)
        check_coordinates(self.atoms)
        if self._is_new_structure(atoms, system_changes):
            check_atoms(self.atoms)
            self._prepare(self.atoms)
            self._source = weakref.ref(atoms) if atoms is not None else None
        else:
            self._check_bonds(self.atoms.positions)
        assert self.model is not None and self._graph is not None
        pos = torch.as_tensor(self.atoms.positions, dtype=self.dtype, device=self.device)
        graph = self._graph.with_pos(pos)
        if self.per_frame_hypergraph and self._topology is not None and self._topology.hypergraph is not None:
            graph = replace(graph, hypergraph=self._frame_hypergraph(self._topology, self.atoms.positions))
        energy, forces = energy_and_forces(self._forward, graph)
        e_eV = float(self.model.total_energy(energy, graph)[0]) * self.energy_to_eV
        f_eV_A = forces.detach().to("cpu", torch.float64).numpy() * self.energy_to_eV
        _check_finite(e_eV, f_eV_A)
        self.results["energy"] = e_eV
        self.results["free_energy"] = e_eV
        self.results["forces"] = f_eV_A

    def check_state(self, atoms: Atoms, tol: float = 1e-15) -> list[str]:
        """ASE's change detection; an ``Atoms`` object identical to the last computed structure is adopted
        as the same structure (ASE then serves the cached results without calling :meth:`calculate`)."""
        changes = super().check_state(atoms, tol)
        if not changes and self._graph is not None:
            self._source = weakref.ref(atoms)
        return changes

    def _is_new_structure(self, atoms: Atoms | None, system_changes: list[str]) -> bool:
        """A structure the frozen graph was not derived for: first call, other numbers, another ``Atoms`` object.

        ``system_changes`` is not consulted: callers such as benchmarks pass ``all_changes`` for a
        mere position update, and a bond graph re-derived then would hide a reaction.
        """
        if self._graph is None:
            return True
        if self._topology is None or not np.array_equal(self._topology.z, self.atoms.numbers):
            return True
        return atoms is not None and (self._source is None or self._source() is not atoms)

    def _check_bonds(self, pos_A: np.ndarray) -> None:
        """Refuse overlapping atoms; raise or warn (``on_bond_change``) when a frozen bond broke or a new
        one formed."""
        assert self._watch is not None  # set with the frozen graph by _prepare
        broken, formed, overlaps = self._watch.changes(pos_A)
        refuse_overlaps(self.atoms, overlaps)
        if not broken and not formed:
            return
        sym = self.atoms.get_chemical_symbols()
        names = lambda pairs: ", ".join(f"{sym[i]}{i}–{sym[j]}{j}" for i, j in pairs) or "none"
        msg = (
            f"the bond graph changed: broken {names(broken)}; formed {names(formed)} (frozen graph of "
            f"{self.atoms.get_chemical_formula(mode='hill')}). The model's numbers assume the frozen graph; "
            "a reaction is outside what it was trained on. If this is a new structure rather than a "
            "reaction, call calc.reset_topology() first."
        )
        if self.on_bond_change == "raise":
            raise BondChangeError(msg, broken, formed)
        key = (tuple(broken), tuple(formed))
        if key not in self._reported:
            self._reported.add(key)
            log.warning(msg)

    def _prepare(self, atoms: Atoms) -> None:
        """For new atomic numbers: pick the shipped model (auto mode), check the species, freeze the topology."""
        if self.model is None or self._auto_formula is not None:
            # no model given: the shipped model of this formula, re-picked whenever the formula changes
            formula = atoms.get_chemical_formula(mode="hill")
            if formula != self._auto_formula:
                from emgp_md.pretrained import model_for_formula

                self._load_shipped(model_for_formula(formula))
                self._auto_formula = formula
        species = self.metadata.get("species")
        validate_atomic_numbers(atoms.numbers, set(species) if species else None)
        options = getattr(self.model.backbone, "fragment_options", None) if self.model is not None else None
        self._topology = topology_for_atoms(
            atoms,
            self.metadata.get("topology"),
            hypergraph_options=options,
            allow_fragments=bool(self.metadata.get("allow_fragments", False)),
        )
        self._graph = collate([self._topology], [atoms.positions], self.dtype).to(self.device)
        self._watch = BondWatch(self._topology.z, self._topology.bonds)
        self._reported = set()

    def _frame_hypergraph(self, topology: Topology, pos_A: np.ndarray) -> Any:
        """Hypergraph re-fragmented for the current positions (``per_frame_hypergraph``), collated."""
        from emgp_md.data.graph import collate_topology_hypergraphs
        from emgp_md.data.hypergraph import rebuild_hypergraph

        frame = replace(topology, hypergraph=rebuild_hypergraph(topology.hypergraph, pos_A))
        return collate_topology_hypergraphs([frame]).to(self.device)  # type: ignore[union-attr]

    def reset_topology(self) -> None:
        """Forget the frozen bond graph; the next call perceives it from the current geometry again
        (and, for a model of one molecule, matches it onto the model's reference graph)."""
        self._topology, self._graph, self._watch, self._source = None, None, None, None
        self.reset()


def _looks_like_path(name: str | Path) -> bool:
    """A model file rather than a shipped model's name: an existing file, a ``.pt`` name or a name with a
    path separator (a missing file then fails naming its path, not "no shipped model")."""
    text = str(name)
    return isinstance(name, Path) or Path(text).is_file() or text.endswith(".pt") or "/" in text or "\\" in text


def _check_finite(energy_eV: float, forces_eV_A: np.ndarray) -> None:
    """Refuse non-finite model outputs, naming the atoms whose forces are not finite."""
    bad = np.nonzero(~np.isfinite(forces_eV_A).all(axis=1))[0]
    if not np.isfinite(energy_eV) or len(bad):
        raise StructureError(
            f"the model returned a non-finite energy ({energy_eV}) or forces (atom index(es) {bad[:10].tolist()}); "
            "the structure is outside what the model can evaluate"
        )
