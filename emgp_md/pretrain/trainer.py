"""3D-EMGP pretraining loop: small and explicit, resumable at any point, data-parallel under torchrun.

Per epoch: seeded order, batches of ``batch_size`` molecules (the global batch, sharded over
processes), Adam, gradient-norm clipping, non-finite steps skipped and counted, cosine learning
rate stepped per epoch, validation with fixed noise (so checkpoint selection is not noisy, unlike
the authors' code, docs/method.md §7.12), best checkpoint, CSV log, loss plot.

Backbones that need a hypergraph (SE3Set) get one per molecule, built from a clean conformer on
first use and cached (:mod:`emgp_md.pretrain.hypergraphs`); molecules whose fragmentation fails
are left out of the batches, with one warning each, and counted in ``hypergraphs.json``.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from emgp_md.atomic import atomic_write_json
from emgp_md.config import PretrainConfig, to_dict
from emgp_md.data.graph import collate
from emgp_md.data.topology import Topology
from emgp_md.models import build_model, hypergraph_options, needs_hypergraph
from emgp_md.models.checkpoint import make_metadata, save_checkpoint
from emgp_md.models.energy_model import EnergyModel
from emgp_md.pretrain.hypergraphs import HypergraphCache, HypergraphSamples
from emgp_md.pretrain.noise import noise_levels
from emgp_md.pretrain.objectives import draw_noise, pretrain_losses
from emgp_md.training.distributed import DistInfo, allreduce_gradients, allreduce_sum, broadcast_parameters, shard
from emgp_md.training.loop import Budgets, EpochOutcome, Progress, ResumableLoop

log = logging.getLogger(__name__)
Sample = tuple[Topology, np.ndarray]
EMPTY = {"n": 0.0, "efp": 0.0, "inp": 0.0, "correct": 0.0}
FIELDS = [
    "epoch",
    "lr",
    "train_loss",
    "train_efp",
    "train_inp",
    "train_inp_acc",
    "val_loss",
    "val_efp",
    "val_inp",
    "val_inp_acc",
    "skipped_steps",
    "conformers_per_s",
    "wall_s",
]
VAL_EPOCH = 1_000_003  # a fixed noise stream for validation, never an epoch number


def run_batch(
    model: EnergyModel,
    data: Sequence[Sample | None],
    ids: Sequence[int],
    cfg: PretrainConfig,
    sigmas: torch.Tensor,
    epoch: int,
    info: DistInfo,
) -> tuple[torch.Tensor | None, dict[str, float]]:
    """Loss of this process's share of the global batch ``ids`` (None when the share is empty).

    Samples that are None (molecules skipped for want of a hypergraph) are left out; the loss is
    still normalised by the global batch size.
    """
    kept = [(i, data[i]) for i in shard(list(ids), info)]
    kept = [(i, s) for i, s in kept if s is not None]
    if not kept:
        return None, dict(EMPTY)
    local = [i for i, _ in kept]
    samples = [s for _, s in kept]
    graph = collate([s[0] for s in samples], [s[1] for s in samples], torch.float32).to(info.device)
    draw = draw_noise(local, [s[0].n_atoms for s in samples], cfg.n_levels, cfg.steps, cfg.seed, epoch)
    draw = type(draw)(draw.levels.to(info.device), draw.noise.to(info.device))
    return pretrain_losses(model, graph, draw, sigmas, cfg.variant, cfg.efp_weight, cfg.inp_weight, len(ids))


def _summary(sums: torch.Tensor, cfg: PretrainConfig) -> dict[str, float]:
    n, efp, inp, correct = (float(v) for v in sums)
    n = max(n, 1.0)
    return {
        "loss": (cfg.efp_weight * efp + cfg.inp_weight * inp) / n,
        "efp": efp / n,
        "inp": inp / n,
        "inp_acc": correct / n,
    }


def _train_step(
    model: EnergyModel,
    opt: torch.optim.Optimizer,
    data: Sequence[Sample | None],
    ids: list[int],
    cfg: PretrainConfig,
    sigmas: torch.Tensor,
    epoch: int,
    step: int,
    info: DistInfo,
    loop: ResumableLoop,
) -> torch.Tensor:
    """One optimizer step on the global batch ``ids`` (skipped, and counted, on a non-finite gradient).

    Returns this process's sums (conformers, EFP, INP, correct INP) as a float64 tensor.
    """
    loss, st = run_batch(model, data, ids, cfg, sigmas, epoch, info)
    opt.zero_grad(set_to_none=True)
    if loss is not None:
        loss.backward()
    allreduce_gradients(model, info)
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    if torch.isfinite(norm):
        opt.step()
    else:
        loop.counters["skipped"] += 1
        log.warning("non-finite gradient at epoch %d step %d: step skipped", epoch, step)
    return torch.tensor([st["n"], st["efp"], st["inp"], st["correct"]], dtype=torch.float64)


def validate(
    model: EnergyModel, data: Sequence[Sample], cfg: PretrainConfig, sigmas: torch.Tensor, info: DistInfo
) -> dict[str, float]:
    """Losses on the validation molecules with a fixed noise stream (gradients on, no update)."""
    sums = torch.zeros(4, dtype=torch.float64)
    for start in range(0, len(data), cfg.batch_size):
        ids = list(range(start, min(start + cfg.batch_size, len(data))))
        _, st = run_batch(model, data, ids, cfg, sigmas, VAL_EPOCH, info)
        sums += torch.tensor([st["n"], st["efp"], st["inp"], st["correct"]], dtype=torch.float64)
    return _summary(allreduce_sum(sums, info), cfg)


def _metadata(cfg: PretrainConfig, sigmas: torch.Tensor, train_size: int) -> dict[str, Any]:
    return make_metadata(
        cfg.model,
        list(range(1, 100)),
        "arbitrary",
        kind="pretrained",
        name=f"pretrain-{cfg.variant}",
        sigmas_A=[float(s) for s in sigmas],
        provenance={"data": cfg.data, "n_train_conformers": train_size, "config": to_dict(cfg)},
    )


def pretrain(
    cfg: PretrainConfig,
    train: Sequence[Sample],
    val: Sequence[Sample],
    out_dir: str | Path,
    resume: bool = False,
    info: DistInfo | None = None,
) -> dict[str, Any]:
    """Pretrain ``cfg.model`` on conformers; writes ``state.pt``, ``best.pt``, ``last.pt``, ``log.csv``.

    ``state.pt`` is saved atomically every ``checkpoint_every_steps`` steps and every epoch, so a
    run killed at any point resumes (``resume=True``) from its last saved step.

    For a backbone that needs a hypergraph (SE3Set), each molecule's hypergraph is built once from a
    clean conformer and cached (:class:`~emgp_md.pretrain.hypergraphs.HypergraphCache`); molecules
    whose fragmentation fails are skipped with one warning each and counted in ``hypergraphs.json``
    and in the result's ``hypergraphs``.

    Raises
    ------
    NotImplementedError
        The ``direct`` variant with a backbone other than EGNN (no coordinate output).
    RuntimeError
        No training conformer could be used in an epoch (every molecule failed fragmentation).
    """
    if cfg.variant == "direct" and cfg.model.backbone != "egnn":
        raise NotImplementedError(
            f"the 'direct' pretraining variant needs a coordinate output, which only the EGNN backbone has; "
            f"the {cfg.model.backbone!r} backbone has none: use variant riemann, gaussian or distance"
        )
    cache = None
    if needs_hypergraph(cfg.model):  # SE3Set: one frozen hypergraph per molecule, built on first use
        cache = HypergraphCache(hypergraph_options(cfg.model))
        train, val = HypergraphSamples(train, cache), HypergraphSamples(val, cache)
    info = info or DistInfo()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model).to(info.device)
    broadcast_parameters(model, info)
    sigmas = noise_levels(cfg.sigma_begin_A, cfg.sigma_end_A, cfg.n_levels).float().to(info.device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs, eta_min=cfg.min_lr)
    budgets = Budgets(cfg.epochs, max_wall_time_s=cfg.max_wall_time_s, cpu_s=cfg.cpu_budget_s)
    loop = ResumableLoop(
        out,
        model,
        opt,
        sched,
        budgets,
        log_fields=FIELDS,
        layout="step",
        counters={"skipped": 0},
        info=info,
        fresh_removes=("log.csv", "hypergraphs.json"),
        map_location=info.device,
    )
    loop.start(resume, to_dict(cfg))
    meta = _metadata(cfg, sigmas, len(train))
    n_batches = math.ceil(len(train) / cfg.batch_size)

    def run_epoch(epoch: int, first_step: int) -> EpochOutcome:
        order = np.random.default_rng([cfg.seed, epoch]).permutation(len(train))
        sums = torch.zeros(4, dtype=torch.float64)
        t_epoch, seen = time.perf_counter(), 0
        model.train()
        for step in range(first_step, n_batches):
            if step > 0 and loop.budget.spent():
                break
            ids = order[step * cfg.batch_size : (step + 1) * cfg.batch_size].tolist()
            sums += _train_step(model, opt, train, ids, cfg, sigmas, epoch, step, info, loop)
            seen += len(ids)
            loop.advance()
            if (step + 1) % cfg.checkpoint_every_steps == 0:
                loop.checkpoint(epoch, step + 1)
        rate = seen / max(time.perf_counter() - t_epoch, 1e-9)
        lr = opt.param_groups[0]["lr"]
        sched.step()
        train_sums = allreduce_sum(sums, info)
        if first_step < n_batches and float(train_sums[0]) == 0:
            raise RuntimeError(
                f"no training conformer could be used in epoch {epoch}: every molecule was skipped"
                + ("" if cache is None else f" ({len(cache.failed)} failed fragmentation)")
            )
        train_sum = _summary(train_sums, cfg)
        model.eval()
        val_sum = validate(model, val, cfg, sigmas, info)
        if cache is not None:
            _report_hypergraphs(cache, epoch, out, info)
        row = {
            "lr": lr,
            **{f"train_{k}": v for k, v in train_sum.items()},
            **{f"val_{k}": v for k, v in val_sum.items()},
            "skipped_steps": loop.counters["skipped"],
            "conformers_per_s": rate,
        }
        postfix = {"val_loss": f"{val_sum['loss']:.3f}", "val_acc": f"{val_sum['inp_acc']:.2f}"}
        return EpochOutcome(val_sum["loss"], row, postfix, {"val": val_sum})

    def save_model(name: str) -> Callable[[int, EpochOutcome], None]:
        def save(epoch: int, outcome: EpochOutcome) -> None:
            save_checkpoint(out / name, model, {**meta, "metrics": {"epoch": epoch, "val": outcome.extra["val"]}})

        return save

    loop.run(run_epoch, save_model("best.pt"), Progress("pretrain", n_batches), on_epoch_end=save_model("last.pt"))
    best, wall, skipped = loop.best, loop.wall_s, loop.counters["skipped"]
    result = {
        "best_val_loss": best,
        "epochs": cfg.epochs,
        "wall_s": wall,
        "skipped_steps": skipped,
        "cpu_s": loop.budget.used_s(),
    }
    if cache is not None:
        result["hypergraphs"] = cache.stats()
    if info.is_main:  # written last: its presence means the run ended normally
        atomic_write_json(out / "summary.json", result)
    return result


def _report_hypergraphs(cache: HypergraphCache, epoch: int, out: Path, info: DistInfo) -> None:
    """Log this process's hypergraph counts; the main process appends them to ``hypergraphs.json``."""
    stats = cache.stats()
    log.info(
        "epoch %d hypergraphs: %d built, %d reused, %d molecule(s) skipped (%d conformer look-ups)",
        epoch,
        stats["built"],
        stats["hits"],
        stats["failed_molecules"],
        stats["skipped_samples"],
    )
    if not info.is_main:
        return
    path = out / "hypergraphs.json"
    doc = json.loads(path.read_text()) if path.exists() else {"epochs": []}
    doc["epochs"] = [e for e in doc["epochs"] if e["epoch"] < epoch] + [{"epoch": epoch, **stats}]
    failed = {f["molecule"]: f for f in doc.get("failed", []) + cache.failures}  # earlier attempts of a resumed run
    doc["failed"] = list(failed.values())
    atomic_write_json(path, doc)
