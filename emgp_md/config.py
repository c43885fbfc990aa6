"""Typed configuration dataclasses, loaded strictly from YAML.

Unknown keys are errors; every value is checked against its field's type when the config is built
(a number written as a string, ``lr: "5e-4"``, is converted; anything else of the wrong type is
refused naming the key); enumerated options (``scheduler``, ``loss``, ``backbone``, ...) are
checked when the config is built, not epochs later. The strict loader (:func:`from_dict`,
:func:`load_yaml`, the checks) is :mod:`emgp_md.typed_config`, re-exported here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

from emgp_md.typed_config import check_choices, check_positive, coerce, from_dict, load_yaml

__all__ = [
    "FinetuneConfig",
    "MDConfig",
    "ModelConfig",
    "PretrainConfig",
    "check_choices",
    "coerce",
    "from_dict",
    "load_yaml",
    "to_dict",
]


@dataclass
class ModelConfig:
    """Architecture of an energy model.

    Attributes
    ----------
    backbone : str
        ``"egnn"`` (paper), ``"schnet"`` or ``"et"`` (TorchMD-Net equivariant transformer), the
        backbones of the paper's "different backbones" figure (docs/method.md §1.2–1.4), or
        ``"se3set"`` (SE3Set hypergraph transformer; needs a hypergraph, see docs/architecture.md).
    hidden_nf : int
        Width (paper: 128).
    n_layers : int
        Depth (paper: 7).
    attention : bool
        EGNN message gate.
    head : str
        ``"atomwise"`` (MD17 fine-tuning) or ``"pooled"`` (pretraining energy head).
    noise_levels : int
        Classes of the INP head; 0 for no INP head.
    distance_head : bool
        Add the per-edge distance-denoising head of the "Distance" ablation.
    cutoff_A : float, optional
        Cutoff radius of SchNet and ET, Å. ``None`` selects the paper's value of the backbone
        (SchNet 10 Å, ET 5 Å). EGNN has no cutoff and rejects a value.
    n_rbf : int
        Radial basis functions of SchNet (Gaussians) and ET (exp-normal); paper: 50. Unused by EGNN.
    n_heads : int
        Attention heads of ET (paper: 8); must divide ``hidden_nf``. Unused by EGNN and SchNet.
    se3set_preset : str
        SE3Set only: named architecture (``"md17"``: the authors' MD17 template, ``"cpu_small"``,
        ``"tiny"``; see :mod:`emgp_md.models.se3set.config`). SE3Set takes its sizes from here and
        ``se3set_overrides``; ``hidden_nf``, ``n_layers``, ``n_rbf``, ``n_heads`` and ``cutoff_A``
        must then stay at their defaults or equal the resolved sizes. Unused by other backbones.
    se3set_overrides : dict, optional
        SE3Set only: ``SE3SetSettings`` fields replacing the preset's (e.g. ``{"n_blocks": 4}``).
    """

    backbone: str = "egnn"
    hidden_nf: int = 128
    n_layers: int = 7
    attention: bool = True
    head: str = "atomwise"
    noise_levels: int = 0
    distance_head: bool = False
    cutoff_A: float | None = None
    n_rbf: int = 50
    n_heads: int = 8
    se3set_preset: str = "md17"
    se3set_overrides: dict[str, Any] | None = None

    CHOICES: ClassVar[dict[str, tuple[Any, ...]]] = {
        "backbone": ("egnn", "schnet", "et", "se3set"),
        "head": ("atomwise", "pooled"),
    }

    def __post_init__(self) -> None:
        check_choices(self)


@dataclass
class FinetuneConfig:
    """Energy + force fine-tuning on one or many molecules (defaults: the paper's recipe, docs/method.md §4.1).

    Attributes
    ----------
    data : str
        Labelled frames in any format of :func:`emgp_md.data.readers.read_dataset` (extxyz, ASE
        database, rMD17 ``.npz``, generic ``.npz`` with a declared unit).
    data_format : str, optional
        Format of ``data``, ``val_data`` and ``test_data`` when the suffix does not tell.
    energy_key, forces_key : str
        Keys of the labels in ``data`` (e.g. ``REF_energy``).
    energy_unit : str, optional
        Unit of the energies in the files (forces: the same per Å); required for formats that carry
        none (generic ``.npz``), ASE formats default to eV and rMD17 to kcal/mol.
    val_data, test_data : str, optional
        Frames for validation (else ``n_val`` drawn from ``data``) and for the final test MAE
        (else ``n_test`` drawn from ``data``).
    n_train : int, optional
        Training frames drawn (seeded) from ``data``; ``None``: all frames not used for validation and test.
    n_val, n_test : int
        Frames (``split: frames``) or molecules (``split: molecules``) held out from ``data`` for
        validation and test.
    split : str
        ``"frames"`` (random frames) or ``"molecules"`` (held-out molecules, for many-molecule sets).
    pretrained : str, optional
        Checkpoint whose backbone is transferred (heads fresh).
    init_model : str, optional
        A fine-tuned model whose every weight (backbone and heads) and energy scale the run starts from,
        to continue on more labels (``emgp-md learn``'s later rounds); its architecture is used.
        Excludes ``pretrained``.
    init : str
        From scratch: ``"default"``, ``"paper"`` or ``"unit_distance"`` (:func:`~emgp_md.models.unit_distance_init_`).
    normalisation : str
        Scale of the normalised energies: ``"energy_std"`` (paper: std of the training energies) or
        ``"force_rms"`` (RMS of the training force components × 1 Å, which makes the force targets O(1)).
    energy_weight, force_weight : float
        Loss weights (paper 0.2 / 0.8).
    loss : str
        ``"l1"`` (paper), ``"mse"``, or ``"mse_then_l1"`` (MSE for ``warmup_epochs``, then L1).
    lr : float
        Adam learning rate (paper 5e-4).
    scheduler : str
        ``"plateau"`` (paper: ReduceLROnPlateau factor 0.9, patience 30) or ``"cosine"``.
    max_wall_time_s : float, optional
        Stop cleanly after the epoch that passes this wall time; ``--resume`` continues (a session limit).
    cpu_budget_s : float, optional
        Training budget in CPU seconds of the process (``time.process_time``): training *ends* at
        the first batch past it, the best-validation model is tested and the run is finished.
        For comparisons at equal compute (single process only).
    device : str
        Torch device of a single-process run: ``"cpu"`` (default) or ``"cuda"`` / ``"cuda:<k>"``.
        Under ``torchrun`` the process group chooses the device instead.
    compile_step : bool
        Run the training steps of an EGNN with the atomwise head as one ``torch.compile`` graph
        (:mod:`emgp_md.models.egnn.compiled`): about 1.2× faster a step on a CPU after a one-off
        compile of 1–2 minutes per batch shape (needs a C++ compiler; falls back to the eager
        path, same numbers, when compiling fails). Worth it for runs of more than a few minutes.
    compile_mode : str
        ``torch.compile`` mode of ``compile_step``: ``"default"`` or ``"max-autotune-no-cudagraphs"``.
    """

    data: str = ""
    data_format: str | None = None
    energy_key: str = "energy"
    forces_key: str = "forces"
    energy_unit: str | None = None
    val_data: str | None = None
    test_data: str | None = None
    n_train: int | None = None
    n_val: int = 50
    n_test: int = 0
    split: str = "frames"
    label_set: str = "rmd17"
    model: ModelConfig = field(default_factory=ModelConfig)
    pretrained: str | None = None
    init_model: str | None = None
    init: str = "default"
    epochs: int = 1500
    batch_size: int = 100
    lr: float = 5e-4
    min_lr: float = 1e-6
    weight_decay: float = 0.0
    scheduler: str = "plateau"
    plateau_factor: float = 0.9
    plateau_patience: int = 30
    normalisation: str = "energy_std"
    energy_weight: float = 0.2
    force_weight: float = 0.8
    loss: str = "l1"
    warmup_epochs: int = 0
    max_wall_time_s: float | None = None
    cpu_budget_s: float | None = None
    seed: int = 2021
    threads: int | None = None
    dtype: str = "float32"
    device: str = "cpu"
    compile_step: bool = False
    compile_mode: str = "default"

    CHOICES: ClassVar[dict[str, tuple[Any, ...]]] = {
        "compile_mode": ("default", "max-autotune-no-cudagraphs"),
        "data_format": (None, "extxyz", "xyz", "db", "rmd17", "rmd17-archive", "npz"),
        "split": ("frames", "molecules"),
        "label_set": ("rmd17", "md17"),
        "init": ("default", "paper", "unit_distance"),
        "scheduler": ("plateau", "cosine"),
        "normalisation": ("energy_std", "force_rms"),
        "loss": ("l1", "mse", "mse_then_l1"),
        "dtype": ("float32", "float64"),
    }

    def __post_init__(self) -> None:
        check_choices(self)
        if self.energy_unit is not None:
            from emgp_md.units import energy_unit_to_eV

            try:
                energy_unit_to_eV(self.energy_unit)
            except ValueError as exc:
                raise ValueError(f"FinetuneConfig.energy_unit: {exc}") from None
        check_positive(self, ("lr", "batch_size"), ("epochs", "n_val", "n_test", "warmup_epochs", "min_lr"))
        if self.n_train is not None and self.n_train < 1:
            raise ValueError(f"FinetuneConfig.n_train must be at least 1 (or null for all frames), got {self.n_train}")


@dataclass
class PretrainConfig:
    """3D-EMGP pretraining (docs/method.md §2; defaults are the paper's recipe).

    Attributes
    ----------
    data : str
        Conformer set folder (``emgp-md conformers`` output).
    variant : str
        ``"riemann"`` (Ours), ``"gaussian"`` (Gaussian target), ``"direct"`` (equivariant
        coordinate output, no energy), ``"distance"`` (denoising on interatomic distances).
    efp_weight, inp_weight : float
        λ1 and λ2 (paper 1.0 and 0.2); ``inp_weight: 0`` is "EFP only", ``efp_weight: 0`` "INP only".
    sigma_begin_A, sigma_end_A, n_levels : float, float, int
        Geometric noise levels (paper 10 → 0.01 Å, 50 levels).
    steps : int
        Perturbation steps (1 = isotropic Gaussian, as released; > 1 = the Langevin-like chain).
    cpu_budget_s : float, optional
        Training budget in CPU seconds of the process: training ends at the first step past it,
        after a last validation and checkpoint (single process only).
    """

    data: str = ""
    variant: str = "riemann"
    efp_weight: float = 1.0
    inp_weight: float = 0.2
    sigma_begin_A: float = 10.0
    sigma_end_A: float = 0.01
    n_levels: int = 50
    steps: int = 1
    model: ModelConfig = field(default_factory=lambda: ModelConfig(head="pooled", noise_levels=50))
    epochs: int = 300
    batch_size: int = 64
    lr: float = 5e-4
    min_lr: float = 1e-5
    weight_decay: float = 0.0
    grad_clip: float = 5.0
    n_val_molecules: int = 500
    max_conformers: int | None = None
    checkpoint_every_steps: int = 200
    max_wall_time_s: float | None = None
    cpu_budget_s: float | None = None
    seed: int = 2021
    threads: int | None = None

    CHOICES: ClassVar[dict[str, tuple[Any, ...]]] = {"variant": ("riemann", "gaussian", "direct", "distance")}

    def __post_init__(self) -> None:
        check_choices(self)
        check_positive(self, ("lr", "batch_size", "n_levels", "steps"), ("epochs",))


@dataclass
class MDConfig:
    """Molecular dynamics run (ASE units)."""

    structure: str = "aspirin"
    model: str | None = None
    ensemble: str = "langevin"
    temperature_K: float = 300.0
    timestep_fs: float = 0.5
    steps: int = 1000
    friction_per_fs: float = 0.01
    seed: int = 0
    interval: int = 10
    dtype: str = "float32"

    CHOICES: ClassVar[dict[str, tuple[Any, ...]]] = {
        "ensemble": ("langevin", "nve"),
        "dtype": ("float32", "float64"),
    }

    def __post_init__(self) -> None:
        check_choices(self)
        check_positive(self, ("timestep_fs", "interval"), ("temperature_K", "steps", "friction_per_fs"))


_SE3SET_KEYS = ("se3set_preset", "se3set_overrides")


def _drop_unused_se3set_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``asdict`` factory: a ModelConfig of another backbone with the SE3Set keys at their defaults
    is written without them, so files for EGNN/SchNet/ET stay readable by versions that lack them."""
    out = dict(pairs)
    if (
        all(k in out for k in _SE3SET_KEYS)
        and "backbone" in out
        and out["backbone"] != "se3set"
        and out["se3set_preset"] == ModelConfig.se3set_preset
        and out["se3set_overrides"] is None
    ):
        for key in _SE3SET_KEYS:
            del out[key]
    return out


def to_dict(config: Any) -> dict[str, Any]:
    """JSON-able dict of a config dataclass (unused SE3Set keys of a ModelConfig left out)."""
    return dataclasses.asdict(config, dict_factory=_drop_unused_se3set_keys)
