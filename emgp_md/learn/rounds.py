"""The steps of one active-learning round: train a committee, probe it in MD, pick frames, check stability.

Each function is resumable by construction: a committee member whose ``metrics.json`` exists is not
trained again (one killed mid-training continues from its ``state.pt``); a probe or stability run
writes its summary JSON last and is reused when that file exists.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from emgp_md.atomic import atomic_write_json
from emgp_md.config import FinetuneConfig, ModelConfig
from emgp_md.data.frames import Dataset, Frames
from emgp_md.data.rmd17 import train_val_test_split
from emgp_md.errors import BondChangeError, StructureError
from emgp_md.learn.settings import LearnConfig

log = logging.getLogger(__name__)


def member_config(cfg: LearnConfig, k: int) -> FinetuneConfig:
    """Fine-tuning settings of committee member ``k`` (its own seed for the heads and the validation split)."""
    scratch = cfg.pretrained in ("none", "scratch")
    return FinetuneConfig(
        model=ModelConfig(hidden_nf=cfg.scratch_hidden_nf, n_layers=cfg.scratch_layers) if scratch else ModelConfig(),
        pretrained=None if scratch else cfg.pretrained,
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        cpu_budget_s=cfg.cpu_budget_s,
        seed=cfg.seed * 1000 + k,
        scheduler="cosine",
        min_lr=cfg.lr / 20,
    )


def validation_split(labels: Frames, seed: int) -> tuple[Dataset, Dataset]:
    """Training and validation sets of the labels: 10 % (at least 4 frames) held out, seeded."""
    n_val = max(4, len(labels) // 10)
    train, val, _ = train_val_test_split(len(labels), None, n_val, 0, seed)
    return Dataset([labels.subset(train)], labels.energy_unit), Dataset([labels.subset(val)], labels.energy_unit)


def train_committee(
    cfg: LearnConfig, labels: Frames, test: Frames | None, round_dir: Path, previous: Path | None = None
) -> tuple[list[Path], list[dict[str, Any]]]:
    """Fine-tune ``cfg.committee`` members on ``labels``; returns their model files and metrics.

    With ``previous`` (the round before) and ``cfg.refine_epochs``, member ``k`` continues from that
    round's member ``k`` for ``refine_epochs`` instead of starting from the pretrained backbone."""
    from emgp_md.training.finetune import finetune

    paths, metrics = [], []
    test_set = Dataset([test], test.energy_unit) if test is not None else None
    for k in range(cfg.committee):
        out = round_dir / f"member_{k}"
        done = out / "metrics.json"
        if done.is_file():
            result = json.loads(done.read_text())
        else:
            fcfg = member_config(cfg, k)
            if previous is not None and cfg.refine_epochs:
                fcfg.pretrained, fcfg.epochs = None, cfg.refine_epochs
                fcfg.init_model = str(previous / f"member_{k}" / "model.pt")
            train, val = validation_split(labels, fcfg.seed)
            log.info("round %s: training committee member %d of %d", round_dir.name, k + 1, cfg.committee)
            result = finetune(fcfg, out, resume=(out / "state.pt").is_file(), datasets=(train, val, test_set))
        paths.append(out / "model.pt")
        metrics.append(result)
    return paths, metrics


def _steps(length_ps: float, timestep_fs: float) -> int:
    return max(1, round(length_ps * 1000.0 / timestep_fs))


def probe(cfg: LearnConfig, models: list[Path], start: Atoms, out: Path, seed: int) -> dict[str, Any]:
    """Committee MD at ``cfg.temperature_K`` for ``cfg.probe_ps``; every geometry's force disagreement is
    kept (``out/probe_history.npz``) and summarised (``out/probe_summary.json``; ``out/probe.json`` holds the MD settings)."""
    from emgp_md.committee import CommitteeCalculator
    from emgp_md.md import run_md

    summary_path = out / "probe_summary.json"
    if summary_path.is_file():
        return json.loads(summary_path.read_text())
    atoms = start.copy()
    calc = CommitteeCalculator(models, record=True)
    atoms.calc = calc
    result = run_md(
        atoms,
        out / "probe",
        temperature_K=cfg.temperature_K,
        timestep_fs=cfg.timestep_fs,
        steps=_steps(cfg.probe_ps, cfg.timestep_fs),
        seed=seed,
        interval=20,
        stop_on=(BondChangeError, StructureError),
    )
    assert calc.history is not None
    positions = np.array([p for p, _ in calc.history])
    disagreement = np.array([d for _, d in calc.history])
    np.savez(out / "probe_history.npz", positions_A=positions, disagreement_eV_A=disagreement)
    summary = {
        "steps": result.steps,
        "steps_asked": _steps(cfg.probe_ps, cfg.timestep_fs),
        "intact": result.stopped_by is None,
        "stopped_by": None if result.stopped_by is None else str(result.stopped_by)[:300],
        "disagreement_p95_eV_A": float(np.percentile(disagreement, 95)) if len(disagreement) else None,
        "disagreement_max_eV_A": float(disagreement.max()) if len(disagreement) else None,
        "disagreement_median_eV_A": float(np.median(disagreement)) if len(disagreement) else None,
    }
    atomic_write_json(summary_path, summary)
    return summary


