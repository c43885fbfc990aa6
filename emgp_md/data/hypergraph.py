"""SE3Set hypergraph: fragments, anchored hyperedges and incidence indices (docs/method.md §S1.8–S1.10).

A **fragment** (hyperedge) ``F`` is a set of atoms; fragments may overlap. The network keeps one
feature per **anchored hyperedge** ``eps = (F, i)``: a copy of a fragment attached to one anchor
atom ``i``. Two index arrays describe the incidences:

- ``e2v_index`` (2, n_anchored): ``[eps, anchor atom i]``; every anchored hyperedge has one anchor;
- ``v2e_index`` (2, n_incidences): ``[source atom j, eps]``: atom ``j`` feeds ``eps``, the anchor
  itself included (the model drops ``j == i``).

Explicit mode: one anchored hyperedge per fragment member, fed by the whole fragment, so
``n_anchored = sum |F|`` and ``n_incidences = sum |F|^2``. Implicit mode: fragments are the kernels;
atom ``i`` gets one anchored hyperedge for its own kernel plus one for each foreign kernel with an
atom within ``implicit_rc_A`` of ``i``, each fed by all atoms of that kernel.

The hypergraph is built **once** from a reference geometry and then frozen, so that energies stay
smooth functions of the positions (:func:`build_hypergraph`); :func:`rebuild_hypergraph` redoes the
geometry-dependent steps for another frame, as the authors did, at the price of non-smooth energies.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from ase import Atoms

from emgp_md.data.convert import check_atoms
from emgp_md.data.fragment import (
    FragmentOptions,
    covalent_radii,
    empirical_bond_orders,
    expand_kernels,
    merge_groups,
)

FORMAT = "se3set-hypergraph/1"
_ARRAYS = (
    "z",
    "bonds",
    "group_of_atom",
    "kernel_of_atom",
    "fragment_ptr",
    "fragment_atoms",
    "anchored_fragment",
    "e2v_index",
    "v2e_index",
)


@dataclass(frozen=True, eq=False)
class Hypergraph:
    """Frozen SE3Set hypergraph of one molecule (all arrays int64 and read-only).

    Attributes
    ----------
    z : (n_atoms,)
        Atomic numbers.
    bonds : (n_bonds, 2)
        Perceived covalent bonds ``i < j`` (from the reference geometry).
    group_of_atom : (n_atoms,)
        Unbreakable chemical group of each atom (numbered by smallest atom index).
    kernel_of_atom : (n_atoms,)
        Kernel of each atom; kernel ``k`` is the core of fragment ``k``.
    fragment_ptr : (n_hyperedges + 1,)
        CSR offsets: fragment ``k`` is ``fragment_atoms[fragment_ptr[k]:fragment_ptr[k + 1]]``.
    fragment_atoms : (sum of fragment sizes,)
        Sorted atom indices of every fragment, concatenated.
    anchored_fragment : (n_anchored,)
        Fragment copied by each anchored hyperedge.
    e2v_index : (2, n_anchored)
        ``[anchored hyperedge, anchor atom]``; row 0 is ``arange(n_anchored)``.
    v2e_index : (2, n_incidences)
        ``[source atom j, anchored hyperedge]``, self incidences included.
    options : FragmentOptions
        Settings that built it (``options.mode`` is "explicit" or "implicit").
    """

    z: np.ndarray
    bonds: np.ndarray
    group_of_atom: np.ndarray
    kernel_of_atom: np.ndarray
    fragment_ptr: np.ndarray
    fragment_atoms: np.ndarray
    anchored_fragment: np.ndarray
    e2v_index: np.ndarray
    v2e_index: np.ndarray
    options: FragmentOptions = field(default_factory=FragmentOptions)

    def __post_init__(self) -> None:
        for name in _ARRAYS:
            arr = np.array(getattr(self, name), dtype=np.int64)
            arr.flags.writeable = False
            object.__setattr__(self, name, arr)
        n, k = self.n_atoms, self.n_anchored
        checks = {
            "bonds": self.bonds.ndim == 2 and self.bonds.shape[1] == 2,
            "group_of_atom": self.group_of_atom.shape == (n,),
            "kernel_of_atom": self.kernel_of_atom.shape == (n,)
            and self.kernel_of_atom.max(initial=-1) + 1 == self.n_hyperedges,
            "fragment_ptr": self.fragment_ptr.ndim == 1 and self.fragment_ptr[-1] == len(self.fragment_atoms),
            "e2v_index": self.e2v_index.shape == (2, k) and np.array_equal(self.e2v_index[0], np.arange(k)),
            "v2e_index": self.v2e_index.ndim == 2 and self.v2e_index.shape[0] == 2,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"inconsistent hypergraph arrays: {bad}")

    # ----------------------------------------------------------------------- sizes
    @property
    def n_atoms(self) -> int:
        return int(self.z.shape[0])

    @property
    def n_hyperedges(self) -> int:
        """Number of fragments (= kernels)."""
        return int(self.fragment_ptr.shape[0] - 1)

    @property
    def n_anchored(self) -> int:
        """Number of anchored hyperedges ``K``."""
        return int(self.anchored_fragment.shape[0])

    @property
    def n_incidences(self) -> int:
        """Number of incidences ``M`` (self incidences included)."""
        return int(self.v2e_index.shape[1])

    @property
    def fragments(self) -> list[np.ndarray]:
        """Atom indices of each fragment (hyperedge)."""
        return [self.fragment_atoms[a:b] for a, b in zip(self.fragment_ptr[:-1], self.fragment_ptr[1:])]

    @property
    def kernels(self) -> list[np.ndarray]:
        """Atom indices of each kernel (a partition of the atoms)."""
        return [np.nonzero(self.kernel_of_atom == k)[0] for k in range(self.n_hyperedges)]

    # ----------------------------------------------------------------------- I/O
    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (lists of ints), e.g. for checkpoint metadata."""
        out: dict[str, Any] = {"format": FORMAT, "options": self.options.to_dict()}
        out.update({name: getattr(self, name).tolist() for name in _ARRAYS})
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Hypergraph:
        """Inverse of :meth:`to_dict`."""
        if data.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} document (format={data.get('format')!r})")
        arrays = {name: np.asarray(data[name], dtype=np.int64) for name in _ARRAYS}
        arrays["bonds"] = arrays["bonds"].reshape(-1, 2)
        arrays["e2v_index"] = arrays["e2v_index"].reshape(2, -1)
        arrays["v2e_index"] = arrays["v2e_index"].reshape(2, -1)
        return cls(**arrays, options=FragmentOptions.from_dict(data["options"]))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Hypergraph):
            return NotImplemented
        return self.options == other.options and all(
            np.array_equal(getattr(self, name), getattr(other, name)) for name in _ARRAYS
        )

    __hash__ = None  # type: ignore[assignment]


