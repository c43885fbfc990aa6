"""Bond perception from a geometry with element-aware covalent radii, and bond-change detection.

Two atoms ``i, j`` are bonded when ``d_ij <= PERCEIVE_FACTOR * (r_i + r_j)``, with ``r`` the
covalent radii of Cordero et al. (2008) as tabulated in ``ase.data.covalent_radii``; the factor
1.3 is RDKit's default ``covFactor`` for connectivity perception (``rdDetermineBonds``). On the
eight rMD17 reference frames it gives exactly the bond graphs of the authors' 1.6 Å recipe (bonded
pairs reach at most 1.09, non-bonded pairs at least 1.51 of the radius sum).

During a run the frozen graph is watched with hysteresis, so vibrations never count as events:
a bond counts as **broken** beyond ``BREAK_FACTOR`` (1.5) of the radius sum (a C–H bond at 1.6 Å,
about the 0.5 Å bond deviation of the stability criterion), a non-bonded pair as **formed** below
``FORM_FACTOR`` (1.1). Over all 9,633 distinct rMD17 frames (500 K MD) of each molecule, bonded
pairs reach at most 1.32 and non-bonded pairs come no closer than 1.23 (salicylic acid's
hydrogen bond), so the thresholds leave a margin on both sides.
"""

from __future__ import annotations

import numpy as np
from ase.data import covalent_radii

PERCEIVE_FACTOR = 1.3
BREAK_FACTOR = 1.5
FORM_FACTOR = 1.1
OVERLAP_FACTOR = 0.5


def distance_matrix(pos_A: np.ndarray) -> np.ndarray:
    """(n, n) interatomic distances in Å of positions ``pos_A`` (n, 3) Å."""
    pos = np.asarray(pos_A, dtype=np.float64)
    diff = pos[:, None, :] - pos[None, :, :]
    return np.sqrt(np.einsum("ijk,ijk->ij", diff, diff))


def radius_sums(z: np.ndarray) -> np.ndarray:
    """(n, n) sums of covalent radii in Å of atomic numbers ``z`` (n,)."""
    r = covalent_radii[np.asarray(z, dtype=np.int64)]
    return r[:, None] + r[None, :]


def perceive_bonds(z: np.ndarray, pos_A: np.ndarray, factor: float = PERCEIVE_FACTOR) -> np.ndarray:
    """Bonds ``(i, j), i < j`` with ``d_ij <= factor * (r_i + r_j)``.

    Parameters
    ----------
    z : (n_atoms,) int
        Atomic numbers.
    pos_A : (n_atoms, 3) float, Å
    factor : float
        Multiple of the covalent-radius sum below which a pair is bonded.

    Returns
    -------
    (n_bonds, 2) int64
    """
    within = distance_matrix(pos_A) <= factor * radius_sums(z)
    i, j = np.nonzero(np.triu(within, k=1))
    return np.stack([i, j], axis=1).astype(np.int64)


def connected_components(n_atoms: int, bonds: np.ndarray) -> list[np.ndarray]:
    """Atom indices of each connected component of the bond graph, smallest atom first."""
    parent = np.arange(n_atoms)

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return int(a)

    for i, j in np.asarray(bonds, dtype=np.int64).reshape(-1, 2):
        ri, rj = find(int(i)), find(int(j))
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    roots = np.array([find(a) for a in range(n_atoms)])
    return [np.nonzero(roots == r)[0] for r in sorted(set(roots.tolist()))]


def close_pairs(z: np.ndarray, pos_A: np.ndarray, factor: float = OVERLAP_FACTOR) -> list[tuple[int, int, float]]:
    """Pairs ``(i, j, d_ij Å)`` closer than ``factor`` times their covalent-radius sum (overlapping atoms)."""
    dist = distance_matrix(pos_A)
    i, j = np.nonzero(np.triu(dist < factor * radius_sums(z), k=1))
    return [(int(a), int(b), float(dist[a, b])) for a, b in zip(i, j)]


class BondWatch:
    """Watches a frozen bond graph for broken and formed bonds (hysteresis thresholds above).

    Parameters
    ----------
    z : (n_atoms,) int
    bonds : (n_bonds, 2) int
        The frozen graph, atom indices of the structure being watched.
    break_factor, form_factor : float
        Multiples of the covalent-radius sum beyond which a bond is broken, below which a
        non-bonded pair is bonded.
    overlap_factor : float
        Multiple of the radius sum below which any pair overlaps (as :func:`close_pairs`), checked
        from the same distances, so a run needs one distance matrix per step.
    """

    def __init__(
        self,
        z: np.ndarray,
        bonds: np.ndarray,
        break_factor: float = BREAK_FACTOR,
        form_factor: float = FORM_FACTOR,
        overlap_factor: float = OVERLAP_FACTOR,
    ) -> None:
        n = len(z)
        sums = radius_sums(z)
        bonded = np.zeros((n, n), dtype=bool)
        b = np.asarray(bonds, dtype=np.int64).reshape(-1, 2)
        bonded[b[:, 0], b[:, 1]] = True
        bonded |= bonded.T
        upper = np.triu(np.ones((n, n), dtype=bool), k=1)
        # squared thresholds: one comparison per pair and no square root in the hot path
        self._break_sq = np.where(bonded & upper, (break_factor * sums) ** 2, np.inf)
        self._form_sq = np.where(~bonded & upper, (form_factor * sums) ** 2, -np.inf)
        self._overlap_sq = np.where(upper, (overlap_factor * sums) ** 2, -np.inf)

    def changes(
        self, pos_A: np.ndarray
    ) -> tuple[list[tuple[int, int]], list[tuple[int, int]], list[tuple[int, int, float]]]:
        """``(broken, formed, overlapping)`` at positions ``pos_A`` (n, 3) Å: pairs ``(i, j), i < j``;
        overlapping pairs carry their distance in Å, as :func:`close_pairs` gives them."""
        diff = pos_A[:, None, :] - pos_A[None, :, :]
        d2 = np.einsum("ijk,ijk->ij", diff, diff)

        def pairs(mask: np.ndarray) -> list[tuple[int, int]]:
            return [(int(i), int(j)) for i, j in np.argwhere(mask)]

        overlaps = [(i, j, float(np.sqrt(d2[i, j]))) for i, j in pairs(d2 < self._overlap_sq)]
        return pairs(d2 > self._break_sq), pairs(d2 < self._form_sq), overlaps
