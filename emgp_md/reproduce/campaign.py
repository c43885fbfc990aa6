"""A campaign of pretraining and fine-tuning runs (the MD17 reproduction), resumable and skip-finished.

A campaign YAML names pretraining runs and fine-tuning run *specs*; each spec expands to one run per
rMD17 molecule. Every run is a separate ``emgp-md`` process (so several run side by side on the cores
without sharing a Python interpreter), writes into ``<out>/<spec>/<molecule>/`` and is

- skipped when it has finished (``metrics.json`` with ``finished: true`` for fine-tuning,
  ``done.json`` for pretraining),
- resumed (``--resume``) when it has a ``state.pt`` from an interrupted attempt,
- started otherwise.

Fine-tuning specs may start from a campaign pretraining run (``pretrained: "@<name>"``); those run
after the pretraining, everything else before it, ``jobs`` processes at a time.

A campaign may ``extends: <other campaign YAML>``: it takes the other file's keys and replaces
those it sets itself (whole keys, e.g. ``out``). With ``finetune_overrides`` (applied to every
fine-tuning run after its spec's own overrides) that makes a repeat at another seed a few lines.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from emgp_md.atomic import atomic_write_json, atomic_write_text
from emgp_md.config import from_dict
from emgp_md.data.rmd17 import MOLECULES

log = logging.getLogger(__name__)


@dataclass
class PretrainRun:
    """One pretraining run: a PretrainConfig YAML plus top-level overrides (e.g. ``variant``)."""

    name: str = ""
    config: str = ""
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass
class FinetuneSpec:
    """A fine-tuning recipe applied to several molecules.

    Attributes
    ----------
    name : str
        Row name in the tables (``scratch``, ``ours``, ``official``, ...).
    config : str
        FinetuneConfig YAML; ``data`` and ``test_data`` are filled in per molecule.
    pretrained : str, optional
        Checkpoint path, or ``"@<pretrain run name>"`` for the best checkpoint of a campaign pretraining run.
    molecules : list of str, optional
        Default: the campaign's molecules.
    epochs : dict, optional
        Per-molecule epoch budget, ``{"default": 40, "benzene": 60}``; the warm-up stays ``warmup_fraction``.
    warmup_fraction : float
        MSE warm-up epochs as a fraction of the epochs when ``epochs`` is given.
    overrides : dict
        Other FinetuneConfig keys.
    """

    name: str = ""
    config: str = ""
    pretrained: str | None = None
    molecules: list[str] | None = None
    epochs: dict[str, int] | None = None
    warmup_fraction: float = 0.2
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass
class CampaignConfig:
    """The whole campaign (``workflows/configs/reproduce_md17.yaml``)."""

    out: str = "runs/md17"
    data_dir: str = "../shared/data/rmd17"
    split: int = 1
    molecules: list[str] = field(default_factory=lambda: list(MOLECULES))
    jobs: int = 2
    pretrain: list[PretrainRun] = field(default_factory=list)
    finetune: list[FinetuneSpec] = field(default_factory=list)
    finetune_overrides: dict[str, Any] = field(default_factory=dict)


def _read_campaign_yaml(path: str | Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The YAML mapping of a campaign, with ``extends`` resolved (the file's own keys win)."""
    path = Path(path)
    if path.resolve() in seen:
        raise ValueError(f"campaign {path} extends itself (chain: {[str(p) for p in seen]})")
    raw = yaml.safe_load(path.read_text()) or {}
    base = raw.pop("extends", None)
    if base is None:
        return raw
    return {**_read_campaign_yaml(base, (*seen, path.resolve())), **raw}


def load_campaign(path: str | Path) -> CampaignConfig:
    """Strictly load a campaign YAML (unknown keys are errors at every level; ``extends`` resolved)."""
    raw = _read_campaign_yaml(path)
    pre = [from_dict(PretrainRun, r) for r in raw.pop("pretrain", []) or []]
    fin = [from_dict(FinetuneSpec, r) for r in raw.pop("finetune", []) or []]
    cfg = from_dict(CampaignConfig, raw)
    cfg.pretrain, cfg.finetune = pre, fin
    unknown = [m for m in cfg.molecules + [m for s in fin for m in (s.molecules or [])] if m not in MOLECULES]
    if unknown:
        raise ValueError(f"unknown rMD17 molecule(s) {sorted(set(unknown))}; known: {list(MOLECULES)}")
    names = [r.name for r in pre] + [s.name for s in fin]
    if len(set(names)) != len(names) or "" in names:
        raise ValueError(f"run names must be unique and non-empty, got {names}")
    return cfg


@dataclass(frozen=True)
class Job:
    """One process to run: ``emgp-md <command> <config> --out <out>``."""

    command: str
    name: str
    molecule: str | None
    out: Path
    config: dict[str, Any]

    @property
    def finished(self) -> bool:
        """Whether this run has already completed."""
        if self.command == "pretrain":
            return (self.out / "done.json").exists()
        metrics = self.out / "metrics.json"
        return metrics.exists() and bool(json.loads(metrics.read_text()).get("finished"))


