"""Fine-tuning on a budget of optimizer steps and/or wall time, cut cleanly by a deadline.

:func:`emgp_md.training.finetune.finetune` counts epochs of one rMD17 file. This trainer is the
one for the GPU session (data-efficiency grid and paper-regime runs): it takes the training,
validation and test frames directly, counts **optimizer steps**, validates every ``val_every``
steps, and stops at whichever comes first of

- ``max_steps`` (the planned budget: the run is finished),
- ``wall_budget_s`` of training wall time (also the planned budget: finished),
- an absolute ``deadline_unix`` (a session limit: the run is *cut*, ``finished: false``, and can be
  resumed; its metrics are still written, from the best-validation weights so far).

The cosine learning rate follows the *progress* ``max(step / max_steps, wall / wall_budget_s)``,
so a run sized by wall time still decays to ``min_lr`` at its end. The recipe (model, init,
normalisation, loss, lr, batch size, seed, device, ``compile_step``) is a
:class:`~emgp_md.config.FinetuneConfig`;
its ``epochs``, ``n_train``, ``n_val``, ``data`` and budgets are not used here. Frames are drawn
in a seeded permutation per epoch, full batches only (``batch_size`` is capped at the number of
training frames), so a run is reproducible from its step count and resumes exactly.

Outputs in ``out``: ``config.json``, ``log.csv`` (one row per validation), ``state.pt``
(resumable, written every ``state_every_s`` and when the run stops), ``best.pt``, ``metrics.json``,
and ``model.pt`` (best weights with test metrics; only with ``save_model``).
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from emgp_md.atomic import atomic_write_json
from emgp_md.config import FinetuneConfig, to_dict
from emgp_md.data.graph import repeat_topology
from emgp_md.data.rmd17 import ENERGY_UNIT, Frames
from emgp_md.data.topology import Topology, topology_from_positions
from emgp_md.models.checkpoint import load_checkpoint, make_metadata, save_checkpoint
from emgp_md.models.egnn.compiled import compiled_forces
from emgp_md.models.forces import energy_and_forces
from emgp_md.training.csvlog import append_row
from emgp_md.training.evaluate import evaluate
from emgp_md.training.finetune import build_finetune_model, normalisation_scale, resolve_device
from emgp_md.training.loop import Budgets, ResumableLoop
from emgp_md.training.losses import energy_force_loss

log = logging.getLogger(__name__)
LOG_FIELDS = ["step", "epoch", "lr", "loss_kind", "train_loss", "val_energy_mae", "val_force_mae", "val_loss", "wall_s"]


@dataclass
class StepBudget:
    """How long a run trains and how often it validates.

    Attributes
    ----------
    max_steps : int, optional
        Optimizer steps of the planned budget.
    wall_budget_s : float, optional
        Training wall time of the planned budget, s (validation included). At least one of the two.
    val_every : int
        Validate (and maybe checkpoint) every this many steps, and at the end.
    warmup_fraction : float
        With ``loss: mse_then_l1``: MSE for this fraction of the progress, then L1.
    deadline_unix : float, optional
        Absolute time (``time.time()``) after which training stops at once and the run is cut.
    state_every_s : float
        Write ``state.pt``/``best.pt`` at most this often during training, s (always when stopping).
    eval_batch : int
        Frames per batch in validation and test evaluation.
    save_model : bool
        Write ``model.pt`` (the best weights with metadata and test metrics) at the end.
    """

    max_steps: int | None = None
    wall_budget_s: float | None = None
    val_every: int = 50
    warmup_fraction: float = 0.2
    deadline_unix: float | None = None
    state_every_s: float = 60.0
    eval_batch: int = 256
    save_model: bool = True

    def __post_init__(self) -> None:
        if self.max_steps is None and self.wall_budget_s is None:
            raise ValueError("StepBudget needs max_steps or wall_budget_s")
        if self.val_every < 1:
            raise ValueError(f"val_every must be >= 1, got {self.val_every}")

    def progress(self, step: int, wall_s: float) -> float:
        """Fraction of the planned budget used, in [0, 1]."""
        parts = [0.0]
        if self.max_steps:
            parts.append(step / self.max_steps)
        if self.wall_budget_s:
            parts.append(wall_s / self.wall_budget_s)
        return min(1.0, max(parts))


def cosine_lr(cfg: FinetuneConfig, progress: float) -> float:
    """Cosine decay from ``cfg.lr`` at progress 0 to ``cfg.min_lr`` at progress 1."""
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1.0 + math.cos(math.pi * min(1.0, progress)))


def _loss_kind(cfg: FinetuneConfig, budget: StepBudget, progress: float) -> str:
    if cfg.loss == "mse_then_l1":
        return "mse" if progress < budget.warmup_fraction else "l1"
    return cfg.loss


def _batch_rows(n_train: int, batch: int, seed: int, step: int) -> np.ndarray:
    """Rows of the training frames in batch ``step`` (seeded permutation per epoch, full batches)."""
    per_epoch = n_train // batch
    epoch, k = divmod(step, per_epoch)
    order = np.random.default_rng(seed * 100_003 + epoch).permutation(n_train)
    return order[k * batch : (k + 1) * batch]


def _val_loss(metrics: dict[str, float], cfg: FinetuneConfig, scale: float) -> float:
    return (
        cfg.energy_weight * metrics["energy_mae_kcal_mol"] + cfg.force_weight * metrics["force_mae_kcal_mol_A"]
    ) / scale


def train_steps(
    cfg: FinetuneConfig,
    train: Frames,
    val: Frames,
    test: Frames | None,
    out_dir: str | Path,
    budget: StepBudget,
    resume: bool = True,
    provenance: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Fine-tune on ``train``, choose the best weights on ``val``, test them on ``test``.

    Parameters
    ----------
    cfg : FinetuneConfig
        The recipe (see the module docstring for the fields used).
    train, val, test : Frames
        Energies kcal/mol, forces kcal/mol/Å, coordinates Å; ``test`` may be ``None``.
    out_dir : path
        Run folder.
    budget : StepBudget
    resume : bool
        Continue from ``state.pt`` when present (a finished run is not retrained: its metrics are returned).
    provenance : dict, optional
        Extra facts stored in the checkpoints' metadata and in ``metrics.json`` (e.g. the split).

    Returns
    -------
    dict
        The content of ``metrics.json``: ``finished``, ``cut_by_deadline``, ``steps``, ``val``,
        ``test``, budgets, wall time, device.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics_path = out / "metrics.json"
    if resume and metrics_path.exists():
        done = json.loads(metrics_path.read_text())
        if done.get("finished"):
            log.info("%s: finished already", out)
            return done
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    batch = min(cfg.batch_size, len(train))
    topo = topology_from_positions(train.z, train.coords[0])
    shift, scale = float(train.energies.mean()), normalisation_scale(train, cfg.normalisation)
    model, cfg = build_finetune_model(cfg, scale, shift)
    model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    plateau = None
    if cfg.scheduler == "plateau":
        plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, factor=cfg.plateau_factor, patience=cfg.plateau_patience, min_lr=cfg.min_lr
        )
    elif cfg.scheduler != "cosine":
        raise ValueError(f"unknown scheduler {cfg.scheduler!r}; use 'plateau' or 'cosine'")
    best_state: dict[str, torch.Tensor] | None = None
    best_metrics: dict[str, Any] | None = None
    best_path = out / "best.pt"
    loop = ResumableLoop(
        out,
        model,
        opt,
        plateau,
        Budgets(deadline_unix=budget.deadline_unix),
        log_fields=LOG_FIELDS,
        layout="global_step",
        counters={"best_step": -1},
        map_location=device,
    )
    config = {"config": to_dict(cfg), "budget": asdict(budget), "batch_size": batch, "provenance": provenance or {}}
    if loop.start(resume, config) and best_path.exists():
        best_model, best_meta = load_checkpoint(best_path)
        best_state = {k: v.to(device) for k, v in best_model.state_dict().items()}
        best_metrics = best_meta["metrics"]["val"]
    step = loop.step
    topo_dict = {**topo.to_dict(), "positions_A": np.asarray(train.coords[0]).tolist()}
    meta = make_metadata(
        cfg.model,
        sorted(set(train.z.tolist())),
        ENERGY_UNIT,
        topology=topo_dict,
        kind="finetuned",
        provenance={
            "n_train": len(train),
            "n_val": len(val),
            "seed": cfg.seed,
            "pretrained": cfg.pretrained,
            "init": cfg.init,
            "config": to_dict(cfg),
            **(provenance or {}),
        },
    )
    coords = torch.as_tensor(train.coords, dtype=torch.float32, device=device)
    energies = torch.as_tensor(train.energies - shift, dtype=torch.float32, device=device)
    forces = torch.as_tensor(train.forces, dtype=torch.float32, device=device)
    template = repeat_topology(topo, coords[:batch].cpu()).to(device)
    n_atoms = topo.n_atoms

    def save_state() -> None:
        loop.save_state(0, step)
        if best_state is not None:
            current = {k: v.detach().clone() for k, v in model.state_dict().items()}
            model.load_state_dict(best_state)
            save_checkpoint(
                best_path, model, {**meta, "metrics": {"val": best_metrics, "step": loop.counters["best_step"]}}
            )
            model.load_state_dict(current)

    def validate(train_loss: float, kind: str) -> None:
        nonlocal best_state, best_metrics
        model.eval()
        metrics = evaluate(model, topo, val, batch_size=budget.eval_batch)
        val_loss = _val_loss(metrics, cfg, scale)
        if plateau is not None:
            plateau.step(val_loss)
        if val_loss < loop.best:
            loop.best, loop.counters["best_step"], best_metrics = val_loss, step, metrics
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        append_row(
            out / "log.csv",
            LOG_FIELDS,
            {
                "step": step,
                "epoch": step * batch / len(train),
                "lr": opt.param_groups[0]["lr"],
                "loss_kind": kind,
                "train_loss": train_loss,
                "val_energy_mae": metrics["energy_mae_kcal_mol"],
                "val_force_mae": metrics["force_mae_kcal_mol_A"],
                "val_loss": val_loss,
                "wall_s": loop.wall_s,
            },
        )

    cut, last_save, losses, kind = False, time.perf_counter(), [], "l1"
    loop.restart_clock()
    while True:
        progress = budget.progress(step, loop.wall_s)
        if progress >= 1.0:
            break
        if loop.past_deadline():
            cut = True
            break
        kind = _loss_kind(cfg, budget, progress)
        if plateau is None:
            for group in opt.param_groups:
                group["lr"] = cosine_lr(cfg, progress)
        model.train()
        rows = torch.as_tensor(_batch_rows(len(train), batch, cfg.seed, step), device=device)
        graph = template.with_pos(coords[rows].reshape(-1, 3))
        opt.zero_grad(set_to_none=True)
        with compiled_forces(cfg.compile_step, cfg.compile_mode):
            pred_e, pred_f = energy_and_forces(model, graph, training=True)
        loss = energy_force_loss(
            pred_e,
            pred_f,
            energies[rows],
            forces[rows].reshape(-1, 3),
            scale,
            cfg.energy_weight,
            cfg.force_weight,
            kind,
        )
        loss.backward()
        opt.step()
        losses.append(loss.detach())
        step += 1
        if step % budget.val_every == 0:
            train_loss = float(torch.stack(losses).mean())
            losses = []
            loop.tick()
            validate(train_loss, kind)
            loop.tick()
            if time.perf_counter() - last_save >= budget.state_every_s:
                save_state()
                loop.restart_clock()  # checkpoint writes are not training time
                last_save = time.perf_counter()
        else:
            loop.tick()
    if losses or best_state is None:  # the steps since the last validation count too
        validate(float(torch.stack(losses).mean()) if losses else float("nan"), kind)
    save_state()
    if cut:
        log.warning("%s: deadline reached at step %d: cut (resume continues)", out, step)
    return _finish(
        out,
        model,
        topo,
        best_state,
        meta,
        test,
        budget,
        {
            "finished": not cut,
            "cut_by_deadline": cut,
            "steps": step,
            "max_steps": budget.max_steps,
            "wall_budget_s": budget.wall_budget_s,
            "epochs": step * batch / len(train),
            "batch_size": batch,
            "n_train": len(train),
            "n_val": len(val),
            "train_wall_s": loop.wall_s,
            "best_step": loop.counters["best_step"],
            "val": best_metrics,
            "device": _device_name(device),
            "n_atoms": n_atoms,
            "provenance": provenance or {},
        },
    )


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return "cpu"


def _finish(
    out: Path,
    model: torch.nn.Module,
    topo: Topology,
    best_state: dict[str, torch.Tensor] | None,
    meta: dict[str, Any],
    test: Frames | None,
    budget: StepBudget,
    result: dict[str, Any],
) -> dict[str, Any]:
    """Test the best weights, write ``metrics.json`` (and ``model.pt``); returns the metrics."""
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    if test is not None:
        t0 = time.perf_counter()
        result["test"] = {**evaluate(model, topo, test, batch_size=budget.eval_batch), "data": test.source}
        result["test_eval_s"] = time.perf_counter() - t0
    result["torch"] = torch.__version__
    if budget.save_model:
        save_checkpoint(out / "model.pt", model, {**meta, "metrics": result})
    atomic_write_json(out / "metrics.json", result)
    log.info(
        "%s: %s after %d steps; val F %.4f, test F %s kcal/mol/Å",
        out,
        "finished" if result["finished"] else "cut",
        result["steps"],
        (result["val"] or {}).get("force_mae_kcal_mol_A", float("nan")),
        f"{result['test']['force_mae_kcal_mol_A']:.4f}" if "test" in result else "–",
    )
    return result
