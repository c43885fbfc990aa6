"""The resumable loop (emgp_md/training/loop.py) and the atomic writes (emgp_md/atomic.py).

A tiny float64 regression trained with Adam and a cosine schedule, seeded batch order per epoch:
killed anywhere (mid-epoch, between epochs, during a state write) and resumed, it ends with the
weights of an uninterrupted run, bit for bit.
"""

from __future__ import annotations

import csv
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from emgp_md import atomic
from emgp_md.atomic import (
    atomic_path,
    atomic_torch_save,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    remove_stale_temp_files,
)
from emgp_md.training import loop as loop_mod
from emgp_md.training.distributed import DistInfo
from emgp_md.training.loop import Budgets, EpochOutcome, Progress, ResumableLoop

N, BATCH, EPOCHS = 24, 5, 4
STEPS = -(-N // BATCH)
FIELDS = ["epoch", "train_loss", "val_loss", "wall_s"]
X = torch.as_tensor(np.random.default_rng(0).normal(size=(N, 3)))
Y = X @ torch.tensor([[1.0], [-2.0], [0.5]], dtype=torch.float64) + 0.1


class Killed(Exception):
    """A simulated kill."""


def _run(out: Path, resume: bool = False, kill_at: tuple[int, int] | None = None, **budgets) -> ResumableLoop:
    """Train; ``kill_at=(epoch, step)`` raises :class:`Killed` before that step."""
    torch.manual_seed(3)
    model = torch.nn.Linear(3, 1).double()
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=EPOCHS)
    loop = ResumableLoop(
        out, model, opt, sched, Budgets(EPOCHS, **budgets), log_fields=FIELDS, layout="step", counters={"steps_done": 0}
    )
    loop.start(resume, {"lr": 0.05})

    def run_epoch(epoch: int, first_step: int) -> EpochOutcome:
        order = np.random.default_rng([11, epoch]).permutation(N)
        losses = []
        for step in range(first_step, STEPS):
            if (epoch, step) == kill_at:
                raise Killed
            idx = torch.as_tensor(order[step * BATCH : (step + 1) * BATCH])
            opt.zero_grad()
            loss = torch.mean((model(X[idx]) - Y[idx]) ** 2)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            loop.counters["steps_done"] += 1
            loop.advance()
            if (step + 1) % 2 == 0:
                loop.checkpoint(epoch, step + 1)
        sched.step()
        with torch.no_grad():
            val = float(torch.mean((model(X) - Y) ** 2))
        return EpochOutcome(val, {"train_loss": float(np.mean(losses)) if losses else float("nan"), "val_loss": val})

    def save_best(epoch: int, outcome: EpochOutcome) -> None:
        atomic_torch_save({"epoch": epoch, "model": model.state_dict()}, out / "best.pt")

    loop.run(run_epoch, save_best, Progress("test", STEPS))
    return loop


def _epochs(path: Path) -> list[int]:
    with path.open(newline="") as fh:
        return [int(row["epoch"]) for row in csv.DictReader(fh)]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> ResumableLoop:
    return _run(tmp_path_factory.mktemp("ref"))


def _same_weights(a: ResumableLoop, b: ResumableLoop) -> None:
    for (name, p), q in zip(a.model.state_dict().items(), b.model.state_dict().values(), strict=True):
        assert torch.equal(p, q), name


@pytest.mark.parametrize("kill_at", [(0, 1), (0, 3), (1, 0), (2, 4), (3, 2)])
def test_killed_and_resumed_equals_uninterrupted(tmp_path, reference, kill_at) -> None:
    with pytest.raises(Killed):
        _run(tmp_path, kill_at=kill_at)
    resumed = _run(tmp_path, resume=True)
    _same_weights(reference, resumed)
    assert resumed.counters["steps_done"] == reference.counters["steps_done"] == EPOCHS * STEPS
    assert resumed.best == reference.best
    assert _epochs(tmp_path / "log.csv") == list(range(EPOCHS))
    state = torch.load(tmp_path / "state.pt", weights_only=True)
    assert (state["epoch"], state["step"], state["best"]) == (EPOCHS, 0, reference.best)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "config.json", "log.csv", "state.pt"]


