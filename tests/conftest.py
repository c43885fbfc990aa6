"""Shared fixtures: shared-data location, tiny seeded models, molecules, the --runslow option."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import molecule

from emgp_md.config import ModelConfig
from emgp_md.data.graph import GraphBatch, repeat_topology
from emgp_md.data.topology import Topology, topology_from_positions
from emgp_md.models import build_model
from emgp_md.models.checkpoint import make_metadata, save_checkpoint
from emgp_md.models.energy_model import EnergyModel

TESTS_DATA = Path(__file__).resolve().parent / "fixtures"


# --------------------------------------------------------------------------- options
def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", default=False, help="also run tests marked slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--runslow"):
        return
    skip_slow = pytest.mark.skip(reason="slow test: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)


# --------------------------------------------------------------------------- data
def _shared_data_dir() -> Path:
    env = os.environ.get("EMGP_MD_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``$EMGP_MD_DATA`` or ``<repo>/../shared/data``; skips the test when it is absent."""
    path = _shared_data_dir()
    if not path.is_dir():
        pytest.skip(f"shared data not found at {path} (set EMGP_MD_DATA to run this test)")
    return path


@pytest.fixture(scope="session")
def official_checkpoint(shared_data: Path) -> Path:
    """The authors' released ``checkpoint-3dmgp``; skips when it is absent."""
    path = shared_data / "emgp_official" / "checkpoint-3dmgp"
    if not path.is_file():
        pytest.skip(f"official 3D-EMGP checkpoint not found at {path}")
    return path


@pytest.fixture(scope="session")
def tests_data() -> Path:
    """The folder of the tiny data files the tests read (``tests/fixtures``)."""
    return TESTS_DATA


@pytest.fixture(scope="session")
def tiny_rmd17() -> Path:
    """24 ethanol frames of rMD17 train_01 in the per-split layout (see tests/fixtures/make_fixtures.py)."""
    return TESTS_DATA / "rmd17" / "rmd17_ethanol_train_01.npz"


# --------------------------------------------------------------------------- molecules
@pytest.fixture
def ethanol() -> Atoms:
    return molecule("CH3CH2OH")


@pytest.fixture
def benzene() -> Atoms:
    return molecule("C6H6")


def topo_of(atoms: Atoms) -> Topology:
    """Distance-based frozen topology of an ``Atoms``."""
    return topology_from_positions(atoms.numbers, atoms.positions)


def jittered_frames(name: str = "CH3CH2OH", n_frames: int = 3, seed: int = 0) -> GraphBatch:
    """``n_frames`` seeded perturbations (σ = 0.08 Å) of ASE's ``molecule(name)`` as one dense float64 batch."""
    atoms = molecule(name)
    rng = np.random.default_rng(seed)
    coords = atoms.positions[None] + rng.normal(scale=0.08, size=(n_frames, *atoms.positions.shape))
    return repeat_topology(topo_of(atoms), torch.as_tensor(coords, dtype=torch.float64))


# --------------------------------------------------------------------------- models
def make_small_model(
    seed: int = 0,
    hidden_nf: int = 16,
    n_layers: int = 2,
    head: str = "atomwise",
    noise_levels: int = 0,
    energy_scale: float = 1.0,
    energy_shift: float = 0.0,
) -> EnergyModel:
    """A seeded random EGNN energy model in eval mode (float32; call ``.double()`` for float64 tests)."""
    torch.manual_seed(seed)
    cfg = ModelConfig(hidden_nf=hidden_nf, n_layers=n_layers, head=head, noise_levels=noise_levels)
    return build_model(cfg, energy_scale=energy_scale, energy_shift=energy_shift).eval()


@pytest.fixture
def small_model() -> Callable[..., EnergyModel]:
    """Factory of seeded small random models: ``small_model(seed=0, hidden_nf=16, n_layers=2, ...)``."""
    return make_small_model


@pytest.fixture
def small_checkpoint(tmp_path: Path) -> Path:
    """A small random model (species H, C, O; energy in kcal/mol; scale 40, shift -50) saved as a checkpoint.

    The scale gives forces of ~0.03 eV/Å on ethanol, so MD and relaxation actually move the atoms.
    """
    model = make_small_model(seed=3, energy_scale=40.0, energy_shift=-50.0)
    cfg = ModelConfig(hidden_nf=16, n_layers=2)
    meta = make_metadata(cfg, species=[1, 6, 8], energy_unit="kcal/mol", name="tiny-test")
    path = tmp_path / "tiny.pt"
    save_checkpoint(path, model, meta)
    return path


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


@pytest.fixture
def compile_calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """``torch.compile`` replaced by the identity (the traced function runs eagerly); records calls.
    The module's caches start empty and are restored afterwards."""
    from emgp_md.models.egnn import compiled

    calls: list[dict[str, Any]] = []

    def identity(fn: Callable[..., Any], **kwargs: Any) -> Callable[..., Any]:
        calls.append(kwargs)
        return fn

    monkeypatch.setattr(compiled.torch, "compile", identity)
    monkeypatch.setattr(compiled, "_compiled", {})
    monkeypatch.setattr(compiled, "_failed", set())
    return calls
