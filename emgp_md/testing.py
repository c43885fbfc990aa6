"""Reusable physics-contract assertions (float64, seeded): use them on any energy model or calculator.

- :func:`assert_e3_invariance` – energy invariant and forces equivariant under random O(3)
  (rotations and reflections) and translations.
- :func:`assert_permutation_invariance` – relabelling atoms permutes forces, keeps the energy.
- :func:`assert_forces_match_fd` – forces equal central finite differences of the energy.
- :func:`assert_batch_equals_single` – batched results equal per-molecule results.
- :func:`assert_energy_conserved` – NVE drift below a bound.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import numpy as np
import torch

from emgp_md.data.graph import GraphBatch, collate
from emgp_md.data.topology import Topology
from emgp_md.models.forces import energy_and_forces

EnergyForceFn = Callable[[np.ndarray], tuple[float, np.ndarray]]


def random_orthogonal(rng: np.random.Generator, reflect: bool | None = None) -> np.ndarray:
    """A Haar-random 3×3 orthogonal matrix; ``reflect`` forces det = -1 (True) or +1 (False)."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if reflect is not None and (np.linalg.det(q) < 0) != reflect:
        q[:, 0] = -q[:, 0]
    return q


def model_fn(model: torch.nn.Module, topology: Topology, dtype: torch.dtype = torch.float64) -> EnergyForceFn:
    """Wrap an energy model and a frozen topology as ``pos (n,3) Å -> (energy, forces)``, computed in
    ``dtype`` (float64 by default; float32 for the precision the calculator runs at) and returned as float64."""
    model = copy.deepcopy(model).to(dtype)  # never change the caller's model

    def fn(pos: np.ndarray) -> tuple[float, np.ndarray]:
        graph = collate([topology], [pos], dtype)
        e, f = energy_and_forces(model, graph)
        return float(e[0]), f.to(torch.float64).numpy()

    return fn


def calculator_fn(atoms: object) -> EnergyForceFn:
    """Wrap an ``ase.Atoms`` with a calculator as ``pos -> (energy eV, forces eV/Å)``."""

    def fn(pos: np.ndarray) -> tuple[float, np.ndarray]:
        a = atoms.copy()  # type: ignore[attr-defined]
        a.calc = atoms.calc  # type: ignore[attr-defined]
        a.positions = pos
        return float(a.get_potential_energy()), np.asarray(a.get_forces())

    return fn


def assert_e3_invariance(
    fn: EnergyForceFn, pos: np.ndarray, seed: int = 0, n_trials: int = 3, atol: float = 1e-8
) -> None:
    """``E(XQᵀ + t) = E(X)`` and ``F(XQᵀ + t) = F(X)Qᵀ`` for random orthogonal Q (with and without reflection)."""
    rng = np.random.default_rng(seed)
    e0, f0 = fn(pos)
    for trial in range(n_trials):
        q = random_orthogonal(rng, reflect=bool(trial % 2))
        t = rng.normal(scale=3.0, size=3)
        e1, f1 = fn(pos @ q.T + t)
        np.testing.assert_allclose(e1, e0, atol=atol, rtol=0, err_msg=f"energy not invariant (trial {trial})")
        np.testing.assert_allclose(f1, f0 @ q.T, atol=atol, rtol=0, err_msg=f"forces not equivariant (trial {trial})")


def assert_permutation_invariance(
    fn_of_perm: Callable[[np.ndarray], EnergyForceFn], pos: np.ndarray, seed: int = 0, atol: float = 1e-8
) -> None:
    """``fn_of_perm(perm)`` must return the model on atoms relabelled by ``perm`` (new atom k = old perm[k])."""
    perm = np.random.default_rng(seed).permutation(len(pos))
    e0, f0 = fn_of_perm(np.arange(len(pos)))(pos)
    e1, f1 = fn_of_perm(perm)(pos[perm])
    np.testing.assert_allclose(e1, e0, atol=atol, rtol=0, err_msg="energy changes under atom relabelling")
    np.testing.assert_allclose(f1, f0[perm], atol=atol, rtol=0, err_msg="forces do not follow atom relabelling")


def assert_forces_match_fd(
    fn: EnergyForceFn, pos: np.ndarray, delta_A: float = 1e-5, rtol: float = 1e-5, atol: float = 1e-7
) -> None:
    """Forces equal ``-(E(x+δ) - E(x-δ)) / 2δ`` for every coordinate."""
    _, forces = fn(pos)
    fd = np.zeros_like(pos)
    for idx in np.ndindex(*pos.shape):
        plus, minus = pos.copy(), pos.copy()
        plus[idx] += delta_A
        minus[idx] -= delta_A
        fd[idx] = -(fn(plus)[0] - fn(minus)[0]) / (2 * delta_A)
    np.testing.assert_allclose(forces, fd, rtol=rtol, atol=atol, err_msg="forces differ from finite differences")


def assert_batch_equals_single(
    model: torch.nn.Module,
    topologies: Sequence[Topology],
    positions: Sequence[np.ndarray],
    atol: float = 1e-10,
    dtype: torch.dtype = torch.float64,
) -> None:
    """One batched call gives the per-molecule energies and forces, and no cross-molecule gradient."""
    model = copy.deepcopy(model).to(dtype)
    batch: GraphBatch = collate(topologies, positions, dtype)
    e_b, f_b = energy_and_forces(model, batch)
    offset = 0
    for k, (topo, pos) in enumerate(zip(topologies, positions)):
        e_s, f_s = energy_and_forces(model, collate([topo], [pos], dtype))
        n = topo.n_atoms
        np.testing.assert_allclose(e_b[k].item(), e_s[0].item(), atol=atol, rtol=0, err_msg=f"energy of molecule {k}")
        np.testing.assert_allclose(
            f_b[offset : offset + n].numpy(), f_s.numpy(), atol=atol, rtol=0, err_msg=f"forces of molecule {k}"
        )
        offset += n
    pos = batch.pos.clone().requires_grad_(True)
    e = model(batch.with_pos(pos))
    (grad,) = torch.autograd.grad(e[0], pos)
    n0 = topologies[0].n_atoms
    assert torch.all(grad[n0:] == 0), "energy of molecule 0 depends on the positions of other molecules"


def assert_energy_conserved(
    time_ps: np.ndarray, etot_eV: np.ndarray, n_atoms: int, bound_meV_per_atom_ps: float
) -> float:
    """|NVE drift| (straight-line fit, meV/atom/ps) below the bound; returns the drift."""
    from emgp_md.md import energy_drift_meV_per_atom_ps

    drift = energy_drift_meV_per_atom_ps(time_ps, etot_eV, n_atoms)
    assert abs(drift) < bound_meV_per_atom_ps, f"NVE drift {drift:.4g} meV/atom/ps exceeds {bound_meV_per_atom_ps}"
    return drift