def test_killed_during_a_state_write_resumes_from_the_previous_state(tmp_path, reference, monkeypatch) -> None:
    def dying_save(obj, path):  # a partial temporary file, then the kill
        if (obj["epoch"], obj["step"]) == (2, 0):
            with atomic_path(path) as tmp:
                tmp.write_bytes(b"half a state")
                raise Killed
        atomic_torch_save(obj, path)

    monkeypatch.setattr(loop_mod, "atomic_save", dying_save)
    with pytest.raises(Killed):
        _run(tmp_path)
    state = torch.load(tmp_path / "state.pt", weights_only=True)
    assert (state["epoch"], state["step"]) == (1, 4)  # the last complete write
    assert not list(tmp_path.glob(".*.tmp"))
    assert _epochs(tmp_path / "log.csv") == [0, 1]  # epoch 1's row was written before its state
    (tmp_path / ".state.pt.k1ll3d.tmp").write_bytes(b"left by a hard kill")
    monkeypatch.setattr(loop_mod, "atomic_save", atomic_torch_save)
    resumed = _run(tmp_path, resume=True)
    _same_weights(reference, resumed)
    assert _epochs(tmp_path / "log.csv") == list(range(EPOCHS))
    assert not list(tmp_path.glob(".*.tmp"))


def test_fresh_run_removes_the_old_log(tmp_path) -> None:
    _run(tmp_path)
    loop = _run(tmp_path)  # not resumed: starts again
    assert _epochs(tmp_path / "log.csv") == list(range(EPOCHS))
    assert loop.counters["steps_done"] == EPOCHS * STEPS
    assert json.loads((tmp_path / "config.json").read_text()) == {"lr": 0.05}


def test_wall_time_budget_stops_resumably(tmp_path, reference) -> None:
    loop = _run(tmp_path, max_wall_time_s=1e-9)
    assert loop.stopped == "wall_time" and loop.epoch == 1
    assert _epochs(tmp_path / "log.csv") == [0]
    for _ in range(EPOCHS - 2):
        assert _run(tmp_path, resume=True, max_wall_time_s=1e-9).stopped == "wall_time"
    last = _run(tmp_path, resume=True, max_wall_time_s=1e-9)
    assert last.stopped is None  # the planned end comes first
    _same_weights(reference, last)


def test_cpu_budget_ends_the_run_after_one_epoch(tmp_path) -> None:
    loop = _run(tmp_path, cpu_s=1e-9)
    assert loop.stopped == "cpu_budget" and loop.epochs_run == 1
    assert _epochs(tmp_path / "log.csv") == [0]
    assert torch.load(tmp_path / "state.pt", weights_only=True)["cpu_s"] > 0


def test_cpu_budget_needs_one_process(tmp_path) -> None:
    with pytest.raises(ValueError, match="single-process"):
        ResumableLoop(
            tmp_path,
            torch.nn.Linear(1, 1),
            None,
            None,
            Budgets(cpu_s=1.0),
            log_fields=FIELDS,
            info=DistInfo(rank=0, world_size=2),
        )


