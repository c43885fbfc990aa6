"""SE3Set hypergraphs for pretraining: one per conformer molecule, built once and cached.

A backbone that needs a hypergraph (SE3Set) gets, for every molecule of the conformer set, one
hypergraph built from a **clean** (unperturbed) reference conformer and then frozen; the noised
copy of a conformer shares its topology and therefore its hypergraph. The reference conformer is
the molecule's lowest-energy conformer (rank 0) for a :class:`~emgp_md.pretrain.data.ConformerSamples`
set, and the first conformer met otherwise.

Bond orders, which the fragmenter's chemical groups need (rings, functional groups, multiple bonds),
come from the stored SMILES mapped onto the stored RDKit bonds
(:func:`mol_from_smiles_and_bonds`); when that fails, bonds are perceived from the reference
geometry (:func:`emgp_md.data.fragment_groups.perceive_bonds`). A molecule whose hypergraph cannot
be built is skipped: one warning per molecule, counted in :attr:`HypergraphCache.failed`.

:class:`HypergraphCache` keys molecules by their id (``mol_index`` of the conformer set; the atomic
numbers and bonds for plain ``(Topology, positions)`` samples), so epochs after the first build
nothing; :class:`HypergraphSamples` is the view of a sample sequence the trainer batches from.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from emgp_md.data.topology import Topology

log = logging.getLogger(__name__)

Sample = tuple[Topology, np.ndarray]


def mol_from_smiles_and_bonds(smiles: str, z: np.ndarray, bonds: np.ndarray) -> Any:
    """RDKit molecule with the atoms ``z`` and ``bonds`` (in that order) and the SMILES' bond orders.

    The stored SMILES of a conformer set is canonical, so its atom order differs from the stored
    atoms; the bond orders and formal charges are mapped onto the stored connectivity by graph
    matching (``AssignBondOrdersFromTemplate``).

    Parameters
    ----------
    smiles : str
    z : (n_atoms,) int
        Atomic numbers, explicit hydrogens included.
    bonds : (n_bonds, 2) int
        Bonds ``i < j``.

    Raises
    ------
    ValueError
        Unparsable SMILES, or a SMILES whose graph does not match the atoms and bonds.
    """
    from rdkit import Chem, rdBase
    from rdkit.Chem import AllChem

    with rdBase.BlockLogs():
        template = Chem.MolFromSmiles(smiles)
        if template is None:
            raise ValueError(f"RDKit cannot parse the SMILES {smiles!r}")
        template = Chem.AddHs(template)
        rw = Chem.RWMol()
        for v in np.asarray(z).reshape(-1):
            rw.AddAtom(Chem.Atom(int(v)))
        for i, j in np.asarray(bonds).reshape(-1, 2):
            rw.AddBond(int(i), int(j), Chem.BondType.SINGLE)
        try:
            return AllChem.AssignBondOrdersFromTemplate(template, rw.GetMol())
        except Exception as exc:  # RDKit raises ValueError or its own exception types
            raise ValueError(f"the bond orders of {smiles!r} do not map onto the stored bonds: {exc}") from exc


def build_pretrain_hypergraph(topology: Topology, pos_A: np.ndarray, options: Any, smiles: str | None = None) -> Any:
    """Hypergraph of one conformer molecule from its clean reference geometry ``pos_A`` (Å).

    Bond orders from ``smiles`` on the topology's bonds when that works, else perceived from the
    geometry.

    Raises
    ------
    ValueError
        Neither route gives a molecule that can be fragmented (the message holds both reasons).
    """
    from ase import Atoms

    from emgp_md.data.hypergraph import build_hypergraph

    atoms = Atoms(numbers=topology.z, positions=np.asarray(pos_A, dtype=np.float64))
    reasons = []
    if smiles:
        try:
            mol = mol_from_smiles_and_bonds(smiles, topology.z, topology.bonds)
            return build_hypergraph(atoms, options, mol=mol)
        except Exception as exc:  # noqa: BLE001 - fall back to perception, reported if that fails too
            reasons.append(f"from the SMILES: {exc}")
    try:
        return build_hypergraph(atoms, options)
    except Exception as exc:  # noqa: BLE001 - RDKit raises several exception types
        reasons.append(f"from the geometry: {exc}")
    raise ValueError("; ".join(reasons))


def graph_key(topology: Topology) -> tuple[str, bytes, bytes]:
    """Cache key of a molecule without an id: its atomic numbers and bonds."""
    return (
        "graph",
        np.ascontiguousarray(topology.z, dtype=np.int64).tobytes(),
        np.ascontiguousarray(topology.bonds, dtype=np.int64).tobytes(),
    )


class HypergraphCache:
    """Topologies with their frozen hypergraph, one per molecule, least recently used evicted.

    Parameters
    ----------
    options : FragmentOptions
        Fragmenter settings of the model (:func:`emgp_md.models.hypergraph_options`).
    max_molecules : int, optional
        Molecules kept (default: all). Failed molecules are remembered apart and never retried.
    builder : callable, optional
        ``builder(topology, pos_A, options, smiles)`` -> Hypergraph (default
        :func:`build_pretrain_hypergraph`).

    Attributes
    ----------
    built, hits : int
        Hypergraphs built, and look-ups answered from the cache.
    failed : dict
        Molecule key -> reason, for molecules skipped because fragmentation failed.
    failures : list of dict
        ``{"molecule": label, "reason": str}`` of each failed molecule, in order (JSON-able).
    skipped_samples : int
        Look-ups of failed molecules (conformers left out of batches).
    """

    def __init__(
        self, options: Any, max_molecules: int | None = None, builder: Callable[..., Any] | None = None
    ) -> None:
        self.options = options
        self.max_molecules = max_molecules
        self.builder = builder or build_pretrain_hypergraph
        self._store: OrderedDict[Hashable, Topology] = OrderedDict()
        self.failed: dict[Hashable, str] = {}
        self.failures: list[dict[str, str]] = []
        self.built = 0
        self.hits = 0
        self.skipped_samples = 0

    def __len__(self) -> int:
        return len(self._store)

    def get(
        self,
        key: Hashable,
        topology: Topology,
        reference_pos: Callable[[], np.ndarray],
        smiles: str | None = None,
        name: str | None = None,
    ) -> Topology | None:
        """The molecule's topology with its hypergraph, or None when its fragmentation failed.

        ``reference_pos()`` gives the clean reference geometry (Å); it is called only to build.
        """
        if key in self._store:
            self._store.move_to_end(key)
            self.hits += 1
            return self._store[key]
        if key in self.failed:
            self.skipped_samples += 1
            return None
        try:
            hg = self.builder(topology, reference_pos(), self.options, smiles)
            topo = replace(topology, hypergraph=hg)
        except Exception as exc:  # noqa: BLE001 - one molecule must not end a run
            label = name or smiles or _formula(topology)
            self.failed[key] = str(exc)
            self.failures.append({"molecule": label, "reason": str(exc)})
            self.skipped_samples += 1
            log.warning(
                "molecule %s skipped: no SE3Set hypergraph (%s); %d molecule(s) skipped so far",
                label,
                exc,
                len(self.failed),
            )
            return None
        self.built += 1
        self._store[key] = topo
        if self.max_molecules is not None:
            while len(self._store) > self.max_molecules:
                self._store.popitem(last=False)
        return topo

    def stats(self) -> dict[str, Any]:
        """JSON-able counts: built, hits, cached, failed molecules, skipped conformers."""
        return {
            "built": self.built,
            "hits": self.hits,
            "cached": len(self._store),
            "failed_molecules": len(self.failed),
            "skipped_samples": self.skipped_samples,
        }


def _formula(topology: Topology) -> str:
    from ase import Atoms

    return Atoms(numbers=topology.z).get_chemical_formula()


class HypergraphSamples:
    """``data`` with every topology carrying its molecule's hypergraph; None for skipped molecules.

    Samples of a :class:`~emgp_md.pretrain.data.ConformerSamples` are keyed by molecule id and use
    the molecule's rank-0 conformer and stored SMILES; other ``(Topology, positions)`` samples are
    keyed by :func:`graph_key` and use their own positions when first met. Topologies that already
    carry a hypergraph pass through unchanged.
    """

    def __init__(self, data: Sequence[Sample], cache: HypergraphCache) -> None:
        self.data = data
        self.cache = cache

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> Sample | None:
        record = getattr(self.data, "record", None)
        if record is not None:
            rec = record(i)
            if rec.topology.hypergraph is not None:
                return rec.topology, rec.pos
            topo = self.cache.get(
                ("mol", rec.mol_index),
                rec.topology,
                lambda: self.data.reference_positions(i),  # type: ignore[attr-defined]
                smiles=rec.smiles,
                name=f"{rec.mol_index} ({rec.smiles})",
            )
            return None if topo is None else (topo, rec.pos)
        topology, pos = self.data[i]
        if topology.hypergraph is not None:
            return topology, pos
        topo = self.cache.get(graph_key(topology), topology, lambda: pos)
        return None if topo is None else (topo, pos)
