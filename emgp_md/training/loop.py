"""The resumable training loop: fine-tuning, pretraining and the step-budgeted GPU-session trainer.

A trainer keeps its own batching, loss and validation and hands the loop two callbacks: one that
runs an epoch (training, then validation) and returns its :class:`EpochOutcome`, and one that saves
the best model. The loop owns the rest of the skeleton:

- the run folder: stale temporary files of an interrupted write removed, ``config.json`` (atomic),
  ``log.csv`` (one row per epoch; on resume the rows after the saved state are dropped, on a fresh
  run the old log is removed);
- ``state.pt`` (atomic): model, optimizer and scheduler state, position, best score, wall and CPU
  time, trainer counters; written at the end of every epoch and wherever the trainer calls
  :meth:`ResumableLoop.checkpoint` (mid-epoch), and read back by :meth:`ResumableLoop.start`;
- the budgets: ``epochs``, training wall time (``max_wall_time_s``, checked after each epoch; the
  run stops resumable), CPU seconds (:class:`~emgp_md.training.budget.CpuBudget`, checked before
  each epoch after the first; the trainer may also stop an epoch early on :attr:`ResumableLoop.budget`);
- a deadline (``deadline_unix``: the run is cut, resumable);
- the best score (lower is better unless ``is_better`` says otherwise) and the progress bar.

Positions are (next epoch, next step within it). Three layouts of ``state.pt`` exist, kept so that
runs started before the loop resume unchanged: ``"epoch"`` (fine-tuning: ``epoch`` is the last
completed epoch, the best score is ``best_val``), ``"step"`` (pretraining: ``epoch`` and ``step``
are the next position, the best score is ``best``) and ``"global_step"`` (the step-budgeted
trainer, :mod:`emgp_md.training.stepwise`: no epochs, ``step`` counts optimizer steps, the best
score is ``best_val``, the scheduler is stored as ``plateau`` (``None`` when there is none), no
CPU time). The step-budgeted trainer drives its own steps (validation every so many steps, state
written at most every so many seconds) and uses the loop for the folder, the state, the clock and
the deadline, not :meth:`ResumableLoop.run`.

Nothing here draws random numbers: trainers seed their batch order from (seed, epoch), so the
position alone makes a resumed run repeat an uninterrupted one.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from emgp_md.atomic import atomic_torch_save as atomic_save
from emgp_md.atomic import atomic_write_text, remove_stale_temp_files
from emgp_md.models.checkpoint import safe_torch_load
from emgp_md.training.budget import CpuBudget
from emgp_md.training.csvlog import append_row, drop_epochs_from
from emgp_md.training.distributed import DistInfo, allreduce_sum

log = logging.getLogger(__name__)
LAYOUTS = ("epoch", "step", "global_step")


@dataclass
class EpochOutcome:
    """What a trainer's epoch callback returns.

    Attributes
    ----------
    score : float
        The validation score that chooses the best model (lower is better by default).
    row : dict
        The ``log.csv`` columns of this epoch other than ``epoch`` (first) and ``wall_s`` (last).
    postfix : dict
        Shown on the progress bar.
    extra : dict
        Anything the best-model and end-of-epoch callbacks need (e.g. the validation metrics).
    """

    score: float
    row: dict[str, Any]
    postfix: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Budgets:
    """When a run stops.

    Attributes
    ----------
    epochs : int
        Epochs of the planned run.
    max_wall_time_s : float, optional
        Training wall time, checked after each epoch; the run stops resumable.
    cpu_s : float, optional
        CPU seconds of this process (:class:`~emgp_md.training.budget.CpuBudget`), checked before
        each epoch after the first; the run is over. Single-process runs only.
    deadline_unix : float, optional
        An absolute ``time.time()``, checked before each epoch after the first; the run is cut,
        resumable.
    """

    epochs: int = 1
    max_wall_time_s: float | None = None
    cpu_s: float | None = None
    deadline_unix: float | None = None


@dataclass
class Progress:
    """The progress bar: ``steps_per_epoch=None`` counts epochs (the loop advances it), an integer
    counts steps (the trainer calls :meth:`ResumableLoop.advance` after each)."""

    desc: str
    steps_per_epoch: int | None = None


def _lower(new: float, best: float) -> bool:
    return new < best


class ResumableLoop:
    """One resumable training run in ``out`` (see the module docstring).

    Parameters
    ----------
    out : Path
        Run folder (created).
    model, optimizer, scheduler
        Their ``state_dict`` go into ``state.pt``; ``scheduler`` may be ``None`` (not saved).
    budgets : Budgets
    log_fields : sequence of str
        The ``log.csv`` columns, ``epoch`` first and ``wall_s`` last.
    layout : {"epoch", "step", "global_step"}
        The ``state.pt`` layout.
    counters : dict, optional
        Trainer counters saved in ``state.pt`` under their names (initial values); read and change
        them in :attr:`counters`.
    info : DistInfo, optional
        The processes of a data-parallel run: only the main one writes files, and all stop on the
        wall-time budget when one reaches it.
    fresh_removes : sequence of str
        Files of an earlier run removed when a run starts afresh.
    map_location : torch.device or str
        Where ``state.pt``'s tensors are loaded.
    """

    def __init__(
        self,
        out: Path,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        budgets: Budgets,
        *,
        log_fields: Sequence[str],
        layout: str = "epoch",
        counters: dict[str, Any] | None = None,
        info: DistInfo | None = None,
        fresh_removes: Sequence[str] = ("log.csv",),
        map_location: Any = "cpu",
    ) -> None:
        if layout not in LAYOUTS:
            raise ValueError(f"unknown state layout {layout!r}; use one of {LAYOUTS}")
        self.info = info or DistInfo()
        if budgets.cpu_s is not None and self.info.world_size > 1:
            raise ValueError("cpu_budget_s is a single-process budget; leave it out under torchrun")
        self.out, self.model, self.optimizer, self.scheduler = Path(out), model, optimizer, scheduler
        self.budgets, self.epochs, self.log_fields, self.layout = budgets, budgets.epochs, list(log_fields), layout
        self.counters = dict(counters or {})
        self.is_main = self.info.is_main
        self.fresh_removes, self.map_location = tuple(fresh_removes), map_location
        self.state_path, self.log_path = self.out / "state.pt", self.out / "log.csv"
        self.epoch, self.step, self.best, self.wall_s = 0, 0, math.inf, 0.0
        self.budget = CpuBudget(budgets.cpu_s)
        self.epochs_run = budgets.epochs
        self.stopped: str | None = None  # None (planned end), "cpu_budget", "wall_time" or "deadline"
        self.bar: Any = None
        self._t0 = time.perf_counter()

    # ------------------------------------------------------------------ folder and state
    def start(self, resume: bool, config: dict[str, Any]) -> bool:
        """Prepare the folder, resume from ``state.pt`` when asked and present, write ``config.json``.

        Returns whether the run resumed.
        """
        self.out.mkdir(parents=True, exist_ok=True)
        if self.is_main:
            remove_stale_temp_files(self.out)  # left by a write that a crash interrupted
        resumed = resume and self.state_path.exists()
        cpu_before = 0.0
        if resumed:
            cpu_before = self._load(
                safe_torch_load(self.state_path, what="training state", map_location=self.map_location)
            )
            log.info("resumed from %s at epoch %d step %d", self.state_path, self.epoch, self.step)
            if self.is_main:  # rows after the saved state would be logged twice
                if self.layout == "global_step":  # the state follows the row of its step
                    drop_epochs_from(self.log_path, self.step + 1, key="step")
                else:
                    drop_epochs_from(self.log_path, self.epoch)
        elif self.is_main:  # a fresh run: no files of an earlier run
            for name in self.fresh_removes:
                (self.out / name).unlink(missing_ok=True)
        self.budget = CpuBudget(self.budgets.cpu_s, cpu_before)
        if self.is_main:
            atomic_write_text(self.out / "config.json", json.dumps(config, indent=2))
        return resumed

    def _load(self, state: dict[str, Any]) -> float:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state.get(self._scheduler_key) is not None:
            self.scheduler.load_state_dict(state[self._scheduler_key])
        if self.layout == "epoch":
            self.epoch, self.step, self.best = state["epoch"] + 1, 0, state["best_val"]
        elif self.layout == "global_step":
            self.epoch, self.step, self.best = 0, state["step"], state["best_val"]
        else:
            self.epoch, self.step, self.best = state["epoch"], state["step"], state["best"]
        self.wall_s = state["wall_s"]
        self.counters.update({k: state[k] for k in self.counters})
        return float(state.get("cpu_s", 0.0))

    def state(self, epoch: int, step: int) -> dict[str, Any]:
        """The content of ``state.pt`` at position (next ``epoch``, next ``step``)."""
        doc: dict[str, Any] = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}
        if self.scheduler is not None or self.layout == "global_step":
            doc[self._scheduler_key] = None if self.scheduler is None else self.scheduler.state_dict()
        if self.layout == "epoch":
            if step:
                raise ValueError("the 'epoch' state layout saves whole epochs only")
            doc.update(epoch=epoch - 1, best_val=self.best)
        elif self.layout == "global_step":
            if epoch:
                raise ValueError("the 'global_step' state layout has no epochs")
            doc.update(step=step, best_val=self.best)
        else:
            doc.update(epoch=epoch, step=step, best=self.best)
        doc.update(wall_s=self.wall_s, **self.counters)
        if self.layout != "global_step":
            doc["cpu_s"] = self.budget.used_s()
        return doc

    @property
    def _scheduler_key(self) -> str:
        return "plateau" if self.layout == "global_step" else "scheduler"

    def save_state(self, epoch: int, step: int) -> None:
        """Write ``state.pt`` (main process, atomic) at position (next ``epoch``, next ``step``)."""
        if self.is_main:
            atomic_save(self.state(epoch, step), self.state_path)

    def tick(self) -> None:
        """Add the time since the last tick to the training wall time."""
        now = time.perf_counter()
        self.wall_s += now - self._t0
        self._t0 = now

    def restart_clock(self) -> None:
        """Start the next wall-time interval now: the time since the last tick (e.g. a checkpoint
        write) is not training time."""
        self._t0 = time.perf_counter()

    def past_deadline(self) -> bool:
        """Whether the deadline (if any) has passed."""
        deadline = self.budgets.deadline_unix
        return deadline is not None and time.time() >= deadline

    def checkpoint(self, epoch: int, step: int) -> None:
        """Mid-epoch: count the wall time so far and write ``state.pt`` at (``epoch``, next ``step``)."""
        self.tick()
        self.save_state(epoch, step)

    def advance(self, n: int = 1) -> None:
        """Move a step-counting progress bar by ``n`` steps."""
        if self.bar is not None:
            self.bar.update(n)

    # ------------------------------------------------------------------ the loop
    def run(
        self,
        run_epoch: Callable[[int, int], EpochOutcome],
        on_best: Callable[[int, EpochOutcome], None],
        progress: Progress,
        on_epoch_end: Callable[[int, EpochOutcome], None] | None = None,
        is_better: Callable[[float, float], bool] = _lower,
    ) -> str | None:
        """Run epochs from the current position until the planned end or a budget.

        ``run_epoch(epoch, first_step)`` trains (from step ``first_step``) and validates. After it,
        the main process saves the best model (``on_best``) when the score improves, calls
        ``on_epoch_end``, appends the ``log.csv`` row and writes ``state.pt``.

        Returns
        -------
        str or None
            :attr:`stopped`: ``None`` at the planned end, ``"cpu_budget"`` (the run is over;
            :attr:`epochs_run` says how many epochs ran), ``"wall_time"`` or ``"deadline"`` (resume
            continues).
        """
        from tqdm.auto import tqdm

        per_step = progress.steps_per_epoch
        total, initial = (
            (self.epochs, self.epoch)
            if per_step is None
            else (self.epochs * per_step, self.epoch * per_step + self.step)
        )
        self.bar = tqdm(
            total=total,
            initial=initial,
            desc=progress.desc,
            unit="epoch" if per_step is None else "batch",
            disable=not self.is_main,
        )
        start = self.epoch
        try:
            for epoch in range(start, self.epochs):
                if epoch > 0 and self.budget.spent():  # at least one epoch, so there is a best model
                    self.stopped, self.epochs_run = "cpu_budget", epoch
                    log.info("CPU budget of %.0f s spent after %d epochs: training ends", self.budgets.cpu_s, epoch)
                    break
                if epoch > 0 and self.past_deadline():
                    self.stopped = "deadline"
                    log.warning("deadline reached before epoch %d: cut; resume continues", epoch)
                    break
                self._t0 = time.perf_counter()
                outcome = run_epoch(epoch, self.step if epoch == start else 0)
                self.tick()
                self.epoch, self.step = epoch + 1, 0
                self._end_epoch(epoch, outcome, on_best, on_epoch_end, is_better)
                if per_step is None:
                    self.bar.update(1)
                self.bar.set_postfix(**outcome.postfix)
                if self._over_wall_time() and epoch + 1 < self.epochs:
                    self.stopped = "wall_time"
                    log.warning(
                        "wall-time budget %.0f s reached after epoch %d: stopping; resume continues", self.wall_s, epoch
                    )
                    break
        finally:
            self.bar.close()
        return self.stopped

    def _over_wall_time(self) -> bool:
        """Whether any process has reached the wall-time budget (a collective call under torchrun)."""
        limit = self.budgets.max_wall_time_s
        over = limit is not None and self.wall_s >= limit
        return bool(allreduce_sum(torch.tensor([float(over)]), self.info)[0] > 0)

    def _end_epoch(
        self,
        epoch: int,
        outcome: EpochOutcome,
        on_best: Callable[[int, EpochOutcome], None],
        on_epoch_end: Callable[[int, EpochOutcome], None] | None,
        is_better: Callable[[float, float], bool],
    ) -> None:
        improved = is_better(outcome.score, self.best)
        if improved:
            self.best = outcome.score
        if self.is_main:
            if improved:
                on_best(epoch, outcome)
            if on_epoch_end is not None:
                on_epoch_end(epoch, outcome)
            append_row(self.log_path, self.log_fields, {"epoch": epoch, **outcome.row, "wall_s": self.wall_s})
        self.save_state(epoch + 1, 0)
