"""Displacement directions for energy landscapes: random, principal components, Hessian modes.

Every direction ``d`` is an (n_atoms, 3) array in Å per unit coefficient, and a structure on a
landscape is ``X0 + a·d1 + b·d2``. The conventions are the same for all three kinds:

- **Free of rigid motions.** The three translations and three (two for a linear molecule)
  infinitesimal rotations about the centroid of ``X0`` are projected out, so a direction only
  changes internal coordinates (to first order).
- **Orthonormal, then scaled.** Directions are orthonormal as flattened 3N vectors (mass
  unweighted), then each is multiplied by √N so that its **per-atom RMS displacement is 1 Å**:
  ``sqrt(mean_i |d_i|²) = 1``. Both directions get the same norm √N, so they stay orthogonal.
  A coefficient ``a`` therefore moves the atoms by ``|a|`` Å RMS, and a point ``(a, b)`` sits at an
  RMS displacement of ``sqrt(a² + b²)`` Å from ``X0``.
- **Deterministic sign.** Each direction's largest-magnitude component is positive.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_RANK_TOL = 1e-8


def rigid_motion_basis(pos: np.ndarray) -> np.ndarray:
    """Orthonormal basis of the rigid motions of a structure.

    Parameters
    ----------
    pos : (n_atoms, 3) float, Å
        Positions; rotations are taken about their (unweighted) centroid.

    Returns
    -------
    (n_rigid, 3 * n_atoms) float64
        Orthonormal rows spanning translations and infinitesimal rotations; ``n_rigid`` is 6
        for a general molecule, 5 for a linear one and 3 for a single atom.
    """
    pos = np.asarray(pos, dtype=np.float64)
    n_atoms = _check_pos(pos)
    centred = pos - pos.mean(axis=0)
    vectors = []
    for k in range(3):
        axis = np.zeros(3)
        axis[k] = 1.0
        vectors.append(np.tile(axis, n_atoms))  # translation along k
        vectors.append(np.cross(axis, centred).reshape(-1))  # rotation about k
    _, s, vt = np.linalg.svd(np.asarray(vectors), full_matrices=False)
    return vt[s > _RANK_TOL * max(s.max(), 1.0)]


def project_out_rigid(d: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Remove the rigid-motion part of displacement(s) ``d``.

    Parameters
    ----------
    d : (..., n_atoms, 3) or (..., 3 * n_atoms) float, Å
    pos : (n_atoms, 3) float, Å
        Structure whose rigid motions are removed.

    Returns
    -------
    Same shape as ``d``: ``d - Bᵀ B d`` with ``B`` from :func:`rigid_motion_basis`.
    """
    basis = rigid_motion_basis(pos)
    d = np.asarray(d, dtype=np.float64)
    if d.size % basis.shape[1]:
        raise ValueError(f"displacements of shape {d.shape} do not fit {len(pos)} atoms")
    flat = d.reshape(-1, basis.shape[1])
    flat = flat - (flat @ basis.T) @ basis
    return flat.reshape(d.shape)