def pretrain_jobs(cfg: CampaignConfig) -> list[Job]:
    """One job per pretraining run."""
    jobs = []
    for run in cfg.pretrain:
        conf = {**yaml.safe_load(Path(run.config).read_text()), **run.overrides}
        jobs.append(Job("pretrain", run.name, None, Path(cfg.out) / "pretrain" / run.name, conf))
    return jobs


def _resolve_pretrained(cfg: CampaignConfig, ref: str | None) -> str | None:
    if ref is None or not ref.startswith("@"):
        return ref
    name = ref[1:]
    if name not in {r.name for r in cfg.pretrain}:
        raise ValueError(f"pretrained {ref!r} names no pretraining run of this campaign")
    return str(Path(cfg.out) / "pretrain" / name / "best.pt")


def finetune_jobs(cfg: CampaignConfig) -> list[Job]:
    """One job per (fine-tuning spec, molecule)."""
    jobs = []
    for spec in cfg.finetune:
        base = yaml.safe_load(Path(spec.config).read_text())
        for mol in spec.molecules or cfg.molecules:
            conf = {**base, **spec.overrides, **cfg.finetune_overrides}
            conf["data"] = str(Path(cfg.data_dir) / f"rmd17_{mol}_train_{cfg.split:02d}.npz")
            conf["test_data"] = str(Path(cfg.data_dir) / f"rmd17_{mol}_test_{cfg.split:02d}.npz")
            pretrained = _resolve_pretrained(cfg, spec.pretrained)
            if pretrained is not None:
                conf["pretrained"] = pretrained
            if spec.epochs:
                conf["epochs"] = int(spec.epochs.get(mol, spec.epochs["default"]))
                conf["warmup_epochs"] = round(conf["epochs"] * spec.warmup_fraction)
            jobs.append(Job("finetune", spec.name, mol, Path(cfg.out) / spec.name / mol, conf))
    return jobs


def run_job(job: Job, dry_run: bool = False) -> int:
    """Run one job in its own ``emgp-md`` process; returns its exit status (0 when skipped)."""
    if job.finished:
        log.info("skip %s/%s: finished", job.name, job.molecule or "")
        return 0
    conf_path = job.out / "config.yaml"
    cmd = [sys.executable, "-m", "emgp_md.cli", job.command, str(conf_path), "--out", str(job.out)]
    if (job.out / "state.pt").exists():
        cmd.append("--resume")
    log.info("%s %s/%s: %s", "would run" if dry_run else "run", job.name, job.molecule or "", " ".join(cmd))
    if dry_run:
        return 0
    job.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(conf_path, yaml.safe_dump(job.config, sort_keys=False))
    t0 = time.perf_counter()
    with open(job.out / "stdout.log", "a") as out:
        rc = subprocess.call(cmd, stdout=out, stderr=subprocess.STDOUT)
    if rc == 0 and job.command == "pretrain":
        atomic_write_json(job.out / "done.json", {"wall_s": time.perf_counter() - t0}, indent=None)
    if rc != 0:
        log.error("%s/%s failed with exit status %d; see %s", job.name, job.molecule or "", rc, job.out / "stdout.log")
    return rc


def run_campaign(cfg: CampaignConfig, dry_run: bool = False, only: list[str] | None = None) -> dict[str, int]:
    """Run every unfinished job, ``cfg.jobs`` processes at a time.

    Order: fine-tuning runs that need no campaign pretraining (in config order), then the
    pretraining runs, then the fine-tuning runs that start from them.

    Parameters
    ----------
    only : list of str, optional
        Restrict to these run names.

    Returns
    -------
    dict
        ``"<name>/<molecule>"`` → exit status of every job that was considered.
    """
    status: dict[str, int] = {}
    dependent = {s.name for s in cfg.finetune if (s.pretrained or "").startswith("@")}
    fine = finetune_jobs(cfg)
    phases = (
        [j for j in fine if j.name not in dependent],
        pretrain_jobs(cfg),
        [j for j in fine if j.name in dependent],
    )
    for phase in phases:
        todo = [j for j in phase if only is None or j.name in only]
        with ThreadPoolExecutor(max_workers=max(1, cfg.jobs)) as pool:
            for job, rc in zip(todo, pool.map(lambda j: run_job(j, dry_run), todo)):
                status[f"{job.name}/{job.molecule or ''}".rstrip("/")] = rc
    return status


def run_and_list_failures(cfg: CampaignConfig, dry_run: bool = False, only: list[str] | None = None) -> list[str]:
    """:func:`run_campaign`, then the names of the runs that failed (logged as an error)."""
    failed = [name for name, rc in run_campaign(cfg, dry_run=dry_run, only=only).items() if rc != 0]
    if failed:
        log.error("failed runs: %s", failed)
    return failed


def campaign_dict(cfg: CampaignConfig) -> dict[str, Any]:
    """JSON-able form of a campaign config."""
    return dataclasses.asdict(cfg)