def test_epoch_layout_saves_whole_epochs(tmp_path) -> None:
    model = torch.nn.Linear(1, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loop = ResumableLoop(tmp_path, model, opt, None, Budgets(3), log_fields=FIELDS, layout="epoch")
    loop.start(False, {})
    loop.best = 0.5
    loop.save_state(2, 0)
    state = torch.load(tmp_path / "state.pt", weights_only=True)
    assert (state["epoch"], state["best_val"]) == (1, 0.5) and "scheduler" not in state
    with pytest.raises(ValueError, match="whole epochs"):
        loop.save_state(2, 1)
    again = ResumableLoop(tmp_path, model, opt, None, Budgets(3), log_fields=FIELDS, layout="epoch")
    assert again.start(True, {}) and (again.epoch, again.step, again.best) == (2, 0, 0.5)


# --------------------------------------------------------------------------- atomic writes
def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_atomic_writes_round_trip(tmp_path) -> None:
    atomic_write_bytes(tmp_path / "a.bin", b"\x00\x01")
    atomic_write_text(tmp_path / "sub" / "b.txt", "text")  # the folder is created
    atomic_write_json(tmp_path / "c.json", {"b": 1, "a": [1.5]}, sort_keys=True, newline=True)
    atomic_torch_save({"x": torch.arange(3)}, tmp_path / "d.pt")
    assert (tmp_path / "a.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "sub" / "b.txt").read_text() == "text"
    assert (tmp_path / "c.json").read_text() == json.dumps({"a": [1.5], "b": 1}, indent=2) + "\n"
    assert torch.equal(torch.load(tmp_path / "d.pt", weights_only=True)["x"], torch.arange(3))
    assert _listing(tmp_path) == ["a.bin", "c.json", "d.pt", "sub"]


@pytest.mark.parametrize("kind", ["text", "json", "torch", "body"])
def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch, kind) -> None:
    target = tmp_path / "result"
    target.write_text("old")

    def half_then_fail(self, data, *args, **kwargs):  # a write that dies half-way (disk full, kill)
        Path.write_bytes(self, data[: len(data) // 2].encode() if isinstance(data, str) else b"half")
        raise OSError("no space left on device")

    with pytest.raises((OSError, TypeError, AttributeError, pickle.PicklingError, Killed)):
        if kind == "text":
            monkeypatch.setattr(Path, "write_text", half_then_fail)
            atomic_write_text(target, "new content")
        elif kind == "json":
            atomic_write_json(target, {"not json": object()})
        elif kind == "torch":
            atomic_torch_save({"f": lambda: None}, target)  # unpicklable: torch.save fails mid-write
        else:
            with atomic_path(target) as tmp:
                tmp.write_text("partial")
                raise Killed
    monkeypatch.undo()
    assert target.read_text() == "old"
    assert _listing(tmp_path) == ["result"]


def test_remove_stale_temp_files(tmp_path) -> None:
    (tmp_path / ".state.pt.x1.tmp").write_bytes(b"half")
    (tmp_path / "keep.tmp").write_bytes(b"not ours")
    (tmp_path / "state.pt").write_bytes(b"whole")
    assert [p.name for p in remove_stale_temp_files(tmp_path)] == [".state.pt.x1.tmp"]
    assert _listing(tmp_path) == ["keep.tmp", "state.pt"]
    assert atomic.TEMP_GLOB == ".*.tmp"


def test_global_step_layout_resumes_after_the_row_of_its_step(tmp_path) -> None:
    model = torch.nn.Linear(1, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    fields = ["step", "val_loss", "wall_s"]
    loop = ResumableLoop(
        tmp_path,
        model,
        opt,
        None,
        Budgets(deadline_unix=0.0),
        log_fields=fields,
        layout="global_step",
        counters={"best_step": -1},
    )
    assert not loop.start(True, {}) and loop.past_deadline()
    for step in (2, 4, 6):
        loop_mod.append_row(tmp_path / "log.csv", fields, {"step": step, "val_loss": 1.0 / step, "wall_s": 0.0})
        if step == 4:
            loop.best, loop.counters["best_step"] = 0.25, 4
            loop.save_state(0, 4)
    state = torch.load(tmp_path / "state.pt", weights_only=True)
    assert state["plateau"] is None and "cpu_s" not in state and "epoch" not in state
    assert (state["step"], state["best_val"], state["best_step"]) == (4, 0.25, 4)
    with pytest.raises(ValueError, match="no epochs"):
        loop.save_state(1, 0)
    again = ResumableLoop(
        tmp_path, model, opt, None, Budgets(), log_fields=fields, layout="global_step", counters={"best_step": -1}
    )
    assert again.start(True, {}) and (again.step, again.best, again.counters["best_step"]) == (4, 0.25, 4)
    with (tmp_path / "log.csv").open(newline="") as fh:
        assert [int(r["step"]) for r in csv.DictReader(fh)] == [2, 4]  # step 6 comes again
