"""The config of an accelerator session (``workflows/configs/gpu_session.yaml``): the data-efficiency
grid, the paper-regime runs and the paper's recipe, loaded strictly (unknown keys, unknown
molecules, inits without step budgets and unknown recipe keys are errors at load, not in a worker).
The runs themselves are :mod:`emgp_md.reproduce.gpu_session`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from emgp_md.config import FinetuneConfig, from_dict
from emgp_md.data.rmd17 import MOLECULES

INITS = ("pretrained", "scratch")


@dataclass
class GridSpec:
    """The data-efficiency grid.

    Attributes
    ----------
    molecules, n_train, seeds, inits : lists
        The grid axes; ``inits`` ⊆ {"pretrained", "scratch"}.
    n_val : int
        Validation frames per run (from ``train_01``, disjoint from the training frames).
    steps : dict
        N → optimizer steps (before ``step_scale``), the same for both inits.
    val_points : int
        Validations per run (every ``steps // val_points`` steps).
    recipe : dict
        FinetuneConfig keys shared by both inits (``pretrained`` and ``device`` are set by the session).
    init_overrides : dict
        Init → FinetuneConfig keys for that init only (empty by default: one recipe for both).
    workers : int
        Grid worker processes.
    """

    molecules: list[str] = field(default_factory=lambda: ["aspirin", "ethanol", "malonaldehyde", "uracil"])
    n_train: list[int] = field(default_factory=lambda: [25, 50, 100, 250, 500, 950])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    inits: list[str] = field(default_factory=lambda: list(INITS))
    n_val: int = 50
    steps: dict[int, int] = field(default_factory=dict)
    val_points: int = 20
    recipe: dict[str, Any] = field(default_factory=dict)
    init_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    workers: int = 10


@dataclass
class PaperRegimeSpec:
    """Fine-tuning from the authors' checkpoint on the ~8,600 frames outside ``test_01``.

    Attributes
    ----------
    molecules : list of str
        One worker each.
    n_val : int
        Validation frames, drawn from the pool frames outside ``train_01``.
    seed : int
    val_every : int
        Steps between validations.
    recipe : dict
        FinetuneConfig keys (cosine schedule over the session's training wall time).
    """

    molecules: list[str] = field(default_factory=lambda: ["aspirin", "ethanol", "malonaldehyde", "uracil"])
    n_val: int = 500
    seed: int = 2021
    val_every: int = 200
    recipe: dict[str, Any] = field(default_factory=dict)


@dataclass
class PaperRecipeSpec:
    """The paper's own recipe (FinetuneConfig defaults plus ``recipe``) on 950/50 frames of ``train_01``.

    Attributes
    ----------
    molecules : list of str
        One worker each (empty: none).
    epochs : int
        Planned epochs (paper 1,500); the session deadline usually cuts the run first.
    pretrained : bool
        Start from the authors' checkpoint.
    """

    molecules: list[str] = field(default_factory=lambda: ["aspirin"])
    epochs: int = 1500
    seed: int = 2021
    pretrained: bool = True
    recipe: dict[str, Any] = field(default_factory=dict)


@dataclass
class SessionConfig:
    """A whole session (``workflows/configs/gpu_session.yaml``).

    Attributes
    ----------
    out : str
        Root of the run folders.
    data_dir : str
        Folder of the packs (``workflows/pack_gpu_data.py``) and of ``checkpoint-3dmgp``.
    device : str
        ``"cuda"`` on the accelerator, ``"cpu"`` for the toy test.
    threads : int
        Torch CPU threads per worker.
    train_s, hard_stop_s : float
        Seconds after the session start when training stops (runs are cut and tested), and when
        the driver ends any worker still running.
    grid_step_scale : float or "auto"
        Multiplies every grid step budget; ``"auto"``: sized from the measured step time so that
        the grid fits the training time (clipped to ``[min_step_scale, max_step_scale]``).
    mps : bool
        Try CUDA MPS (one GPU context shared by the workers) when the device is CUDA.
    bench_molecule, bench_batch, bench_steps
        The smoke test of every worker: timed training steps of the authors' checkpoint.
    """

    out: str = "runs/gpu_session"
    data_dir: str = ".gpu_data"
    device: str = "cuda"
    threads: int = 1
    train_s: float = 420.0
    hard_stop_s: float = 480.0
    grid_step_scale: Any = "auto"
    min_step_scale: float = 0.5
    max_step_scale: float = 2.0
    mps: bool = True
    bench_molecule: str = "aspirin"
    bench_batch: int = 32
    bench_steps: int = 20
    grid: GridSpec = field(default_factory=GridSpec)
    paper_regime: PaperRegimeSpec = field(default_factory=PaperRegimeSpec)
    paper_recipe: PaperRecipeSpec = field(default_factory=PaperRecipeSpec)

    @property
    def pretrained_path(self) -> str:
        return str(Path(self.data_dir) / "checkpoint-3dmgp")


def load_session(path: str | Path, overrides: dict[str, Any] | None = None) -> SessionConfig:
    """Strictly load a session YAML (unknown keys are errors); checks molecules, inits and step budgets."""
    raw = yaml.safe_load(Path(path).read_text()) or {}
    raw.update(overrides or {})
    cfg = from_dict(SessionConfig, raw)
    mols = cfg.grid.molecules + cfg.paper_regime.molecules + cfg.paper_recipe.molecules + [cfg.bench_molecule]
    bad = sorted({m for m in mols if m not in MOLECULES})
    if bad:
        raise ValueError(f"unknown rMD17 molecule(s) {bad}; known: {list(MOLECULES)}")
    if set(cfg.grid.inits) - set(INITS):
        raise ValueError(f"grid inits must be among {INITS}, got {cfg.grid.inits}")
    missing = [n for n in cfg.grid.n_train if n not in cfg.grid.steps]
    if cfg.grid.molecules and missing:
        raise ValueError(f"grid.steps has no step budget for N = {missing}")
    if not (cfg.grid_step_scale == "auto" or isinstance(cfg.grid_step_scale, (int, float))):
        raise ValueError(f"grid_step_scale must be a number or 'auto', got {cfg.grid_step_scale!r}")
    for recipe in [
        cfg.grid.recipe,
        cfg.paper_regime.recipe,
        cfg.paper_recipe.recipe,
        *cfg.grid.init_overrides.values(),
    ]:
        from_dict(FinetuneConfig, recipe)  # unknown recipe keys are errors now, not in a worker
    return cfg
