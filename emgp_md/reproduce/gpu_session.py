"""One deadline-driven session of many fine-tuning runs on one accelerator (issue #16 items 1, 2, 5).

Three kinds of run, all from packed rMD17 frames (:mod:`emgp_md.data.packed`), all tested on ``test_01``:

``grid``
    The data-efficiency grid: molecule × N training frames × init (the authors' checkpoint or
    scratch) × seed. The seed draws a permutation of ``train_01``: its first ``n_val`` frames
    validate, the next N train (so the training sets of one seed are nested over N and both inits
    see the same frames). Budget: a fixed number of optimizer steps per N, the same for both inits.
``paper_regime``
    The paper's data regime: every frame outside ``test_01`` (~8,600). ``n_val`` validation frames
    are drawn from the pool frames *outside* ``train_01`` (so the models fine-tuned on ``train_01``
    never saw them and can be compared on them fairly), the rest train. Budget: the session's wall
    time, cosine learning rate sized to it.
``paper_recipe``
    The paper's own recipe (``FinetuneConfig`` defaults: L1, batch 100, lr 5e-4, ReduceLROnPlateau
    on the validation loss every epoch, 1,500 epochs) on 950 / 50 frames of ``train_01``, split as
    :func:`emgp_md.training.finetune.finetune` splits it; cut by the session deadline.

Work is shared by worker processes: each long run (paper regime, paper recipe) has one; the grid
workers claim (molecule, N, seed) cells in a fixed order (seed-major, so a short session loses
whole seeds, never molecules) and train both inits of a cell back to back. A claim is a file made
with ``O_EXCL``, so no two workers take the same cell. The session's config is
:mod:`emgp_md.reproduce.session_config`.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from emgp_md.atomic import atomic_write_json
from emgp_md.config import FinetuneConfig, from_dict
from emgp_md.data.packed import PackedMolecule, load_packed, pack_path
from emgp_md.data.rmd17 import Frames, train_val_split
from emgp_md.reproduce.session_config import SessionConfig

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- jobs
@dataclass(frozen=True)
class Job:
    """One run of the session; ``out`` is its folder relative to the session's ``out``."""

    kind: str
    molecule: str
    seed: int
    init: str = "pretrained"
    n_train: int = 0
    max_steps: int | None = None

    @property
    def out(self) -> str:
        if self.kind == "grid":
            return f"grid/{self.molecule}/N{self.n_train}/{self.init}/seed{self.seed}"
        return f"{self.kind}/{self.molecule}"


def grid_cells(cfg: SessionConfig, step_scale: float) -> list[list[Job]]:
    """Grid cells (one job per init) in claim order: seed-major, then the largest N first, then molecule."""
    g = cfg.grid
    cells = []
    for seed in g.seeds:
        for n in sorted(g.n_train, reverse=True):
            for mol in g.molecules:
                steps = max(1, round(g.steps[n] * step_scale))
                cells.append([Job("grid", mol, seed, init, n, steps) for init in g.inits])
    return cells


def long_jobs(cfg: SessionConfig) -> list[Job]:
    """One job per paper-regime molecule and per paper-recipe molecule."""
    jobs = [Job("paper_regime", m, cfg.paper_regime.seed) for m in cfg.paper_regime.molecules]
    pr = cfg.paper_recipe
    for mol in pr.molecules:
        jobs.append(Job("paper_recipe", mol, pr.seed, "pretrained" if pr.pretrained else "scratch"))
    return jobs


def auto_step_scale(cfg: SessionConfig, step_s: float, train_time_s: float, val_overhead: float = 0.15) -> float:
    """Grid step scale that fits every grid run into ``train_time_s`` on the grid workers.

    ``step_s`` is the measured time of one optimizer step with every worker running; validation
    is counted as ``val_overhead`` of the training steps.
    """
    total = sum(j.max_steps or 0 for cell in grid_cells(cfg, 1.0) for j in cell) * (1 + val_overhead)
    if total == 0:
        return 1.0
    fit = 0.95 * max(1, cfg.grid.workers) * train_time_s / (step_s * total)
    return float(min(cfg.max_step_scale, max(cfg.min_step_scale, fit)))


# --------------------------------------------------------------------------- data of a job
_PACKS: dict[str, PackedMolecule] = {}


def packed(cfg: SessionConfig, molecule: str) -> PackedMolecule:
    """The molecule's pack, loaded once per process."""
    if molecule not in _PACKS:
        _PACKS[molecule] = load_packed(pack_path(cfg.data_dir, molecule))
    return _PACKS[molecule]


