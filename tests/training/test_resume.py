"""Lost work and leftovers in training: no duplicated log rows on resume, no stale temporary files."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from helpers.ddp_pretrain import synthetic_conformers

from emgp_md.atomic import atomic_torch_save
from emgp_md.config import FinetuneConfig, ModelConfig, PretrainConfig
from emgp_md.pretrain import trainer
from emgp_md.training import finetune as finetune_mod
from emgp_md.training import loop as loop_mod
from emgp_md.training.csvlog import append_row, drop_epochs_from


def _epochs(path: Path) -> list[int]:
    with path.open(newline="") as fh:
        return [int(r["epoch"]) for r in csv.DictReader(fh)]


def _die_on_save(monkeypatch, module, when):
    """Make ``module.atomic_save`` raise KeyboardInterrupt (a kill) for the first object ``when`` accepts."""

    def dying(obj, path):
        if when(obj):
            raise KeyboardInterrupt("simulated kill")
        return atomic_torch_save(obj, path)

    monkeypatch.setattr(module, "atomic_save", dying)


# --------------------------------------------------------------------------- csv log
def test_drop_epochs_from(tmp_path):
    path = tmp_path / "log.csv"
    for epoch in range(4):
        append_row(path, ["epoch", "loss"], {"epoch": epoch, "loss": 0.5 * epoch})
    with path.open("a") as fh:
        fh.write("4,")  # a line cut short by a crash
    assert drop_epochs_from(path, 2) == 3
    assert _epochs(path) == [0, 1]
    assert path.read_text().splitlines()[0] == "epoch,loss"
    assert drop_epochs_from(path, 2) == 0 and drop_epochs_from(tmp_path / "none.csv", 0) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.csv"]


# --------------------------------------------------------------------------- fine-tuning
def _ft_cfg(data, **kw) -> FinetuneConfig:
    base = {
        "data": str(data),
        "test_data": None,
        "n_train": 16,
        "n_val": 4,
        "model": ModelConfig(hidden_nf=8, n_layers=1),
        "epochs": 2,
        "batch_size": 8,
        "lr": 1e-3,
        "seed": 7,
    }
    base.update(kw)
    return FinetuneConfig(**base)


def test_finetune_killed_after_logging_resumes_without_duplicate_rows(tmp_path, tiny_rmd17, monkeypatch):
    out = tmp_path / "ft"
    # killed after epoch 1's log row, before its state.pt: the saved state covers epoch 0 only
    _die_on_save(monkeypatch, loop_mod, lambda obj: obj.get("epoch") == 1)
    with pytest.raises(KeyboardInterrupt):
        finetune_mod.finetune(_ft_cfg(tiny_rmd17), out)
    assert _epochs(out / "log.csv") == [0, 1]
    assert torch.load(out / "state.pt", weights_only=True)["epoch"] == 0
    stale = [out / ".state.pt.k1ll3d.tmp", out / ".config.json.x7.tmp", out / ".best.pt.q9.tmp"]
    for path in stale:
        path.write_bytes(b"half-written")
    monkeypatch.setattr(loop_mod, "atomic_save", atomic_torch_save)
    result = finetune_mod.finetune(_ft_cfg(tiny_rmd17), out, resume=True)
    assert result["finished"]
    assert _epochs(out / "log.csv") == [0, 1]
    assert not any(p.exists() for p in stale)
    assert not list(out.glob(".*.tmp"))


def test_finetune_config_json_written_atomically(tmp_path, tiny_rmd17, monkeypatch):
    written = []
    original = loop_mod.atomic_write_text

    def spy(path, text):
        written.append(Path(path).name)
        original(path, text)

    monkeypatch.setattr(loop_mod, "atomic_write_text", spy)
    finetune_mod.finetune(_ft_cfg(tiny_rmd17, epochs=1), tmp_path / "cfg")
    assert "config.json" in written and (tmp_path / "cfg" / "config.json").is_file()


# --------------------------------------------------------------------------- pretraining
def _pt_cfg(**kw) -> PretrainConfig:
    base = {
        "model": ModelConfig(hidden_nf=8, n_layers=1, head="pooled", noise_levels=50),
        "epochs": 2,
        "batch_size": 4,
        "checkpoint_every_steps": 1,
        "threads": 1,
    }
    base.update(kw)
    return PretrainConfig(**base)


def test_pretrain_killed_after_logging_resumes_without_duplicate_rows(tmp_path, monkeypatch):
    confs = synthetic_conformers(20, seed=1)
    train, val = confs[:16], confs[16:]
    out = tmp_path / "pt"
    # killed after epoch 0's log row, before the end-of-epoch state (epoch 1, step 0)
    _die_on_save(monkeypatch, loop_mod, lambda obj: (obj.get("epoch"), obj.get("step")) == (1, 0))
    with pytest.raises(KeyboardInterrupt):
        trainer.pretrain(_pt_cfg(), train, val, out)
    assert _epochs(out / "log.csv") == [0]
    state = torch.load(out / "state.pt", weights_only=True)
    assert state["epoch"] == 0  # the saved state is inside epoch 0
    (out / ".state.pt.abc.tmp").write_bytes(b"half")
    monkeypatch.setattr(loop_mod, "atomic_save", atomic_torch_save)
    trainer.pretrain(_pt_cfg(), train, val, out, resume=True)
    assert _epochs(out / "log.csv") == [0, 1]
    assert not list(out.glob(".*.tmp")) and not list(out.glob("*.tmp"))
