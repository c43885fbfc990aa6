"""SE3Set fragmentation, spatial part (docs/method.md §S1.4–S1.6): kernels and fragments.

Starting from the unbreakable chemical groups (:mod:`emgp_md.data.fragment_groups`, topological):

1. **Empirical bond orders.** For atoms ``a, b`` at distance ``d`` (Å), with ``rho = R_a + R_b``
   from :data:`COVALENT_RADIUS_A`: ``w_ab = exp(-(d - rho) rho / 0.25)`` ("lendvay", as the
   authors coded it) or ``w_ab = exp(rho - d)`` ("simple_exp").
2. **Merging.** Groups smaller than ``min_kernel_atoms`` are merged, smallest first, into a
   covalently bonded group, or else into a group with maximal ``w >= min_bond_order``, giving
   **kernels** (a partition of the atoms).
3. **Overlap.** In explicit mode every kernel is widened by each outside group ``H`` whose summed
   (or maximal) bond order to it is ``>= overlap_threshold`` (the "groups" overlap level of the
   templates); in implicit mode the fragments are the kernels, and overlap is made at the incidence
   level (:mod:`emgp_md.data.hypergraph`).

Not implemented: the authors' "frags" overlap level (order-dependent, docs/method.md §S7.7) and the
"topo" capping level (used by none of their templates).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

#: Covalent radii (Å) of the authors' fragmenter (``se3set/fragment/calculators/reference.py``).
COVALENT_RADIUS_A: dict[str, float] = {
    "H": 0.31,
    "Li": 1.28,
    "B": 0.84,
    "C": 0.76,
    "N": 0.71,
    "O": 0.66,
    "F": 0.57,
    "Si": 1.11,
    "P": 1.07,
    "S": 1.05,
    "Cl": 1.02,
    "As": 1.19,
    "Se": 1.20,
    "Br": 1.20,
    "Te": 1.38,
    "I": 1.39,
}

LENDVAY_DIVISOR = 0.25  # hard-coded in the authors' code (their ``_a`` argument is ignored)

_MODES = ("explicit", "implicit")
_BOND_ORDER_METHODS = ("lendvay", "simple_exp")
_REDUCTIONS = ("sum", "max")


@dataclass(frozen=True)
class FragmentOptions:
    """Settings of the fragmenter; the defaults are the authors' MD17 aspirin template.

    Parameters
    ----------
    mode : {"explicit", "implicit"}
        Overlap by widening fragments with neighbour groups, or by attaching atoms to foreign
        kernels within ``implicit_rc_A`` (docs/method.md §S1.6, §S1.8).
    bond_order_method : {"lendvay", "simple_exp"}
        Empirical bond-order formula (``empr_bo_method``).
    topo_bond_order_threshold : float
        Bonds of Kekulé order above this are unbreakable (``topoBO_threshold``; 1.0: double, triple).
    min_kernel_atoms : int
        Groups smaller than this are merged (``min_kernel_atoms_num``; 0 disables merging).
    max_kernel_atoms : int or None
        Size limit for merging into a bonded group; not re-checked by the spatial fallback.
    min_bond_order : float
        Smallest group-to-group maximal bond order for the spatial fallback (``min_bo_threshold``).
    overlap_threshold : float
        ``c_w``: explicit mode adds an outside group whose bond order to the kernel is at least this.
    overlap_reduce : {"sum", "max"}
        Sum (the templates) or maximum of the atom-pair bond orders (``expand_fbo_method``).
    implicit_rc_A : float, Å
        Implicit mode: an atom joins every foreign kernel with an atom within this distance.
    """

    mode: str = "explicit"
    bond_order_method: str = "lendvay"
    topo_bond_order_threshold: float = 1.0
    min_kernel_atoms: int = 2
    max_kernel_atoms: int | None = 16
    min_bond_order: float = 0.1
    overlap_threshold: float = 0.1
    overlap_reduce: str = "sum"
    implicit_rc_A: float = 4.0

    def __post_init__(self) -> None:
        for name, value, allowed in (
            ("mode", self.mode, _MODES),
            ("bond_order_method", self.bond_order_method, _BOND_ORDER_METHODS),
            ("overlap_reduce", self.overlap_reduce, _REDUCTIONS),
        ):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        if self.min_kernel_atoms < 0:
            raise ValueError(f"min_kernel_atoms must be >= 0, got {self.min_kernel_atoms}")
        if self.max_kernel_atoms is not None and self.max_kernel_atoms < 1:
            raise ValueError(f"max_kernel_atoms must be >= 1 or None, got {self.max_kernel_atoms}")
        if self.min_bond_order <= 0 or self.overlap_threshold <= 0 or self.implicit_rc_A <= 0:
            raise ValueError(
                "min_bond_order, overlap_threshold and implicit_rc_A must be > 0, got "
                f"{self.min_bond_order}, {self.overlap_threshold}, {self.implicit_rc_A}"
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FragmentOptions:
        """Inverse of :meth:`to_dict`; unknown keys are errors."""
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown FragmentOptions key(s) {unknown}")
        return cls(**data)


#: The authors' templates (docs/method.md §S1.7): MD17 aspirin, MD22 Ac-Ala3-NHMe, QM9 dipole.
PRESETS: dict[str, FragmentOptions] = {
    "md17": FragmentOptions(),
    "md22": FragmentOptions(
        mode="implicit",
        bond_order_method="simple_exp",
        min_kernel_atoms=0,
        max_kernel_atoms=8,
        min_bond_order=0.1,
        implicit_rc_A=4.0,
    ),
    "qm9": FragmentOptions(
        bond_order_method="simple_exp",
        min_kernel_atoms=2,
        max_kernel_atoms=6,
        min_bond_order=0.4,
        overlap_threshold=0.2,
    ),
}


def covalent_radii(z: np.ndarray) -> np.ndarray:
    """Radii ``R_a`` (Å) from :data:`COVALENT_RADIUS_A`, shape ``(n_atoms,)``.

    Raises
    ------
    ValueError
        An element outside the table, naming the element and its atom indices.
    """
    from ase.data import chemical_symbols

    symbols = [chemical_symbols[int(v)] if 0 <= int(v) < len(chemical_symbols) else f"Z={int(v)}" for v in z]
    missing = sorted({s for s in symbols if s not in COVALENT_RADIUS_A})
    if missing:
        where = {s: [i for i, t in enumerate(symbols) if t == s] for s in missing}
        raise ValueError(
            f"no SE3Set covalent radius for element(s) {where} (element: atom indices); "
            f"the fragmenter supports {sorted(COVALENT_RADIUS_A)}"
        )
    return np.asarray([COVALENT_RADIUS_A[s] for s in symbols], dtype=np.float64)


def empirical_bond_orders(z: np.ndarray, pos_A: np.ndarray, method: str = "lendvay") -> np.ndarray:
    """Dense matrix ``w_ab`` of distance-based bond orders (docs/method.md §S1.4), shape ``(n_atoms, n_atoms)``.

    Parameters
    ----------
    z : (n_atoms,) int
    pos_A : (n_atoms, 3) float, Å
    method : {"lendvay", "simple_exp"}
    """
    rho = covalent_radii(z)
    rho = rho[:, None] + rho[None, :]
    pos = np.asarray(pos_A, dtype=np.float64)
    d = np.linalg.norm(pos[:, None, :] - pos[None, :, :], axis=-1)
    if method == "lendvay":
        return np.exp(-(d - rho) * rho / LENDVAY_DIVISOR)
    if method == "simple_exp":
        return np.exp(rho - d)
    raise ValueError(f"bond-order method must be one of {_BOND_ORDER_METHODS}, got {method!r}")


def group_matrix(atom_matrix: np.ndarray, groups: list[np.ndarray], reduce: str = "max") -> np.ndarray:
    """Group-by-group reduction (max or sum over atom pairs) of an atom matrix; the diagonal is 0."""
    op = np.max if reduce == "max" else np.sum
    out = np.zeros((len(groups), len(groups)), dtype=np.float64)
    for a, ga in enumerate(groups):
        for b in range(a + 1, len(groups)):
            out[a, b] = out[b, a] = op(atom_matrix[np.ix_(ga, groups[b])])
    return out


def merge_groups(
    groups: list[np.ndarray], bond_orders: np.ndarray, adjacency: np.ndarray, options: FragmentOptions
) -> tuple[list[list[int]], list[bool]]:
    """Merge small groups into kernels (``MergeGroupsBOFragmentor.merge_frags``, docs/method.md §S1.5).

    Parameters
    ----------
    groups : list of (n_g,) int arrays
        Atom indices per group, in the authors' order (largest first; ties by smallest atom).
    bond_orders : (n_atoms, n_atoms) float
        Empirical bond orders ``w_ab``.
    adjacency : (n_atoms, n_atoms) int
        1 for covalently bonded atom pairs.
    options : FragmentOptions

    Returns
    -------
    kernels : list of list of int
        Group indices of each kernel.
    isolated : list of bool
        True for kernels that found no receiver (they are never widened by overlap).
    """
    sizes = [len(g) for g in groups]
    if sum(sizes) <= options.min_kernel_atoms or len(groups) <= 1:
        return [list(range(len(groups)))], [False]
    a_mat = group_matrix(bond_orders, groups, "max")
    t_mat = group_matrix(adjacency.astype(np.float64), groups, "max")
    members = [[g] for g in range(len(groups))]
    centrality = [float(a_mat[g][a_mat[g] >= 0].sum()) for g in range(len(groups))]

    def key(k: int) -> tuple[int, float]:
        return sizes[k], centrality[k]

    order = sorted(range(len(groups)), key=key, reverse=True)
    isolated: list[int] = []
    while order and sizes[order[-1]] < options.min_kernel_atoms:
        m = order.pop()
        bonded = [int(k) for k in np.nonzero(t_mat[m] >= 1)[0] if k != m]
        recv = min(bonded, key=key) if bonded else None
        limit = options.max_kernel_atoms
        if recv is None or (limit is not None and sizes[m] + sizes[recv] > limit):
            near = [int(k) for k in np.nonzero(a_mat[m] >= options.min_bond_order)[0] if k != m]
            if not near:
                isolated.append(m)
                continue
            recv = min(near, key=key)  # spatial fallback: the size limit is not re-checked
        for mat in (a_mat, t_mat):
            mat[recv] = np.maximum(mat[recv], mat[m])
            mat[:, recv] = np.maximum(mat[:, recv], mat[:, m])
            mat[recv, recv] = 0.0
            mat[m] = -1.0
            mat[:, m] = -1.0
        members[recv] += members[m]
        sizes[recv] += sizes[m]
        centrality[recv] = float(a_mat[recv][a_mat[recv] >= 0].sum())
        order.sort(key=key, reverse=True)
    kernels = order + isolated
    return [members[k] for k in kernels], [k in isolated for k in kernels]


def expand_kernels(
    groups: list[np.ndarray],
    kernels: list[list[int]],
    isolated: list[bool],
    bond_orders: np.ndarray,
    options: FragmentOptions,
) -> list[np.ndarray]:
    """Explicit "groups"-level overlap (``_get_grouplevel_overlaps_*``, docs/method.md §S1.6).

    Kernel ``K`` receives every outside group ``H`` with ``S_KH >= overlap_threshold``, where
    ``S_KH`` is the sum (or max) of ``w_ab`` over ``a in K, b in H``. Isolated kernels, and the
    kernel of a one-kernel molecule, are not widened.

    Returns
    -------
    list of (n_f,) int64 arrays
        Sorted atom indices of each fragment, in kernel order.
    """
    kernel_atoms = [np.sort(np.concatenate([groups[g] for g in k])) for k in kernels]
    if len(kernels) <= 1:
        return kernel_atoms
    s_mat = group_matrix(bond_orders, groups, options.overlap_reduce)
    fragments = []
    for atoms, k, lonely in zip(kernel_atoms, kernels, isolated):
        if lonely:
            fragments.append(atoms)
            continue
        rows = s_mat[k]
        score = rows.sum(axis=0) if options.overlap_reduce == "sum" else rows.max(axis=0)
        score[k] = -np.inf
        extra = [groups[h] for h in np.nonzero(score >= options.overlap_threshold)[0]]
        fragments.append(np.sort(np.concatenate([atoms, *extra])))
    return fragments