def grid_rows(pack: PackedMolecule, n_train: int, n_val: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Pack rows (train, validation) of a grid run: a seeded permutation of ``train_01``, validation first."""
    if n_train + n_val > len(pack.train01_order):
        raise ValueError(f"N = {n_train} + {n_val} validation frames exceed train_01's {len(pack.train01_order)}")
    perm = np.random.default_rng(seed).permutation(len(pack.train01_order))
    return pack.train01_order[perm[n_val : n_val + n_train]], pack.train01_order[perm[:n_val]]


def paper_regime_rows(pack: PackedMolecule, n_val: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Pack rows (train, validation) of the paper regime: validation from the pool outside ``train_01``."""
    pool = pack.pool_rows()
    candidates = pool[~pack.in_train01[pool]]
    val = np.sort(np.random.default_rng(seed).choice(candidates, size=n_val, replace=False))
    return np.setdiff1d(pool, val), val


def paper_recipe_rows(
    pack: PackedMolecule, seed: int, n_train: int = 950, n_val: int = 50
) -> tuple[np.ndarray, np.ndarray]:
    """Pack rows (train, validation) of ``train_01`` as :func:`~emgp_md.training.finetune.finetune` splits it."""
    tr, va = train_val_split(len(pack.train01_order), n_train, n_val, seed)
    return pack.train01_order[tr], pack.train01_order[va]


def job_frames(cfg: SessionConfig, job: Job) -> tuple[Frames, Frames, Frames, dict[str, Any]]:
    """Training, validation and test frames of a job, and the split's description (old_indices)."""
    pack = packed(cfg, job.molecule)
    if job.kind == "grid":
        tr, va = grid_rows(pack, job.n_train, cfg.grid.n_val, job.seed)
        text = f"train_01 permuted with seed {job.seed}: {cfg.grid.n_val} validation, next {job.n_train} train"
    elif job.kind == "paper_regime":
        tr, va = paper_regime_rows(pack, cfg.paper_regime.n_val, job.seed)
        text = (
            f"all {len(pack.pool_rows())} distinct rMD17 frames outside test_01: {len(va)} validation "
            f"(outside train_01, seed {job.seed}), {len(tr)} train"
        )
    elif job.kind == "paper_recipe":
        tr, va = paper_recipe_rows(pack, job.seed)
        text = f"train_01: 950 train / 50 validation (seed {job.seed}, as finetune splits it)"
    else:
        raise ValueError(f"unknown job kind {job.kind!r}")
    split = {
        "split": text,
        "test": "test_01 (1000 frames)",
        "train_old_indices": pack.old_indices[tr].tolist(),
        "val_old_indices": pack.old_indices[va].tolist(),
    }
    return pack.frames(tr, "train"), pack.frames(va, "validation"), pack.test01(), split


def job_config(cfg: SessionConfig, job: Job) -> FinetuneConfig:
    """The FinetuneConfig of a job: its spec's recipe, seed, device, threads and initialisation."""
    if job.kind == "grid":
        recipe = {**cfg.grid.recipe, **cfg.grid.init_overrides.get(job.init, {})}
    elif job.kind == "paper_regime":
        recipe = dict(cfg.paper_regime.recipe)
    else:
        recipe = dict(cfg.paper_recipe.recipe)
    fc = from_dict(FinetuneConfig, recipe)
    fc.seed, fc.device, fc.threads = job.seed, cfg.device, cfg.threads
    fc.pretrained = cfg.pretrained_path if job.init == "pretrained" else None
    return fc


def run_job(cfg: SessionConfig, job: Job, train_deadline: float) -> dict[str, Any]:
    """Train, validate and test one job in this process (resuming an interrupted one); returns its metrics."""
    from emgp_md.training.stepwise import StepBudget, train_steps

    train, val, test, split = job_frames(cfg, job)
    fc = job_config(cfg, job)
    out = Path(cfg.out) / job.out
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "split.json", split, indent=None)
    provenance = {"job": asdict(job), "split": split["split"], "test": split["test"]}
    if job.kind == "grid":
        steps = int(job.max_steps or 1)
        budget = StepBudget(
            max_steps=steps,
            val_every=max(1, steps // max(1, cfg.grid.val_points)),
            deadline_unix=train_deadline,
            state_every_s=120.0,
            save_model=False,
        )
    elif job.kind == "paper_regime":
        wall = max(1.0, 0.98 * (train_deadline - time.time()))
        budget = StepBudget(wall_budget_s=wall, val_every=cfg.paper_regime.val_every, deadline_unix=train_deadline)
    else:
        per_epoch = max(1, len(train) // min(fc.batch_size, len(train)))
        budget = StepBudget(
            max_steps=cfg.paper_recipe.epochs * per_epoch, val_every=per_epoch, deadline_unix=train_deadline
        )
    return train_steps(fc, train, val, test, out, budget, resume=True, provenance=provenance)


def claim(claims_dir: Path, name: str) -> bool:
    """Atomically claim ``name`` (True for the one process that creates its claim file)."""
    claims_dir.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(claims_dir / name.replace("/", "__"), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    return True


def run_grid_worker(cfg: SessionConfig, step_scale: float, train_deadline: float, claims_dir: Path) -> list[str]:
    """Claim and run grid cells in order until none is left or the deadline passes; returns the runs done."""
    done = []
    for cell in grid_cells(cfg, step_scale):
        if time.time() >= train_deadline:
            break
        key = cell[0].out.replace(f"/{cell[0].init}/", "/")
        if not claim(claims_dir, key):
            continue
        for job in cell:
            if time.time() >= train_deadline:  # a run started now would get no steps: leave it unstarted
                log.warning("deadline passed before %s started", job.out)
                break
            try:
                run_job(cfg, job, train_deadline)
                done.append(job.out)
            except Exception:  # one failed run must not end the worker's other runs
                log.exception("grid run %s failed", job.out)
    return done


def bench_step_time(
    cfg: SessionConfig, molecule: str = "aspirin", batch: int = 32, steps: int = 20, warmup: int = 3
) -> dict[str, Any]:
    """Smoke test and step timing: the authors' checkpoint fine-tuned for a few steps on ``cfg.device``.

    Loads the pack, builds the model with the transferred backbone, runs ``warmup`` then ``steps``
    timed optimizer steps (batch ``batch``, energies and forces, L1) and one validation pass.

    Returns
    -------
    dict
        ``step_s`` (s per step), ``eval_s`` (s for 64 frames), ``device``, the last loss.
    """
    import torch

    from emgp_md.data.graph import repeat_topology
    from emgp_md.data.topology import topology_from_positions
    from emgp_md.models.forces import energy_and_forces
    from emgp_md.training.evaluate import evaluate
    from emgp_md.training.finetune import build_finetune_model, normalisation_scale, resolve_device
    from emgp_md.training.losses import energy_force_loss

    t_start = time.perf_counter()
    device = resolve_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    frames = packed(cfg, molecule).train01()
    fc = FinetuneConfig(pretrained=cfg.pretrained_path, device=cfg.device)
    scale, shift = normalisation_scale(frames, "energy_std"), float(frames.energies.mean())
    model, fc = build_finetune_model(fc, scale, shift)
    model.to(device)
    topo = topology_from_positions(frames.z, frames.coords[0])
    opt = torch.optim.Adam(model.parameters(), lr=1e-5)
    pos = torch.as_tensor(frames.coords[:batch], dtype=torch.float32)
    graph = repeat_topology(topo, pos).to(device)
    true_e = torch.as_tensor(frames.energies[:batch] - shift, dtype=torch.float32, device=device)
    true_f = torch.as_tensor(frames.forces[:batch].reshape(-1, 3), dtype=torch.float32, device=device)

    def one_step() -> float:
        opt.zero_grad(set_to_none=True)
        e, f = energy_and_forces(model, graph, training=True)
        loss = energy_force_loss(e, f, true_e, true_f, scale, 0.2, 0.8, "l1")
        loss.backward()
        opt.step()
        return loss

    for _ in range(warmup):
        one_step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = one_step()
    loss_value = float(loss.detach())
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    step_s = (time.perf_counter() - t0) / steps
    t0 = time.perf_counter()
    metrics = evaluate(model, topo, frames.subset(np.arange(64)), batch_size=64)
    eval_s = time.perf_counter() - t0
    if not np.isfinite(loss_value) or not np.isfinite(metrics["force_mae_kcal_mol_A"]):
        raise RuntimeError(f"non-finite loss {loss_value} or validation MAE {metrics}")
    return {
        "step_s": step_s,
        "eval_s": eval_s,
        "loss": loss_value,
        "device": str(device),
        "val_force_mae": metrics["force_mae_kcal_mol_A"],
        "total_s": time.perf_counter() - t_start,
        "molecule": molecule,
        "batch": batch,
    }
