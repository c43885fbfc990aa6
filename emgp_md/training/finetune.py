"""Energy + force fine-tuning on one molecule: resumable, logged, best-validation checkpoint.

Default recipe = the paper's (method doc 4.1): L1 loss 0.2·E + 0.8·F on energies normalised by
the training mean and std (the authors used the validation frames: method doc 7.3), Adam 5e-4,
ReduceLROnPlateau (0.9, patience 30), best-validation model. Other choices (MSE warm-up, cosine
schedule) are options of :class:`~emgp_md.config.FinetuneConfig`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from emgp_md.atomic import atomic_write_json
from emgp_md.config import FinetuneConfig, to_dict
from emgp_md.data.convert import attach_hypergraph
from emgp_md.data.graph import repeat_topology
from emgp_md.data.rmd17 import ENERGY_UNIT, Frames, load_frames, train_val_split
from emgp_md.data.topology import Topology, topology_from_positions
from emgp_md.models import build_model, hypergraph_options, needs_hypergraph, paper_init_
from emgp_md.models.checkpoint import make_metadata, save_checkpoint
from emgp_md.models.energy_model import EnergyModel
from emgp_md.models.forces import energy_and_forces
from emgp_md.training.budget import CpuBudget
from emgp_md.training.distributed import DistInfo, allreduce_gradients, broadcast_parameters, shard
from emgp_md.training.evaluate import evaluate
from emgp_md.training.loop import Budgets, EpochOutcome, Progress, ResumableLoop
from emgp_md.training.losses import energy_force_loss
from emgp_md.training.transfer import pretrained_backbone, transfer_config

log = logging.getLogger(__name__)
LOG_FIELDS = ["epoch", "lr", "loss_kind", "train_loss", "val_energy_mae", "val_force_mae", "val_loss", "wall_s"]


def build_finetune_model(cfg: FinetuneConfig, scale: float, shift: float) -> tuple[EnergyModel, FinetuneConfig]:
    """Fresh model, or pretrained backbone + fresh heads; returns the model and the effective config."""
    if cfg.pretrained:
        weights, src_cfg = pretrained_backbone(cfg.pretrained)
        cfg.model = transfer_config(cfg.model, src_cfg)
        torch.manual_seed(cfg.seed)  # fresh heads drawn as from scratch
        model = build_model(cfg.model, energy_scale=scale, energy_shift=shift)
        model.backbone.load_state_dict(weights, strict=True)
    else:
        torch.manual_seed(cfg.seed)
        model = build_model(cfg.model, energy_scale=scale, energy_shift=shift)
        if cfg.init == "paper":
            paper_init_(model)
        elif cfg.init != "default":
            raise ValueError(f"unknown init {cfg.init!r}; use 'default' or 'paper'")
    return model, cfg


def resolve_device(name: str) -> torch.device:
    """The torch device of a config's ``device`` string (``"cpu"``, ``"cuda"``, ``"cuda:1"``).

    Raises
    ------
    ValueError
        On an unknown device kind, or ``cuda`` when this torch build or machine has no CUDA device.
    """
    dev = torch.device(name)
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device {name!r}: use 'cpu' or 'cuda[:k]'")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but torch {torch.__version__} sees no CUDA device")
    return dev


def normalisation_scale(frames: Frames, kind: str) -> float:
    """Energy scale (kcal/mol) of the normalised targets: training-energy std or force RMS × 1 Å."""
    if kind == "energy_std":
        return float(frames.energies.std())
    if kind == "force_rms":
        return float(np.sqrt(np.mean(frames.forces**2)))
    raise ValueError(f"unknown normalisation {kind!r}; use 'energy_std' or 'force_rms'")


def _scheduler(cfg: FinetuneConfig, opt: torch.optim.Optimizer) -> Any:
    if cfg.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, factor=cfg.plateau_factor, patience=cfg.plateau_patience, min_lr=cfg.min_lr
        )
    if cfg.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs, eta_min=cfg.min_lr)
    raise ValueError(f"unknown scheduler {cfg.scheduler!r}; use 'plateau' or 'cosine'")


def _loss_kind(cfg: FinetuneConfig, epoch: int) -> str:
    if cfg.loss == "mse_then_l1":
        return "mse" if epoch < cfg.warmup_epochs else "l1"
    return cfg.loss


def train_epoch(
    model: EnergyModel,
    topo: Topology,
    frames: Frames,
    cfg: FinetuneConfig,
    opt: torch.optim.Optimizer,
    epoch: int,
    info: DistInfo | None = None,
    budget: CpuBudget | None = None,
) -> float:
    """One pass over the training frames in a seeded order; returns the mean batch loss.

    Under ``torchrun`` each process takes its share of every global batch of ``batch_size``
    frames and gradients are summed across processes (same result as one process). The pass
    ends early, before a batch, when ``budget`` is spent.
    """
    info = info or DistInfo()
    model.train()
    order = np.random.default_rng(cfg.seed * 100_003 + epoch).permutation(len(frames))
    kind = _loss_kind(cfg, epoch)
    shift, losses = model.energy_shift, []
    for start in range(0, len(order), cfg.batch_size):
        if start > 0 and budget is not None and budget.spent():  # at least one batch per epoch
            break
        batch_idx = order[start : start + cfg.batch_size]
        idx = np.asarray(shard(batch_idx.tolist(), info), dtype=np.int64)
        opt.zero_grad(set_to_none=True)
        if len(idx):
            graph = repeat_topology(topo, torch.as_tensor(frames.coords[idx], dtype=torch.float32)).to(info.device)
            true_e = torch.as_tensor(frames.energies[idx] - shift, dtype=torch.float32, device=info.device)
            true_f = torch.as_tensor(frames.forces[idx].reshape(-1, 3), dtype=torch.float32, device=info.device)
            pred_e, pred_f = energy_and_forces(model, graph, training=True)
            counts = (len(batch_idx), len(batch_idx) * topo.n_atoms * 3)
            loss = energy_force_loss(
                pred_e,
                pred_f,
                true_e,
                true_f,
                model.energy_scale,
                cfg.energy_weight,
                cfg.force_weight,
                kind,
                global_counts=counts,
            )
            loss.backward()
            losses.append(float(loss.detach()))
        allreduce_gradients(model, info)
        opt.step()
    return float(np.mean(losses)) if losses else float("nan")


def _val_loss(metrics: dict[str, float], cfg: FinetuneConfig, scale: float) -> float:
    return (
        cfg.energy_weight * metrics["energy_mae_kcal_mol"] + cfg.force_weight * metrics["force_mae_kcal_mol_A"]
    ) / scale


def finetune(
    cfg: FinetuneConfig, out_dir: str | Path, resume: bool = False, info: DistInfo | None = None
) -> dict[str, Any]:
    """Fine-tune a model on energies and forces of one molecule.

    Writes into ``out_dir``: ``config.json``, ``log.csv``, ``state.pt`` (resumable state, atomic,
    every epoch), ``best.pt`` (best-validation model), and at the end ``model.pt`` (best model with
    test metrics in its metadata), ``metrics.json`` and ``learning_curve.png``.

    Returns
    -------
    dict
        Validation and test metrics, epochs run, wall time.
    """
    info = info or DistInfo(device=resolve_device(cfg.device))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    data = load_frames(cfg.data, cfg.label_set)
    train_idx, val_idx = train_val_split(len(data), cfg.n_train, cfg.n_val, cfg.seed)
    train, val = data.subset(train_idx), data.subset(val_idx)
    topo = topology_from_positions(data.z, train.coords[0])
    shift, scale = float(train.energies.mean()), normalisation_scale(train, cfg.normalisation)
    model, cfg = build_finetune_model(cfg, scale, shift)
    if needs_hypergraph(cfg.model):  # SE3Set: one hypergraph, frozen from the reference frame
        topo = attach_hypergraph(topo, train.coords[0], hypergraph_options(cfg.model))
    model.to(info.device)
    broadcast_parameters(model, info)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = _scheduler(cfg, opt)
    budgets = Budgets(cfg.epochs, max_wall_time_s=cfg.max_wall_time_s, cpu_s=cfg.cpu_budget_s)
    loop = ResumableLoop(out, model, opt, sched, budgets, log_fields=LOG_FIELDS, layout="epoch", info=info)
    loop.start(resume, to_dict(cfg))
    meta = make_metadata(
        cfg.model,
        sorted(set(data.z.tolist())),
        ENERGY_UNIT,
        topology=topo.to_dict(),
        kind="finetuned",
        provenance={
            "data": cfg.data,
            "label_set": cfg.label_set,
            "n_train": cfg.n_train,
            "n_val": cfg.n_val,
            "seed": cfg.seed,
            "pretrained": cfg.pretrained,
            "init": cfg.init,
            "config": to_dict(cfg),
        },
    )

    def run_epoch(epoch: int, first_step: int) -> EpochOutcome:
        train_loss = train_epoch(model, topo, train, cfg, opt, epoch, info, loop.budget)
        model.eval()
        metrics = evaluate(model, topo, val)
        model.float()
        val_loss = _val_loss(metrics, cfg, scale)
        lr = opt.param_groups[0]["lr"]
        sched.step(val_loss) if cfg.scheduler == "plateau" else sched.step()
        row = {
            "lr": lr,
            "loss_kind": _loss_kind(cfg, epoch),
            "train_loss": train_loss,
            "val_energy_mae": metrics["energy_mae_kcal_mol"],
            "val_force_mae": metrics["force_mae_kcal_mol_A"],
            "val_loss": val_loss,
        }
        postfix = {"val_F": f"{metrics['force_mae_kcal_mol_A']:.3f}", "val_E": f"{metrics['energy_mae_kcal_mol']:.3f}"}
        return EpochOutcome(val_loss, row, postfix, {"metrics": metrics})

    def save_best(epoch: int, outcome: EpochOutcome) -> None:
        save_checkpoint(out / "best.pt", model, {**meta, "metrics": {"val": outcome.extra["metrics"], "epoch": epoch}})

    if loop.run(run_epoch, save_best, Progress("fine-tune")) == "wall_time":
        return {"finished": False, "epoch": loop.epoch - 1, "wall_s": loop.wall_s}
    if not info.is_main:
        return {"finished": True, "rank": info.rank}
    return finalize(cfg, out, topo, epochs_run=loop.epochs_run, wall_s=loop.wall_s, cpu_s=loop.budget.used_s())


def finalize(
    cfg: FinetuneConfig, out: Path, topo: Topology, epochs_run: int, wall_s: float, cpu_s: float | None = None
) -> dict[str, Any]:
    """Evaluate the best model on the test frames and write ``model.pt``, ``metrics.json``, the plot.

    ``epochs_run`` counts a last epoch cut short by the CPU budget; ``cpu_s`` is the training CPU time.
    """
    from emgp_md.models.checkpoint import load_checkpoint

    model, meta = load_checkpoint(out / "best.pt")
    model.to(resolve_device(cfg.device))
    result: dict[str, Any] = {
        "finished": True,
        "epochs": epochs_run,
        "wall_s": wall_s,
        "val": meta["metrics"]["val"],
        "best_epoch": meta["metrics"]["epoch"],
    }
    if cpu_s is not None:
        result["cpu_s"] = cpu_s
    if cfg.cpu_budget_s is not None:
        result["cpu_budget_s"] = cfg.cpu_budget_s
    if cfg.test_data:
        test = load_frames(cfg.test_data, cfg.label_set)
        result["test"] = evaluate(model, topo, test)
        result["test"]["data"] = cfg.test_data
    meta["metrics"] = result
    meta["provenance"].update({"epochs": epochs_run, "wall_time_s": wall_s, "torch": torch.__version__})
    save_checkpoint(out / "model.pt", model, meta)
    atomic_write_json(out / "metrics.json", result)
    try:
        from emgp_md.plots.md import plot_learning_curve, save_figure

        save_figure(plot_learning_curve(out / "log.csv"), out / "learning_curve.png")
    except Exception as exc:  # noqa: BLE001 - a failed plot must not lose a finished training
        log.warning("learning-curve plot failed: %s", exc)
    log.info("fine-tuning done: %s", json.dumps(result))
    return result
