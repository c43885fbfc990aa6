"""Riemann-Gaussian force target, noise levels and the Gaussian perturbation (float64, seeded)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from emgp_md.pretrain.noise import center, noise_levels, perturb_gaussian, riemann_score
from emgp_md.testing import random_orthogonal

N_ATOMS = 7


def _score(x_noisy: np.ndarray, x_clean: np.ndarray) -> np.ndarray:
    """riemann_score of one molecule, numpy in and out."""
    batch = torch.zeros(len(x_noisy), dtype=torch.long)
    return riemann_score(torch.as_tensor(x_noisy), torch.as_tensor(x_clean), batch, 1).numpy()


def _log_rie(x_noisy: np.ndarray, x_clean: np.ndarray, sigma: float) -> float:
    """log Rie_σ(X̃|X) = -‖ỸỸᵀ - YYᵀ‖²_F / (4σ²) up to a constant, Y the centred conformers."""
    yt = x_noisy - x_noisy.mean(axis=0)
    y = x_clean - x_clean.mean(axis=0)
    return -np.sum((yt @ yt.T - y @ y.T) ** 2) / (4 * sigma**2)


def _alpha(x_noisy: np.ndarray, x_clean: np.ndarray) -> float:
    yt = x_noisy - x_noisy.mean(axis=0)
    y = x_clean - x_clean.mean(axis=0)
    return (np.linalg.norm(yt.T @ yt) + np.linalg.norm(y.T @ yt)) / 2


@pytest.fixture
def pair(rng):
    x = rng.normal(scale=1.5, size=(N_ATOMS, 3))
    return x + rng.normal(scale=0.3, size=x.shape), x


@pytest.mark.parametrize("sigma", [0.05, 0.7])
def test_score_is_scaled_gradient_of_log_density(pair, sigma):
    """s = σ²/α ∇_X̃ log Rie_σ(X̃|X), by central finite differences (α held constant)."""
    x_noisy, x_clean = pair
    delta = 1e-6
    grad = np.zeros_like(x_noisy)
    for idx in np.ndindex(*x_noisy.shape):
        plus, minus = x_noisy.copy(), x_noisy.copy()
        plus[idx] += delta
        minus[idx] -= delta
        grad[idx] = (_log_rie(plus, x_clean, sigma) - _log_rie(minus, x_clean, sigma)) / (2 * delta)
    expected = sigma**2 / _alpha(x_noisy, x_clean) * grad
    np.testing.assert_allclose(_score(x_noisy, x_clean), expected, rtol=1e-6, atol=1e-8)


def test_score_gram_matrix_form(pair):
    """s = -(ỸỸᵀ - YYᵀ)Ỹ / α (docs/method.md §2.5)."""
    x_noisy, x_clean = pair
    yt, y = x_noisy - x_noisy.mean(0), x_clean - x_clean.mean(0)
    expected = -(yt @ yt.T - y @ y.T) @ yt / _alpha(x_noisy, x_clean)
    np.testing.assert_allclose(_score(x_noisy, x_clean), expected, rtol=1e-12, atol=1e-12)


def test_score_vanishes_at_clean_and_rigid_motions(pair, rng):
    _, x = pair
    np.testing.assert_allclose(_score(x, x), 0.0, atol=1e-12)
    q = random_orthogonal(rng)
    np.testing.assert_allclose(_score(x @ q.T + rng.normal(size=3), x), 0.0, atol=1e-12)


def test_score_is_centred(pair):
    x_noisy, x_clean = pair
    np.testing.assert_allclose(_score(x_noisy, x_clean).sum(axis=0), 0.0, atol=1e-12)


@pytest.mark.parametrize("reflect", [False, True])
def test_rotating_clean_conformer_leaves_score_unchanged(pair, rng, reflect):
    x_noisy, x_clean = pair
    q = random_orthogonal(rng, reflect=reflect)
    s0 = _score(x_noisy, x_clean)
    s1 = _score(x_noisy, x_clean @ q.T + rng.normal(scale=2.0, size=3))
    np.testing.assert_allclose(s1, s0, rtol=0, atol=1e-12)


@pytest.mark.parametrize("reflect", [False, True])
def test_transforming_noisy_conformer_rotates_score(pair, rng, reflect):
    x_noisy, x_clean = pair
    q = random_orthogonal(rng, reflect=reflect)
    s0 = _score(x_noisy, x_clean)
    s1 = _score(x_noisy @ q.T + rng.normal(scale=2.0, size=3), x_clean)
    np.testing.assert_allclose(s1, s0 @ q.T, rtol=0, atol=1e-12)


def test_doubly_invariant(pair, rng):
    """s(X̃Q₁ᵀ + t₁, XQ₂ᵀ + t₂) = s(X̃, X) Q₁ᵀ for independent orthogonal Q₁, Q₂."""
    x_noisy, x_clean = pair
    q1, q2 = random_orthogonal(rng), random_orthogonal(rng, reflect=True)
    s0 = _score(x_noisy, x_clean)
    s1 = _score(x_noisy @ q1.T + rng.normal(size=3), x_clean @ q2.T + rng.normal(size=3))
    np.testing.assert_allclose(s1, s0 @ q1.T, rtol=0, atol=1e-12)
    assert np.abs(s0).max() > 1e-3  # not vacuous


def test_batched_score_equals_per_molecule(rng):
    sizes = [5, 9, 3]
    noisy, clean = [], []
    for n in sizes:
        x = rng.normal(size=(n, 3))
        clean.append(x)
        noisy.append(x + rng.normal(scale=0.4, size=x.shape))
    batch = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    s = riemann_score(torch.as_tensor(np.concatenate(noisy)), torch.as_tensor(np.concatenate(clean)), batch, len(sizes))
    offsets = np.cumsum([0] + sizes)
    for k in range(len(sizes)):
        np.testing.assert_allclose(s[offsets[k] : offsets[k + 1]].numpy(), _score(noisy[k], clean[k]), atol=1e-13)


def test_center(rng):
    pos = torch.as_tensor(rng.normal(size=(6, 3)))
    batch = torch.tensor([0, 0, 0, 1, 1, 1])
    c = center(pos, batch, 2)
    torch.testing.assert_close(c[:3].sum(0), torch.zeros(3, dtype=torch.float64), rtol=0, atol=1e-14)
    torch.testing.assert_close(c[3:].sum(0), torch.zeros(3, dtype=torch.float64), rtol=0, atol=1e-14)
    torch.testing.assert_close(c[:3] - c[0], pos[:3] - pos[0], rtol=0, atol=1e-14)


def test_noise_levels():
    s = noise_levels()
    assert s.shape == (50,) and s.dtype == torch.float64
    assert math.isclose(s[0].item(), 10.0, rel_tol=1e-12) and math.isclose(s[-1].item(), 0.01, rel_tol=1e-12)
    ratio = s[1:] / s[:-1]
    np.testing.assert_allclose(ratio.numpy(), 10 ** (-3 / 49), rtol=1e-12)
    # the levels named in the golden tests: l = 10 is ~2.4 Å, l = 40 ~0.036 Å
    assert 2.3 < s[10].item() < 2.5 and 0.035 < s[40].item() < 0.037


def test_perturb_gaussian_seeded_and_scaled(rng):
    pos = torch.as_tensor(rng.normal(size=(2000, 3)))
    sigma = torch.full((2000,), 0.3, dtype=torch.float64)
    a = perturb_gaussian(pos, sigma, torch.Generator().manual_seed(5))
    b = perturb_gaussian(pos, sigma, torch.Generator().manual_seed(5))
    c = perturb_gaussian(pos, sigma, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.dtype == torch.float64
    noise = (a - pos).numpy()
    assert abs(noise.std() - 0.3) < 0.02  # 6000 samples: std error ~0.003
    assert abs(noise.mean()) < 0.02
    # per-atom σ: atoms with σ = 0 stay put
    sigma2 = sigma.clone()
    sigma2[:10] = 0
    d = perturb_gaussian(pos, sigma2, torch.Generator().manual_seed(5))
    assert torch.equal(d[:10], pos[:10])
