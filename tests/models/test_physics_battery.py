"""The physics battery of :mod:`emgp_md.testing` on every backbone, in float32 and in float64.

float64 checks the maths to round-off; float32 is what the calculator runs by default, so the
contracts must also hold there, to float32's precision (tolerances per precision below).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from ase.build import molecule

from emgp_md.config import ModelConfig
from emgp_md.data.topology import topology_from_positions
from emgp_md.models import build_model
from emgp_md.testing import (
    assert_batch_equals_single,
    assert_e3_invariance,
    assert_forces_match_fd,
    assert_permutation_invariance,
    model_fn,
)


@dataclass(frozen=True)
class Precision:
    dtype: torch.dtype
    atol: float  # energies (model units) and forces
    fd_delta_A: float
    fd_rtol: float
    fd_atol: float


PRECISIONS = {
    "float64": Precision(torch.float64, 1e-8, 1e-5, 1e-5, 1e-7),
    "float32": Precision(torch.float32, 2e-4, 1e-2, 5e-2, 5e-3),
}


@pytest.fixture(params=sorted(PRECISIONS))
def precision(request) -> Precision:
    """Runs a test once in float32 and once in float64."""
    return PRECISIONS[request.param]


def _model(backbone: str):
    torch.manual_seed(0)
    kw = {} if backbone == "egnn" else {"n_rbf": 16, "n_heads": 4}
    # energy scale: forces of ~0.1 eV/Å for every backbone, so no contract holds vacuously
    return build_model(ModelConfig(backbone=backbone, hidden_nf=16, n_layers=2, **kw), energy_scale=50.0).eval()


@pytest.mark.parametrize("backbone", ["egnn", "schnet", "et"])
def test_physics_battery(backbone, precision):
    ethanol = molecule("CH3CH2OH")
    model = _model(backbone)
    topo = topology_from_positions(ethanol.numbers, ethanol.positions)
    fn = model_fn(model, topo, precision.dtype)
    _, f = fn(ethanol.positions)
    assert np.abs(f).max() > 1e-3, "forces vanish: the battery would be vacuous"
    assert_e3_invariance(fn, ethanol.positions, seed=1, atol=precision.atol)

    def fn_of_perm(perm: np.ndarray):
        return model_fn(model, topology_from_positions(ethanol.numbers[perm], ethanol.positions[perm]), precision.dtype)

    assert_permutation_invariance(fn_of_perm, ethanol.positions, seed=2, atol=precision.atol)
    assert_forces_match_fd(
        fn, ethanol.positions, delta_A=precision.fd_delta_A, rtol=precision.fd_rtol, atol=precision.fd_atol
    )
    water = molecule("H2O")
    topos = [topo, topology_from_positions(water.numbers, water.positions)]
    assert_batch_equals_single(
        model, topos, [ethanol.positions, water.positions], atol=precision.atol, dtype=precision.dtype
    )
