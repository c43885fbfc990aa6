"""Shared helpers of the benchmark scripts: models, structures, timing statistics, reports."""

from __future__ import annotations

import copy
import datetime as _dt
import json
import logging
import os
import platform
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ase import Atoms

log = logging.getLogger("benchmarks")
REPO_ROOT = Path(__file__).resolve().parents[1]


def setup_logging(verbose: bool = False) -> None:
    """INFO logging to stderr (DEBUG with ``verbose``); stdout is left for the final table."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def set_threads(threads: int) -> None:
    """Intra-op threads of torch (the protocol uses 2); inter-op stays torch's default."""
    if threads < 1:
        raise ValueError(f"--threads must be >= 1, got {threads}")
    torch.set_num_threads(threads)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git_state() -> dict[str, Any]:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout.strip()

    try:
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None}


def machine_info() -> dict[str, Any]:
    """Machine, versions, date and command line of this run (for the JSON report)."""
    import ase

    import emgp_md

    try:
        load = list(os.getloadavg())
    except OSError:
        load = None
    return {
        "date_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "load_average_1_5_15min_at_start": load,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "numpy": np.__version__,
        "ase": ase.__version__,
        "emgp_md": emgp_md.__version__,
        "git": _git_state(),
        "command": [sys.executable, *sys.argv],
        "env_OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
    }


