"""The backbone contract: what an energy model's backbone receives and returns.

A backbone turns a batch of molecules into invariant per-atom features; an energy head
(:mod:`emgp_md.models.heads`) turns those into energies, and forces are ``−∂E/∂pos`` by autograd
(:mod:`emgp_md.models.forces`). :class:`~emgp_md.models.energy_model.EnergyModel` composes the three.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

import torch

if TYPE_CHECKING:
    from emgp_md.data.graph import GraphBatch


@runtime_checkable
class Backbone(Protocol):
    """Invariant atom features of a batch of molecules.

    Implemented by :class:`~emgp_md.models.egnn.EGNN`, :class:`~emgp_md.models.schnet.SchNet`,
    :class:`~emgp_md.models.torchmd_et.TorchMDET` and :class:`~emgp_md.models.se3set.SE3Set`.

    Inputs (fields of :class:`~emgp_md.data.graph.GraphBatch` a backbone may read)
    --------------------------------------------------------------------------------
    z : (n_atoms,) long
        Atomic numbers.
    pos : (n_atoms, 3) float, Å
        Positions; the output's dtype follows ``pos``. Must stay differentiable: forces are the
        autograd gradient of the energy with respect to ``pos``.
    edge_index : (2, n_edges) long
        Receiver (row 0) and sender (row 1) of each directed edge, offset per molecule; every
        pair of atoms of a molecule (fully connected, no self-loops). Backbones with a cutoff
        weight the edges with a smooth envelope that vanishes at ``cutoff_A``.
    edge_type : (n_edges,) long
        Hop category 0..3 of each edge (bonded, 2 hops, 3 hops, further; 3D-EMGP's edge types).
    batch : (n_atoms,) long, and ``n_graphs``
        Molecule of each atom; backbones do not need them (messages never cross molecules
        because no edge does), the heads do.
    dense_edge_type : (n_graphs, n, n) long, optional
        The same edge types as dense matrices when every molecule has ``n`` atoms. An optional
        fast path: a backbone may use it and must then give the same numbers.

    A backbone reads only the fields it uses; there are no ignored parameters.

    Output
    ------
    h : (n_atoms, hidden_nf) float
        Features of each atom, invariant under rotations, translations (and, for every backbone
        shipped here, reflections) of ``pos``, and equivariant under permutations of the atoms of
        a molecule. No units (the heads map them to energies in the model's energy unit).

    What a hypergraph backbone needs beyond it
    ------------------------------------------
    A backbone that sets ``needs_hypergraph = True`` (SE3Set) reads ``graph.hypergraph``, a
    :class:`~emgp_md.data.hypergraph_batch.HypergraphBatch` of frozen fragment hypergraphs
    (``e2v_index`` (2, n_anchored) and ``v2e_index`` (2, n_incidences), global atom indices, no
    positions) instead of the edges, and raises ``ValueError`` when the batch has none. The
    topologies must then carry a hypergraph built with the backbone's ``fragment_options``
    (:func:`emgp_md.models.hypergraph_options`); it is frozen for a molecule so that the energy
    stays a smooth function of ``pos``.

    Attributes
    ----------
    hidden_nf : int
        Width of the output features.
    needs_hypergraph : bool
        Whether ``graph.hypergraph`` is required (class attribute).
    """

    hidden_nf: int
    needs_hypergraph: bool

    def forward(self, graph: GraphBatch) -> torch.Tensor:
        """(n_atoms, hidden_nf) invariant atom features of ``graph``."""
        ...

    def __call__(self, graph: GraphBatch) -> torch.Tensor: ...


# Optional, not part of the protocol: ``fast_energy_and_forces(model, graph, training)``, a faster
# route to energies and forces that returns None where it does not apply (emgp_md.models.forces).
