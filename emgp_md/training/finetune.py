"""Energy + force fine-tuning on one or many molecules: resumable, logged, best-validation checkpoint.

Default recipe = the paper's (docs/method.md §4.1): L1 loss 0.2·E + 0.8·F on energies normalised by
the training mean (or, for many molecules, per-element reference energies: :mod:`emgp_md.training.data`)
and std (the authors used the validation frames: docs/method.md §7.3), Adam 5e-4,
ReduceLROnPlateau (0.9, patience 30), best-validation model. Other choices (MSE warm-up, cosine
schedule) are options of :class:`~emgp_md.config.FinetuneConfig`. The data are any format of
:func:`emgp_md.data.readers.read_dataset`, in the unit the file declares; the model keeps that unit.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ase.data import chemical_symbols

from emgp_md.atomic import atomic_write_json
from emgp_md.config import FinetuneConfig, ModelConfig, from_dict, to_dict
from emgp_md.data.frames import Dataset, Frames, write_extxyz
from emgp_md.data.splits import split_frames, split_molecules
from emgp_md.models import build_model, hypergraph_options, needs_hypergraph, paper_init_, unit_distance_init_
from emgp_md.models.checkpoint import make_metadata, save_checkpoint
from emgp_md.models.egnn.compiled import compiled_forces
from emgp_md.models.energy_model import EnergyModel
from emgp_md.models.forces import energy_and_forces
from emgp_md.training.budget import CpuBudget
from emgp_md.training.data import PreparedSet, Reference, fit_reference, prepare
from emgp_md.training.distributed import DistInfo, allreduce_gradients, broadcast_parameters, shard
from emgp_md.training.evaluate import evaluate_dataset
from emgp_md.training.loop import Budgets, EpochOutcome, Progress, ResumableLoop
from emgp_md.training.losses import energy_force_loss
from emgp_md.training.transfer import pretrained_backbone, transfer_config, unseen_elements

log = logging.getLogger(__name__)
LOG_FIELDS = ["epoch", "lr", "loss_kind", "train_loss", "val_energy_mae", "val_force_mae", "val_loss", "wall_s"]


def build_finetune_model(
    cfg: FinetuneConfig, scale: float, shift: float, atom_ref: dict[int, float] | None = None
) -> tuple[EnergyModel, FinetuneConfig]:
    """Fresh model, or pretrained backbone + fresh heads; returns the model and the effective config."""
    if cfg.init_model:
        if cfg.pretrained:
            raise ValueError("init_model and pretrained exclude each other: a run starts from one of them")
        from emgp_md.models.checkpoint import load_checkpoint

        start, meta = load_checkpoint(cfg.init_model)
        cfg.model = from_dict(ModelConfig, meta["model"])
        model = build_model(cfg.model, energy_scale=start.energy_scale, energy_shift=shift, atom_ref=atom_ref)
        model.load_state_dict(start.state_dict(), strict=True)
    elif cfg.pretrained:
        weights, src_cfg = pretrained_backbone(cfg.pretrained)
        cfg.model = transfer_config(cfg.model, src_cfg)
        torch.manual_seed(cfg.seed)  # fresh heads drawn as from scratch
        model = build_model(cfg.model, energy_scale=scale, energy_shift=shift, atom_ref=atom_ref)
        model.backbone.load_state_dict(weights, strict=True)
    else:
        torch.manual_seed(cfg.seed)
        model = build_model(cfg.model, energy_scale=scale, energy_shift=shift, atom_ref=atom_ref)
        if cfg.init == "paper":
            paper_init_(model)
        elif cfg.init == "unit_distance":
            unit_distance_init_(model)
        elif cfg.init != "default":
            raise ValueError(f"unknown init {cfg.init!r}; use 'default', 'paper' or 'unit_distance'")
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


def normalisation_scale(data: Frames | PreparedSet, kind: str) -> float:
    """Energy scale (the data's energy unit) of the normalised targets: the std of the training energies
    (of one molecule's ``Frames``, or of a prepared set's energies minus their reference energies) or
    the force RMS × 1 Å."""
    if isinstance(data, PreparedSet):
        residual, forces = data.energies - data.reference, data.dataset.forces_flat()
    else:
        residual, forces = data.energies, data.forces
    if kind == "energy_std":
        return float(residual.std())
    if kind == "force_rms":
        return float(np.sqrt(np.mean(forces**2)))
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
    train: PreparedSet,
    cfg: FinetuneConfig,
    opt: torch.optim.Optimizer,
    epoch: int,
    info: DistInfo | None = None,
    budget: CpuBudget | None = None,
) -> float:
    """One pass over the training frames in a seeded order; returns the mean batch loss.

    Batches may mix molecules (:meth:`PreparedSet.batch`). Under ``torchrun`` each process takes its
    share of every global batch of ``batch_size`` frames and gradients are summed across processes
    (same result as one process). The pass ends early, before a batch, when ``budget`` is spent.
    """
    info = info or DistInfo()
    model.train()
    order = np.random.default_rng(cfg.seed * 100_003 + epoch).permutation(len(train))
    kind = _loss_kind(cfg, epoch)
    n_atoms, losses = train.n_atoms_per_frame(), []
    for start in range(0, len(order), cfg.batch_size):
        if start > 0 and budget is not None and budget.spent():  # at least one batch per epoch
            break
        batch_idx = order[start : start + cfg.batch_size]
        idx = np.asarray(shard(batch_idx.tolist(), info), dtype=np.int64)
        opt.zero_grad(set_to_none=True)
        if len(idx):
            graph, true_e, true_f = train.batch(idx, torch.float32, info.device)
            pred_e, pred_f = energy_and_forces(model, graph, training=True)
            counts = (len(batch_idx), int(n_atoms[batch_idx].sum()) * 3)
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


def _val_loss(metrics: dict[str, Any], cfg: FinetuneConfig, scale: float) -> float:
    return (cfg.energy_weight * metrics["energy_mae"] + cfg.force_weight * metrics["force_mae"]) / scale


def _read(cfg: FinetuneConfig, path: str) -> Dataset:
    from emgp_md.data.readers import read_dataset

    return read_dataset(
        path,
        format=cfg.data_format,
        energy_key=cfg.energy_key,
        forces_key=cfg.forces_key,
        energy_unit=cfg.energy_unit,
        label_set=cfg.label_set,
    )


def load_datasets(cfg: FinetuneConfig) -> tuple[Dataset, Dataset, Dataset | None]:
    """Training, validation and (optional) test sets of a config, all in the unit of ``cfg.data``.

    Validation and test come from ``val_data`` / ``test_data`` when given, else they are drawn
    (seeded) from ``data``: ``n_val`` / ``n_test`` frames (``split: frames``, one permutation cut into
    train, validation, test) or molecules (``split: molecules``).
    """
    data = _read(cfg, cfg.data)
    n_val = 0 if cfg.val_data else cfg.n_val
    n_test = 0 if cfg.test_data else cfg.n_test
    if cfg.split == "molecules":
        train, val, test = split_molecules(data, n_val, n_test, cfg.seed)
        if cfg.n_train is not None:
            train = split_frames(train, cfg.n_train, 0, seed=cfg.seed)[0]
    else:
        train, val, test = split_frames(data, cfg.n_train, n_val, n_test, seed=cfg.seed)
    if cfg.val_data:
        val = _read(cfg, cfg.val_data).to_unit(data.energy_unit)
    if cfg.test_data:
        test = _read(cfg, cfg.test_data).to_unit(data.energy_unit)
    if val is None:
        raise ValueError("no validation frames: set n_val > 0 or give val_data")
    _check_elements_trained(train, val, test)
    return train, val, test


def _check_elements_trained(train: Dataset, val: Dataset, test: Dataset | None) -> None:
    """Refuse validation or test frames with elements no training frame has (the model cannot learn them)."""
    for label, part in (("validation", val), ("test", test)):
        extra = sorted(set(part.elements) - set(train.elements)) if part is not None else []
        if extra:
            names = ", ".join(chemical_symbols[z] for z in extra)
            raise ValueError(
                f"the {label} set holds element(s) {names} that no training frame has, so no model can learn them: "
                "with --split molecules another --seed (or fewer held-out molecules) moves them into training; "
                "otherwise add frames with them to the training data"
            )


def finetune(
    cfg: FinetuneConfig,
    out_dir: str | Path,
    resume: bool = False,
    info: DistInfo | None = None,
    datasets: tuple[Dataset, Dataset, Dataset | None] | None = None,
) -> dict[str, Any]:
    """Fine-tune a model on energies and forces of one or many molecules.

    The frames are read as ``cfg`` says (:func:`load_datasets`) unless ``datasets`` gives the
    training, validation and test sets directly (e.g. labels made in memory by ``emgp-md learn``).

    Writes into ``out_dir``: ``config.json``, ``log.csv``, ``state.pt`` (resumable state, atomic,
    every epoch), ``best.pt`` (best-validation model), and at the end ``model.pt`` (best model with
    test metrics in its metadata) and ``metrics.json``; test frames held out from ``data`` are written to
    ``test_frames.xyz`` (extxyz, eV), for ``emgp-md evaluate``. The data are read before ``out_dir`` is
    created: a run that cannot read its data leaves no folder behind.

    Returns
    -------
    dict
        Validation and test metrics, epochs run, wall time.
    """
    info = info or DistInfo(device=resolve_device(cfg.device))
    train_set, val_set, test_set = datasets if datasets is not None else load_datasets(cfg)
    out = Path(out_dir)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    ref = fit_reference(train_set)
    new_elements = unseen_elements(cfg.pretrained, train_set.elements) if cfg.pretrained else []
    if new_elements:
        log.warning(
            "element(s) %s were not in the pretraining data of %r: their embeddings start untrained and are "
            "learnt from these labels alone; expect larger errors on them than on the others",
            ", ".join(chemical_symbols[z] for z in new_elements),
            cfg.pretrained,
        )
    model, cfg = build_finetune_model(cfg, 1.0, ref.shift, ref.atom_ref)
    options = hypergraph_options(cfg.model) if needs_hypergraph(cfg.model) else None  # SE3Set: frozen per molecule
    train, val = prepare(train_set, ref, options), prepare(val_set, ref, options)
    # a continued model keeps the scale its heads were trained for
    scale = model.energy_scale if cfg.init_model else normalisation_scale(train, cfg.normalisation)
    model.energy_scale = scale
    model.to(info.device)
    broadcast_parameters(model, info)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = _scheduler(cfg, opt)
    budgets = Budgets(cfg.epochs, max_wall_time_s=cfg.max_wall_time_s, cpu_s=cfg.cpu_budget_s)
    out.mkdir(parents=True, exist_ok=True)
    loop = ResumableLoop(out, model, opt, sched, budgets, log_fields=LOG_FIELDS, layout="epoch", info=info)
    loop.start(resume, to_dict(cfg))
    meta = make_metadata(
        cfg.model,
        train_set.elements,
        train_set.energy_unit,
        topology=train.topologies[0].to_dict() if train_set.n_molecules == 1 else None,
        kind="finetuned",
        provenance={
            "data": cfg.data,
            "label_set": cfg.label_set,
            "n_train": len(train_set),
            "n_val": len(val_set),
            "molecules": train_set.n_molecules,
            "seed": cfg.seed,
            "pretrained": cfg.pretrained,
            "elements_new_to_pretraining": new_elements,
            "init": cfg.init,
            "config": to_dict(cfg),
        },
    )

    def run_epoch(epoch: int, first_step: int) -> EpochOutcome:
        with compiled_forces(cfg.compile_step, cfg.compile_mode):
            train_loss = train_epoch(model, train, cfg, opt, epoch, info, loop.budget)
        model.eval()
        metrics = evaluate_dataset(model, val.topologies, val_set)
        metrics.pop("molecules")
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
    test = prepare(test_set, Reference(), options) if test_set is not None else None
    return finalize(cfg, out, test, epochs_run=loop.epochs_run, wall_s=loop.wall_s, cpu_s=loop.budget.used_s())


def finalize(
    cfg: FinetuneConfig,
    out: Path,
    test: PreparedSet | None,
    epochs_run: int,
    wall_s: float,
    cpu_s: float | None = None,
) -> dict[str, Any]:
    """Evaluate the best model on the test frames and write ``model.pt`` and ``metrics.json``.

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
    if test is not None:
        result["test"] = evaluate_dataset(model, test.topologies, test.dataset)
        result["test"]["data"] = cfg.test_data or str(write_extxyz(test.dataset, out / "test_frames.xyz"))
        if test.dataset.n_molecules == 1:
            result["test"].pop("molecules")
    meta["metrics"] = result
    meta["provenance"].update({"epochs": epochs_run, "wall_time_s": wall_s, "torch": torch.__version__})
    save_checkpoint(out / "model.pt", model, meta)
    atomic_write_json(out / "metrics.json", result)
    log.info("fine-tuning done: %s", json.dumps(result))
    return result