def orthonormal_rms_directions(vectors: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Project out rigid motions, orthonormalise (Gram–Schmidt by QR) and scale to 1 Å RMS per atom.

    Parameters
    ----------
    vectors : (n_dirs, n_atoms, 3) or (n_dirs, 3 * n_atoms) float
        Raw directions, in order of priority (the first keeps its direction exactly).
    pos : (n_atoms, 3) float, Å

    Returns
    -------
    (n_dirs, n_atoms, 3) float64, Å per unit coefficient

    Raises
    ------
    ValueError
        If the directions are (nearly) linearly dependent once rigid motions are removed.
    """
    n_atoms = _check_pos(np.asarray(pos))
    flat = project_out_rigid(np.asarray(vectors, dtype=np.float64).reshape(len(vectors), -1), pos)
    q, r = np.linalg.qr(flat.T)  # columns of q: orthonormal, spanning the leading vectors in order
    scale = np.abs(np.diag(r))
    if np.any(scale < 1e-9 * max(np.linalg.norm(flat, axis=1).max(), 1e-300)):
        raise ValueError(f"directions are linearly dependent after removing rigid motions (|R_kk| = {scale})")
    q = q.T * np.sign(np.diag(r))[:, None]  # keep each direction's orientation
    return _fix_sign(q * np.sqrt(n_atoms)).reshape(len(vectors), n_atoms, 3)


def random_directions(pos: np.ndarray, seed: int = 0, n: int = 2) -> np.ndarray:
    """Seeded random directions, orthonormal and free of rigid motions, 1 Å RMS per atom.

    Parameters
    ----------
    pos : (n_atoms, 3) float, Å
        Reference structure ``X0``.
    seed : int
        Seed of ``numpy.random.default_rng``.
    n : int
        Number of directions.

    Returns
    -------
    (n, n_atoms, 3) float64, Å per unit coefficient
    """
    pos = np.asarray(pos, dtype=np.float64)
    raw = np.random.default_rng(seed).normal(size=(n, pos.size))
    return orthonormal_rms_directions(raw, pos)


def kabsch_align(frames: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Superimpose frames on a reference by proper rotations (det +1) and translations.

    Parameters
    ----------
    frames : (n_frames, n_atoms, 3) float, Å
    reference : (n_atoms, 3) float, Å

    Returns
    -------
    (n_frames, n_atoms, 3) float64, Å
        Each frame rotated and translated to minimise its unweighted RMSD to ``reference``
        (Kabsch 1976); no reflections.
    """
    frames = np.asarray(frames, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    if frames.ndim != 3 or frames.shape[1:] != reference.shape:
        raise ValueError(f"frames of shape {frames.shape} do not match a reference of shape {reference.shape}")
    ref_c = reference.mean(axis=0)
    p = frames - frames.mean(axis=1, keepdims=True)
    h = np.einsum("fai,aj->fij", p, reference - ref_c)  # (n_frames, 3, 3) covariance
    u, _, vt = np.linalg.svd(h)
    det = np.sign(np.linalg.det(np.einsum("fij,fjk->fik", u, vt)))
    u[:, :, 2] *= det[:, None]  # flip the weakest axis where the best orthogonal map is a reflection
    rot = np.einsum("fij,fjk->fik", u, vt)  # p @ rot is aligned with the reference
    return np.einsum("fai,fij->faj", p, rot) + ref_c


@dataclass
class PCADirections:
    """Principal components of a frame set, as landscape directions.

    Attributes
    ----------
    directions : (n, n_atoms, 3) float64, Å per unit coefficient
        Top principal components with rigid motions projected out, orthonormalised and scaled to
        1 Å RMS per atom.
    coords_A : (n_frames, n) float64, Å
        Coefficients of every aligned frame in that basis, relative to ``reference``: the
        least-squares ``(a, b)`` with ``frame ≈ reference + a·d1 + b·d2``.
    explained_variance_ratio : (n,) float64
        Share of the total positional variance carried by each principal component.
    reference : (n_atoms, 3) float64, Å
        The structure the frames were aligned to (origin of ``coords_A``).
    aligned : (n_frames, n_atoms, 3) float64, Å
        The frames after Kabsch alignment.
    """

    directions: np.ndarray
    coords_A: np.ndarray
    explained_variance_ratio: np.ndarray
    reference: np.ndarray
    aligned: np.ndarray


def pca_directions(frames: np.ndarray, reference: np.ndarray | None = None, n: int = 2) -> PCADirections:
    """Top principal components of a trajectory or frame set, as landscape directions.

    The frames are first superimposed on ``reference`` (:func:`kabsch_align`, proper rotations
    only), so overall rotation and translation do not show up as principal components.

    Parameters
    ----------
    frames : (n_frames, n_atoms, 3) float, Å
        At least ``n + 1`` frames, in the atom order of ``reference``.
    reference : (n_atoms, 3) float, Å, optional
        The landscape origin ``X0``; default the first frame.
    n : int
        Number of components.

    Returns
    -------
    PCADirections
    """
    frames = np.asarray(frames, dtype=np.float64)
    if frames.ndim != 3 or len(frames) < n + 1:
        raise ValueError(f"need (n_frames >= {n + 1}, n_atoms, 3) frames for {n} components, got {frames.shape}")
    ref = frames[0] if reference is None else np.asarray(reference, dtype=np.float64)
    aligned = kabsch_align(frames, ref)
    flat = aligned.reshape(len(frames), -1)
    _, s, vt = np.linalg.svd(flat - flat.mean(axis=0), full_matrices=False)
    variance = s**2
    directions = orthonormal_rms_directions(vt[:n], ref)
    return PCADirections(
        directions=directions,
        coords_A=project_coords(aligned, ref, directions),
        explained_variance_ratio=variance[:n] / variance.sum(),
        reference=ref,
        aligned=aligned,
    )


def project_coords(frames: np.ndarray, origin: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """Least-squares coefficients of frames in an orthogonal direction basis.

    Parameters
    ----------
    frames : (n_frames, n_atoms, 3) float, Å
        Already aligned to ``origin`` (see :func:`kabsch_align`).
    origin : (n_atoms, 3) float, Å
    directions : (n_dirs, n_atoms, 3) float, Å per unit coefficient, mutually orthogonal

    Returns
    -------
    (n_frames, n_dirs) float64, Å
    """
    disp = (np.asarray(frames) - np.asarray(origin)).reshape(len(frames), -1)
    dirs = np.asarray(directions).reshape(len(directions), -1)
    return disp @ dirs.T / np.einsum("ki,ki->k", dirs, dirs)


@dataclass
class NormalModes:
    """Normal modes of a Hessian, as landscape directions.

    Attributes
    ----------
    directions : (n, n_atoms, 3) float64, Å per unit coefficient
        The chosen eigenvectors, scaled to 1 Å RMS per atom.
    eigenvalues_eV_per_A2 : (n,) float64
        Their eigenvalues λ (curvature per unit *Euclidean* 3N displacement). Along a scaled
        direction the energy grows as ``E ≈ E0 + ½·N·λ·a²``: the grid curvature is ``N·λ``.
    all_eigenvalues_eV_per_A2 : (3N - n_rigid,) float64
        Every internal eigenvalue, ascending.
    indices : (n,) int
        Positions of the chosen modes in ``all_eigenvalues_eV_per_A2``.
    """

    directions: np.ndarray
    eigenvalues_eV_per_A2: np.ndarray
    all_eigenvalues_eV_per_A2: np.ndarray
    indices: np.ndarray


def normal_modes(hessian: np.ndarray, pos: np.ndarray, modes: tuple[int, ...] = (0, 1)) -> NormalModes:
    """Internal normal modes of a Hessian (rigid motions removed exactly).

    The Hessian is restricted to the orthogonal complement of :func:`rigid_motion_basis` and
    diagonalised there, so the 6 (5) rigid zero modes never appear, whatever their numerical noise.

    Parameters
    ----------
    hessian : (3N, 3N) float, eV/Å²
        Symmetric second derivatives of the energy with respect to the flattened positions.
    pos : (n_atoms, 3) float, Å
    modes : tuple of int
        Which internal modes to return, counted from the lowest eigenvalue (0 = softest).

    Returns
    -------
    NormalModes
    """
    pos = np.asarray(pos, dtype=np.float64)
    n_atoms = _check_pos(pos)
    hess = np.asarray(hessian, dtype=np.float64)
    if hess.shape != (3 * n_atoms, 3 * n_atoms):
        raise ValueError(f"Hessian of shape {hess.shape} does not fit {n_atoms} atoms")
    rigid = rigid_motion_basis(pos)
    u, s, _ = np.linalg.svd(np.eye(3 * n_atoms) - rigid.T @ rigid)
    internal = u[:, s > 0.5]  # (3N, 3N - n_rigid) orthonormal complement of the rigid motions
    evals, evecs = np.linalg.eigh(internal.T @ (0.5 * (hess + hess.T)) @ internal)
    idx = np.asarray(modes, dtype=np.int64)
    if idx.min() < 0 or idx.max() >= len(evals):
        raise ValueError(f"modes {list(modes)} out of range: {len(evals)} internal modes")
    vectors = (internal @ evecs[:, idx]).T  # orthonormal rows, rigid-free
    directions = _fix_sign(vectors * np.sqrt(n_atoms)).reshape(len(idx), n_atoms, 3)
    return NormalModes(directions, evals[idx], evals, idx)


def _fix_sign(flat: np.ndarray) -> np.ndarray:
    """Flip rows so that each row's largest-magnitude component is positive."""
    pivots = flat[np.arange(len(flat)), np.abs(flat).argmax(axis=1)]
    return flat * np.where(pivots < 0, -1.0, 1.0)[:, None]


def _check_pos(pos: np.ndarray) -> int:
    if pos.ndim != 2 or pos.shape[1] != 3 or len(pos) == 0:
        raise ValueError(f"positions must have shape (n_atoms, 3), got {pos.shape}")
    return int(pos.shape[0])
