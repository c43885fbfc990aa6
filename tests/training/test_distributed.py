"""Data-parallel training under torchrun (2 CPU processes, gloo) equals one process with the same
global batch, for pretraining and fine-tuning."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

from emgp_md.models.checkpoint import read_checkpoint

HELPER = Path(__file__).resolve().parents[1] / "helpers" / "ddp_pretrain.py"


def _run(args: list[str], torchrun: bool) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1"}
    prefix = [sys.executable]
    if torchrun:
        prefix += ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    proc = subprocess.run(prefix + args, check=False, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


def _max_param_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def test_pretraining_two_processes_equal_one(tmp_path: Path) -> None:
    _run([str(HELPER), str(tmp_path / "single")], torchrun=False)
    _run([str(HELPER), str(tmp_path / "ddp")], torchrun=True)
    single, _ = read_checkpoint(tmp_path / "single" / "last.pt")
    ddp, _ = read_checkpoint(tmp_path / "ddp" / "last.pt")
    assert _max_param_diff(single, ddp) < 1e-6
    assert (tmp_path / "ddp" / "log.csv").read_text().count("\n") == 3  # header + 2 epochs, rank 0 only


def test_finetuning_two_processes_equal_one(tmp_path: Path, tiny_rmd17: Path) -> None:
    cfg = tmp_path / "ft.yaml"
    cfg.write_text(
        f"data: {tiny_rmd17}\nn_train: 12\nn_val: 6\nepochs: 2\nbatch_size: 4\nloss: mse\n"
        "model: {hidden_nf: 8, n_layers: 1}\nthreads: 1\n"
    )
    cli = ["-m", "emgp_md.cli", "finetune", str(cfg), "--out"]
    _run([*cli, str(tmp_path / "single")], torchrun=False)
    _run([*cli, str(tmp_path / "ddp")], torchrun=True)
    a = torch.load(tmp_path / "single" / "state.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "ddp" / "state.pt", weights_only=True)["model"]
    assert _max_param_diff(a, b) < 1e-6
    untrained_like = {k: torch.zeros_like(v) for k, v in a.items()}
    assert _max_param_diff(a, untrained_like) > 0  # the comparison is not between empty models