def select_frames(out: Path, n: int, z: np.ndarray, min_spacing: int = 20) -> list[Atoms]:
    """The ``n`` probe geometries of highest force disagreement, at least ``min_spacing`` steps apart
    while the probe has enough of them (then the next most uncertain ones); fewer only if the probe
    recorded fewer than ``n`` geometries."""
    data = np.load(out / "probe_history.npz")
    positions, score = data["positions_A"], data["disagreement_eV_A"]
    order = [int(i) for i in np.argsort(-score, kind="stable")]
    chosen: list[int] = []
    for i in order:
        if all(abs(i - j) >= min_spacing for j in chosen):
            chosen.append(i)
        if len(chosen) == n:
            break
    if len(chosen) < n:  # a short probe: the next most uncertain geometries, closer together
        chosen += [i for i in order if i not in chosen][: n - len(chosen)]
    return [Atoms(numbers=z, positions=positions[i]) for i in sorted(chosen)]


def stability_run(cfg: LearnConfig, model: Path, start: Atoms, out: Path, seed: int) -> dict[str, Any]:
    """``cfg.stability_ps`` of Langevin MD with ``model`` at ``cfg.temperature_K``; the bond criterion of the
    benchmarks (no bond of the start more than 0.5 Å from its starting length) on every saved frame."""
    import ase.io

    from emgp_md.analysis.trajectory import bond_stability
    from emgp_md.calculator import EMGPCalculator
    from emgp_md.data.bonds import perceive_bonds
    from emgp_md.md import run_md

    summary_path = out / "stability_summary.json"
    if summary_path.is_file():
        return json.loads(summary_path.read_text())
    atoms = start.copy()
    atoms.calc = EMGPCalculator(model=model, on_bond_change="warn")
    steps = _steps(cfg.stability_ps, cfg.timestep_fs)
    result = run_md(
        atoms,
        out / "stability",
        temperature_K=cfg.temperature_K,
        timestep_fs=cfg.timestep_fs,
        steps=steps,
        seed=seed,
        interval=20,
        stop_on=(StructureError,),
    )
    frames = ase.io.read(result.trajectory, index=":")
    positions = np.array([f.positions for f in frames])
    times = np.arange(len(frames)) * 20 * cfg.timestep_fs / 1000.0
    stab = bond_stability(positions, times, perceive_bonds(start.numbers, start.positions))
    summary = {
        "length_ps": cfg.stability_ps,
        "temperature_K": cfg.temperature_K,
        "steps": result.steps,
        "stable_time_ps": stab.stable_time_ps,
        "stable": stab.first_unstable_frame is None and result.steps == steps,
        "max_bond_deviation_A": float(stab.max_bond_deviation_A.max()),
        "trajectory": str(result.trajectory),
    }
    atomic_write_json(summary_path, summary)
    return summary


def with_labels(cfg: LearnConfig, n_labels: int, n_next: int) -> int:
    """How many of ``n_next`` frames fit in the label budget when ``n_labels`` are spent."""
    return max(0, min(n_next, cfg.max_labels - n_labels))


def round_record(
    r: int, n_labels: int, metrics: list[dict[str, Any]], probe_summary: dict[str, Any] | None
) -> dict[str, Any]:
    """Summary line of a round: labels, test errors (member 0 and the committee's spread), probe result."""
    tests = [m.get("test", {}) for m in metrics]
    f = [t["force_mae_meV_A"] for t in tests if "force_mae_meV_A" in t]
    e = [t["energy_mae_meV"] for t in tests if "energy_mae_meV" in t]
    return {
        "round": r,
        "n_labels": n_labels,
        "test_force_mae_meV_A": f[0] if f else None,
        "test_energy_mae_meV": e[0] if e else None,
        "test_force_mae_meV_A_members": f,
        "epochs": [m.get("epochs") for m in metrics],
        "probe": probe_summary,
    }