def summarize_ms(times_s: Sequence[float]) -> dict[str, float]:
    """Median, 10th/90th percentiles and mean of wall times, in ms."""
    t = np.asarray(times_s, dtype=np.float64) * 1e3
    if t.size == 0:
        raise ValueError("no timings to summarise")
    return {
        "median_ms": float(np.median(t)),
        "p10_ms": float(np.percentile(t, 10)),
        "p90_ms": float(np.percentile(t, 90)),
        "mean_ms": float(t.mean()),
        "n": int(t.size),
    }


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table; floats are printed with 4 significant digits."""

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _finite(obj: Any) -> Any:
    """Replace NaN and infinities by None so the report is strict JSON."""
    if isinstance(obj, float):
        return obj if np.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def write_json(path: str | Path | None, payload: dict[str, Any]) -> None:
    """Write the JSON report (no-op when ``path`` is None)."""
    if path is None:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_finite(payload), indent=2, default=float, allow_nan=False) + "\n")
    log.info("wrote %s", path)


@dataclass
class ModelSpec:
    """A model to benchmark, with what an ``EMGPCalculator`` needs.

    Attributes
    ----------
    label : str
        Short name used in tables (e.g. ``"paper 7x128"``, ``"shipped aspirin"``).
    model : EnergyModel
        Float32, CPU, eval mode. Never handed to a calculator directly: use :meth:`copy_model`.
    metadata : dict
        Checkpoint-style metadata (``units``, ``topology``, ``species``).
    description : str
        Where the weights came from.
    """

    label: str
    model: Any
    metadata: dict[str, Any] = field(default_factory=dict)
    description: str = ""

    def copy_model(self) -> Any:
        """Independent deep copy (calculators convert their model's dtype in place)."""
        return copy.deepcopy(self.model).eval()

    @property
    def energy_to_eV(self) -> float:
        from emgp_md.units import ARBITRARY, energy_unit_to_eV

        return energy_unit_to_eV(self.metadata.get("units", {}).get("energy", ARBITRARY))

    @property
    def n_params(self) -> int:
        return int(sum(p.numel() for p in self.model.parameters()))


def ensure_topology(spec: ModelSpec, atoms: Atoms) -> None:
    """Give a model without a stored reference topology the bond graph of ``atoms`` (as a fine-tuned
    checkpoint carries one), so every calculator built from ``spec`` freezes the same graph."""
    if spec.metadata.get("topology") is None:
        from emgp_md.data.topology import topology_from_positions

        spec.metadata["topology"] = topology_from_positions(atoms.numbers, atoms.positions).to_dict()


def official_checkpoint_path() -> Path:
    """The authors' pretrained checkpoint in the shared data folder (``$EMGP_MD_DATA`` respected)."""
    from emgp_md.data.rmd17 import default_data_dir

    return default_data_dir() / "emgp_official" / "checkpoint-3dmgp"


def paper_size_model(weights: str = "auto", seed: int = 0, hidden_nf: int = 128, n_layers: int = 7) -> ModelSpec:
    """The paper's EGNN (7 × 128) with an atomwise head, energy in kcal/mol, no normalisation.

    Parameters
    ----------
    weights : ``"auto"``, ``"official"`` or ``"random"``
        ``"official"``: backbone from the authors' ``checkpoint-3dmgp`` (``"auto"`` uses it when
        the file exists), head seeded-random; ``"random"``: PyTorch's default init, seeded.
    seed : int
        Seed of the random initialisation.
    """
    from emgp_md.config import ModelConfig
    from emgp_md.models import build_model

    if weights not in ("auto", "official", "random"):
        raise ValueError(f"weights must be 'auto', 'official' or 'random', got {weights!r}")
    torch.manual_seed(seed)
    model = build_model(ModelConfig(hidden_nf=hidden_nf, n_layers=n_layers, head="atomwise"))
    ckpt = official_checkpoint_path()
    use_official = weights == "official" or (weights == "auto" and ckpt.is_file())
    if use_official and (hidden_nf, n_layers) != (128, 7):
        raise ValueError("the official backbone is 7 x 128; use --weights random for other sizes")
    if use_official:
        from emgp_md.training.transfer import pretrained_backbone

        backbone, _ = pretrained_backbone(ckpt)
        model.backbone.load_state_dict(backbone, strict=True)
        desc = f"official 3D-EMGP backbone ({ckpt.name}) + atomwise head, seeded init (seed {seed})"
    else:
        desc = f"random weights, PyTorch default init (seed {seed})"
    meta = {"units": {"energy": "kcal/mol", "length": "Angstrom"}, "topology": None}
    return ModelSpec(f"paper {n_layers}x{hidden_nf}", model.eval(), meta, desc)


def checkpoint_model(path: str | Path, label: str | None = None) -> ModelSpec:
    """A model from an emgp-md checkpoint file."""
    from emgp_md.models.checkpoint import load_checkpoint

    model, meta = load_checkpoint(path)
    cfg = meta.get("model", {})
    name = label or meta.get("name") or Path(path).stem
    return ModelSpec(
        f"{name} {cfg.get('n_layers')}x{cfg.get('hidden_nf')}", model.eval(), meta, f"checkpoint {Path(path)}"
    )


def shipped_model(name: str) -> ModelSpec | None:
    """The shipped model ``name`` (``emgp_md.pretrained``), or None when it is not shipped."""
    from emgp_md.pretrained import available_models, model_path

    if name not in available_models():
        return None
    spec = checkpoint_model(model_path(name), label=f"shipped {name}")
    spec.description = f"shipped model {name!r} ({model_path(name).name})"
    return spec


def molecule_atoms(name: str, structure: str | None = None) -> Atoms:
    """Starting structure: ``structure`` (a file or shipped name), else the shipped model's reference
    geometry, else the first frame of ``rmd17_<name>_train_01.npz`` in the shared data folder."""
    from emgp_md.pretrained import available_models, load_structure, reference_atoms

    if structure is not None:
        atoms = load_structure(structure)
    elif name in available_models():
        atoms = reference_atoms(name)
    else:
        from emgp_md.data.rmd17 import load_frames, split_path

        path = split_path(name, "train", 1)
        frames = load_frames(path)
        atoms = Atoms(numbers=frames.z, positions=frames.coords[0])
        log.info("%s: starting structure = frame 0 of %s", name, path)
    atoms.pbc = False
    return atoms
