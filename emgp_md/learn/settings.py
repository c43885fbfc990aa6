"""Settings of ``emgp-md learn`` (a typed config: YAML keys are checked like every other config)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from emgp_md.config import check_choices


@dataclass
class LearnConfig:
    """Active learning of a model for one new molecule (ASE units).

    Attributes
    ----------
    labeller : str
        ``"pyscf"`` (PBE/def2-SVP with density fitting, the rMD17 level of theory) or ``"xtb"``
        (GFN2-xTB: fast, for trying the pipeline).
    temperature_K, timestep_fs : float
        Temperature of the sampling, probe and stability runs (Langevin) and their time step.
    n_pool : int
        Frames of the first GFN2-xTB MD run: the initial labels are drawn from them.
    n_initial, n_per_round, max_labels : int
        Labels of round 0, labels added per round, and the budget (training labels; the test labels
        come on top).
    n_test : int
        Labelled frames of a separate xTB MD run, never trained on: the test errors.
    committee : int
        Models fine-tuned per round (different seeds of the fresh heads and of the validation split).
    epochs, cpu_budget_s : int, float
        Fine-tuning epochs per member in round 0 (from the pretrained backbone), and a CPU-second cap per
        member and round (None: no cap).
    refine_epochs : int
        0 (default): every round fine-tunes its members afresh from the pretrained backbone for ``epochs``.
        Otherwise, later rounds continue each member from its own model of the round before for this many
        epochs: about 3x cheaper per round but measured less accurate per label (docs/learn.md).
    probe_ps : float
        Committee MD per round; its frames of highest force disagreement are labelled next.
    stability_ps : float
        Length of the final stability run (bond criterion: no bond of the start more than 0.5 Å
        from its starting length).
    disagreement_eV_A : float
        The committee agrees when the 95th percentile of the force disagreement along a probe run
        (:func:`emgp_md.committee.force_disagreement`, max over atoms) is below this.
    pretrained : str
        Backbone to fine-tune from: a shipped name (``"authors-3dmgp"``) or a checkpoint path;
        ``"none"`` trains from scratch (the side-by-side of the data-efficiency claim).
    scratch_hidden_nf, scratch_layers : int
        EGNN width and depth when ``pretrained`` is ``"none"`` (a pretrained backbone brings its own;
        default the paper's 7 x 128, so scratch and pretrained compare at one size).
    workers : int
        Labelling processes on this machine.
    dask_scheduler : str, optional
        Address of a running ``dask.distributed`` scheduler (``tcp://host:8786``): labels then run on
        that cluster through its client's executor (extra ``dask``), instead of local processes.
    seed : int
    """

    labeller: str = "xtb"
    temperature_K: float = 500.0
    timestep_fs: float = 0.5
    n_pool: int = 200
    n_initial: int = 40
    n_per_round: int = 30
    max_labels: int = 300
    n_test: int = 50
    committee: int = 4
    epochs: int = 60
    refine_epochs: int = 0
    cpu_budget_s: float | None = None
    batch_size: int = 16
    lr: float = 5e-4
    probe_ps: float = 2.0
    stability_ps: float = 20.0
    disagreement_eV_A: float = 0.15
    pretrained: str = "authors-3dmgp"
    scratch_hidden_nf: int = 128
    scratch_layers: int = 7
    workers: int = 1
    dask_scheduler: str | None = None
    seed: int = 0

    CHOICES: ClassVar[dict[str, tuple[Any, ...]]] = {"labeller": ("pyscf", "xtb")}

    def __post_init__(self) -> None:
        check_choices(self)
        for key in (
            "n_pool",
            "n_initial",
            "n_per_round",
            "max_labels",
            "epochs",
            "batch_size",
            "workers",
            "scratch_hidden_nf",
            "scratch_layers",
        ):
            if getattr(self, key) < 1:
                raise ValueError(f"LearnConfig.{key} must be at least 1, got {getattr(self, key)}")
        if self.committee < 2:
            raise ValueError(f"LearnConfig.committee must be at least 2 (a committee), got {self.committee}")
        if self.n_initial > self.n_pool:
            raise ValueError(f"LearnConfig.n_initial ({self.n_initial}) exceeds n_pool ({self.n_pool})")
        if self.refine_epochs < 0:
            raise ValueError(f"LearnConfig.refine_epochs must be >= 0, got {self.refine_epochs}")
        for key in ("temperature_K", "timestep_fs", "probe_ps", "stability_ps", "disagreement_eV_A", "lr"):
            if getattr(self, key) <= 0:
                raise ValueError(f"LearnConfig.{key} must be > 0, got {getattr(self, key)}")
