"""Pretraining loop: logs and checkpoints, and a run killed mid-epoch resumes to the same result."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from helpers.ddp_pretrain import synthetic_conformers

from emgp_md.config import ModelConfig, PretrainConfig
from emgp_md.models.checkpoint import load_checkpoint, read_checkpoint
from emgp_md.pretrain import trainer


def _cfg(**kw) -> PretrainConfig:
    base = {
        "model": ModelConfig(hidden_nf=8, n_layers=1, head="pooled", noise_levels=50),
        "epochs": 2,
        "batch_size": 4,
        "checkpoint_every_steps": 1,
        "threads": 1,
    }
    base.update(kw)
    return PretrainConfig(**base)


@pytest.fixture(scope="module")
def data():
    confs = synthetic_conformers(20, seed=1)
    return confs[:16], confs[16:]


def test_outputs_and_log(tmp_path: Path, data) -> None:
    result = trainer.pretrain(_cfg(), *data, tmp_path)
    for name in ("state.pt", "best.pt", "last.pt", "log.csv", "config.json"):
        assert (tmp_path / name).exists(), name
    rows = list(csv.DictReader((tmp_path / "log.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    assert all(float(r["conformers_per_s"]) > 0 and float(r["val_loss"]) > 0 for r in rows)
    _model, meta = load_checkpoint(tmp_path / "best.pt")
    assert meta["units"]["energy"] == "arbitrary" and len(meta["sigmas_A"]) == 50
    assert result["skipped_steps"] == 0 and result["best_val_loss"] == pytest.approx(
        min(float(r["val_loss"]) for r in rows)
    )


def test_kill_mid_epoch_then_resume_matches_uninterrupted(tmp_path: Path, data, monkeypatch) -> None:
    trainer.pretrain(_cfg(), *data, tmp_path / "full")
    original = trainer.run_batch
    calls = {"n": 0}

    def dying_run_batch(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 7:  # 4 train + 1 validation batches in epoch 0, then epoch 1 batch 2
            raise KeyboardInterrupt("simulated kill")
        return original(*args, **kwargs)

    monkeypatch.setattr(trainer, "run_batch", dying_run_batch)
    with pytest.raises(KeyboardInterrupt):
        trainer.pretrain(_cfg(), *data, tmp_path / "killed")
    state = torch.load(tmp_path / "killed" / "state.pt", weights_only=True)
    assert (state["epoch"], state["step"]) == (1, 1)
    monkeypatch.setattr(trainer, "run_batch", original)
    trainer.pretrain(_cfg(), *data, tmp_path / "killed", resume=True)
    full, _ = read_checkpoint(tmp_path / "full" / "last.pt")
    resumed, _ = read_checkpoint(tmp_path / "killed" / "last.pt")
    assert max(float((full[k] - resumed[k]).abs().max()) for k in full) < 1e-6


def test_non_finite_steps_are_skipped(tmp_path: Path, data, monkeypatch) -> None:
    original = trainer.run_batch

    def nan_first(*args, **kwargs):
        loss, stats = original(*args, **kwargs)
        if args[5] == 0 and not hasattr(nan_first, "done"):  # epoch 0, first batch
            nan_first.done = True
            loss = loss * float("nan")
        return loss, stats

    monkeypatch.setattr(trainer, "run_batch", nan_first)
    result = trainer.pretrain(_cfg(epochs=1), *data, tmp_path)
    assert result["skipped_steps"] == 1
    model, _ = load_checkpoint(tmp_path / "last.pt")
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_cpu_budget_ends_pretraining_after_one_step(tmp_path: Path, data, monkeypatch) -> None:
    original, calls = trainer.run_batch, {"n": 0}

    def counting_run_batch(*args, **kwargs):
        calls["n"] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(trainer, "run_batch", counting_run_batch)
    result = trainer.pretrain(_cfg(cpu_budget_s=1e-9, epochs=3), *data, tmp_path)
    assert calls["n"] == 2  # one training step (budget spent), then the one validation batch
    rows = list(csv.DictReader((tmp_path / "log.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [0]
    assert (tmp_path / "best.pt").is_file() and result["cpu_s"] > 0
    assert json.loads((tmp_path / "summary.json").read_text()) == json.loads(json.dumps(result))
    assert torch.load(tmp_path / "state.pt", weights_only=True)["cpu_s"] == pytest.approx(result["cpu_s"], rel=0.5)


def test_cpu_budget_must_be_positive(tmp_path: Path, data) -> None:
    with pytest.raises(ValueError, match="cpu_budget_s must be positive"):
        trainer.pretrain(_cfg(cpu_budget_s=0.0), *data, tmp_path)