def explicit_incidences(fragments: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Incidences with explicit overlap: one anchored hyperedge per (fragment, member).

    Returns
    -------
    anchored_fragment : (n_anchored,) int64
    e2v_index : (2, n_anchored) int64
    v2e_index : (2, n_incidences) int64
    """
    sizes = np.asarray([len(f) for f in fragments], dtype=np.int64)
    anchored_fragment = np.repeat(np.arange(len(fragments)), sizes)
    anchors = np.concatenate(fragments).astype(np.int64)
    sources = np.concatenate([np.tile(f, len(f)) for f in fragments]).astype(np.int64)
    eps = np.repeat(np.arange(len(anchors)), sizes[anchored_fragment])
    return anchored_fragment, np.stack([np.arange(len(anchors)), anchors]), np.stack([sources, eps])


def implicit_incidences(
    kernels: list[np.ndarray], pos_A: np.ndarray, rc_A: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Incidences with implicit overlap (the authors' ``build_data(he_type="implicit")``).

    Anchored hyperedges ``0..n_atoms-1`` are the own-kernel copies, in kernel-then-member order;
    the foreign copies ``(kernel k, atom i)`` with ``min_{b in k} |r_i - r_b| <= rc_A`` follow,
    sorted by ``(k, i)``. Shapes as in :func:`explicit_incidences`.
    """
    pos = np.asarray(pos_A, dtype=np.float64)
    dist = np.linalg.norm(pos[:, None, :] - pos[None, :, :], axis=-1)
    near = np.stack([dist[:, kern].min(axis=1) for kern in kernels])  # (n_kernels, n_atoms)
    for k, kern in enumerate(kernels):
        near[k, kern] = np.inf  # an atom's own kernel is already attached
    foreign_kernel, foreign_atom = np.nonzero(near <= rc_A)  # row-major: sorted by (k, i)
    own = np.repeat(np.arange(len(kernels)), [len(k) for k in kernels])
    anchored_fragment = np.concatenate([own, foreign_kernel]).astype(np.int64)
    anchors = np.concatenate([*kernels, foreign_atom]).astype(np.int64)
    sizes = np.asarray([len(k) for k in kernels], dtype=np.int64)[anchored_fragment]
    sources = np.concatenate([kernels[k] for k in anchored_fragment]).astype(np.int64)
    eps = np.repeat(np.arange(len(anchors)), sizes)
    return anchored_fragment, np.stack([np.arange(len(anchors)), anchors]), np.stack([sources, eps])


def hypergraph_from_groups(
    z: np.ndarray, pos_A: np.ndarray, bonds: np.ndarray, group_of_atom: np.ndarray, options: FragmentOptions
) -> Hypergraph:
    """Geometry-dependent steps (merging, overlap, incidences) on fixed chemical groups.

    Parameters
    ----------
    z : (n_atoms,) int
    pos_A : (n_atoms, 3) float, Å
    bonds : (n_bonds, 2) int
    group_of_atom : (n_atoms,) int
        Groups from :func:`emgp_md.data.fragment_groups.chemical_groups`.
    options : FragmentOptions
    """
    z = np.asarray(z, dtype=np.int64)
    bonds = np.asarray(bonds, dtype=np.int64).reshape(-1, 2)
    group_of_atom = np.asarray(group_of_atom, dtype=np.int64)
    labelled = [np.nonzero(group_of_atom == g)[0] for g in range(int(group_of_atom.max()) + 1)]
    groups = sorted(labelled, key=len, reverse=True)  # the authors' order: largest first, stable
    w = empirical_bond_orders(z, pos_A, options.bond_order_method)
    adjacency = np.zeros((len(z), len(z)), dtype=np.int64)
    adjacency[bonds[:, 0], bonds[:, 1]] = adjacency[bonds[:, 1], bonds[:, 0]] = 1
    kernels_g, isolated = merge_groups(groups, w, adjacency, options)
    kernels = [np.sort(np.concatenate([groups[g] for g in k])) for k in kernels_g]
    if options.mode == "explicit":
        fragments = expand_kernels(groups, kernels_g, isolated, w, options)
    else:
        fragments = kernels
    order = np.argsort([k.min() for k in kernels])  # present kernels by smallest atom
    kernels = [kernels[o] for o in order]
    fragments = [fragments[o] for o in order]
    kernel_of_atom = np.empty(len(z), dtype=np.int64)
    for k, atoms in enumerate(kernels):
        kernel_of_atom[atoms] = k
    if options.mode == "explicit":
        anchored, e2v, v2e = explicit_incidences(fragments)
    else:
        anchored, e2v, v2e = implicit_incidences(kernels, pos_A, options.implicit_rc_A)
    return Hypergraph(
        z=z,
        bonds=bonds,
        group_of_atom=group_of_atom,
        kernel_of_atom=kernel_of_atom,
        fragment_ptr=np.concatenate([[0], np.cumsum([len(f) for f in fragments])]),
        fragment_atoms=np.concatenate(fragments),
        anchored_fragment=anchored,
        e2v_index=e2v,
        v2e_index=v2e,
        options=options,
    )


def build_hypergraph(
    atoms: Atoms, options: FragmentOptions | None = None, *, mol: Any = None, charge: int = 0
) -> Hypergraph:
    """Hypergraph of a molecule, built once from a reference geometry and then frozen.

    Parameters
    ----------
    atoms : ase.Atoms
        Reference geometry (positions in Å, no periodic boundary conditions).
    options : FragmentOptions, optional
        Default: the authors' MD17 template (explicit overlap).
    mol : rdkit.Chem.Mol, optional
        Molecule with explicit hydrogens, atoms in the order of ``atoms``, whose bonds are used
        instead of perceiving them from the geometry.
    charge : int
        Total charge for bond perception.

    Raises
    ------
    ValueError
        Invalid structure (NaN positions, unsupported element) or failed bond perception.

    See Also
    --------
    rebuild_hypergraph : redo the geometry-dependent steps for another frame (the authors'
        per-frame recipe); this makes energies non-smooth in MD, so the frozen hypergraph is the
        default.
    """
    from emgp_md.data.fragment_groups import chemical_groups, perceive_bonds

    options = options or FragmentOptions()
    check_atoms(atoms)
    covalent_radii(atoms.numbers)
    if mol is None:
        mol = perceive_bonds(atoms.numbers, atoms.positions, charge, atoms.get_chemical_formula())
    elif [a.GetAtomicNum() for a in mol.GetAtoms()] != atoms.numbers.tolist():
        raise ValueError("the RDKit molecule's atoms do not match atoms.numbers in order")
    groups = chemical_groups(mol, options.topo_bond_order_threshold)
    return hypergraph_from_groups(atoms.numbers, atoms.positions, groups.bonds, groups.group_of_atom, options)


def rebuild_hypergraph(reference: Hypergraph, pos_A: np.ndarray) -> Hypergraph:
    """Redo merging, overlap and incidences for another frame (the authors' per-frame recipe).

    The chemical groups and bonds stay those of the reference. **Rebuilding per frame makes the
    energy a non-smooth function of the positions**: when a bond-order sum or a distance crosses a
    threshold, hyperedges appear or vanish and energies and forces jump, which breaks energy
    conservation in MD. Prefer the frozen reference hypergraph for MD.

    Parameters
    ----------
    reference : Hypergraph
    pos_A : (n_atoms, 3) float, Å
    """
    pos = np.asarray(pos_A, dtype=np.float64)
    if pos.shape != (reference.n_atoms, 3) or not np.isfinite(pos).all():
        raise ValueError(f"positions must be finite with shape ({reference.n_atoms}, 3), got {pos.shape}")
    return hypergraph_from_groups(reference.z, pos, reference.bonds, reference.group_of_atom, reference.options)


@dataclass(frozen=True)
class HypergraphStatistics:
    """Counts of one hypergraph and the dataset statistics the SE3Set model consumes (§1.10).

    ``avg_node_degree`` is anchored hyperedges per atom, ``avg_hyperedge_degree`` incidences per
    anchored hyperedge (self included), ``hyperedge_channel`` the largest degree minus one,
    ``avg_hyperedge_size`` atoms per fragment, ``n_messages`` incidences without ``j == anchor``,
    ``max_dis_A`` the ceiling of the largest atom–anchor distance (Å; ``None`` without positions).
    """

    n_atoms: int
    n_groups: int
    n_hyperedges: int
    n_anchored_hyperedges: int
    n_incidences: int
    n_messages: int
    avg_node_degree: float
    avg_hyperedge_degree: float
    avg_hyperedge_size: float
    hyperedge_channel: int
    fragment_sizes: list[int]
    kernel_sizes: list[int]
    atom_types: list[int]
    max_atom_z: int
    max_dis_A: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def hypergraph_statistics(hg: Hypergraph, pos_A: np.ndarray | None = None) -> HypergraphStatistics:
    """Statistics of ``hg``; ``pos_A`` (n_atoms, 3) Å adds ``max_dis_A``."""
    node_degree = np.bincount(hg.e2v_index[1], minlength=hg.n_atoms)
    he_degree = np.bincount(hg.v2e_index[1], minlength=hg.n_anchored)
    anchors = hg.e2v_index[1][hg.v2e_index[1]]
    max_dis = None
    if pos_A is not None:
        pos = np.asarray(pos_A, dtype=np.float64)
        max_dis = float(math.ceil(np.linalg.norm(pos[hg.v2e_index[0]] - pos[anchors], axis=-1).max()))
    sizes = np.diff(hg.fragment_ptr)
    return HypergraphStatistics(
        n_atoms=hg.n_atoms,
        n_groups=int(hg.group_of_atom.max()) + 1,
        n_hyperedges=hg.n_hyperedges,
        n_anchored_hyperedges=hg.n_anchored,
        n_incidences=hg.n_incidences,
        n_messages=int((hg.v2e_index[0] != anchors).sum()),
        avg_node_degree=float(node_degree.mean()),
        avg_hyperedge_degree=float(he_degree.mean()),
        avg_hyperedge_size=float(sizes.mean()),
        hyperedge_channel=int(he_degree.max()) - 1,
        fragment_sizes=sizes.tolist(),
        kernel_sizes=np.bincount(hg.kernel_of_atom).tolist(),
        atom_types=sorted(set(hg.z.tolist())),
        max_atom_z=int(hg.z.max()),
        max_dis_A=max_dis,
    )


def fragment_records(hg: Hypergraph) -> list[dict[str, Any]]:
    """One JSON-able record per fragment: index, atoms, kernel atoms, elements (formula), size."""
    records = []
    for k, (atoms, kernel) in enumerate(zip(hg.fragments, hg.kernels)):
        records.append(
            {
                "index": k,
                "atoms": atoms.tolist(),
                "kernel_atoms": kernel.tolist(),
                "elements": Atoms(numbers=hg.z[atoms]).get_chemical_formula(),
                "size": len(atoms),
            }
        )
    return records
