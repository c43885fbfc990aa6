"""The data-efficiency claim measured in the product: a finished ``learn`` run's labels, from scratch.

:func:`scratch_side_by_side` fine-tunes committee member 0's recipe (same labels, validation split,
learning-rate schedule, seed) once more without the pretrained backbone, with an EGNN of the
backbone's size, and puts both models' errors on the run's held-out test frames side by side. The
scratch model gets as many epochs as member 0 went through (round 0's plus every refinement), all on
the final labels; the CPU time of each is reported beside.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from emgp_md.atomic import atomic_write_json
from emgp_md.config import from_dict
from emgp_md.data.frames import Dataset
from emgp_md.learn.labelling import load_store
from emgp_md.learn.rounds import member_config, validation_split
from emgp_md.learn.settings import LearnConfig

log = logging.getLogger(__name__)

#: Metrics compared (test frames never trained on).
KEYS = ("force_mae_meV_A", "energy_mae_meV", "force_mae_kcal_mol_A")


def _settings(out: Path) -> tuple[str, LearnConfig]:
    data = json.loads((out / "settings.json").read_text())
    data.setdefault("refine_epochs", 0)  # runs from before refinement restarted every round
    spec = data.pop("spec")
    return spec, from_dict(LearnConfig, data)


def _member0_cpu_s(out: Path, n_rounds: int) -> float:
    """Training CPU seconds of member 0 over every round (a refined member carries all of them)."""
    total = 0.0
    for r in range(n_rounds):
        total += json.loads((out / f"round_{r}" / "member_0" / "metrics.json").read_text()).get("cpu_s") or 0.0
    return total


def scratch_side_by_side(out_dir: str | Path, resume: bool = True, epochs: int | None = None) -> dict[str, Any]:
    """Train member 0's recipe from scratch on the run's final labels; returns and writes
    ``out_dir/scratch_comparison.json`` with both test errors and the CPU time of each.

    ``epochs`` gives the scratch model another number of epochs than member 0's (results then in
    ``scratch_comparison_<epochs>ep.json``, run in ``scratch_member_0_<epochs>ep``): a longer budget
    shows whether scratch only needs more time."""
    from emgp_md.models.checkpoint import load_checkpoint
    from emgp_md.training.finetune import finetune

    out = Path(out_dir)
    spec, cfg = _settings(out)
    learned = json.loads((out / "learn.json").read_text())
    final = out / f"round_{len(learned['rounds']) - 1}"
    pretrained_metrics = json.loads((final / "member_0" / "metrics.json").read_text())
    _, meta = load_checkpoint(final / "member_0" / "model.pt")
    arch = meta["model"]
    scratch_cfg = replace(
        cfg, pretrained="none", scratch_hidden_nf=int(arch["hidden_nf"]), scratch_layers=int(arch["n_layers"])
    )
    labels = load_store(out / "labels_train").to_frames()
    test = load_store(out / "labels_test").to_frames()
    fcfg = member_config(scratch_cfg, 0)
    n_rounds = len(learned["rounds"])
    if cfg.refine_epochs:  # member 0 went through every round: scratch gets as many epochs, on the final labels
        fcfg.epochs = cfg.epochs + cfg.refine_epochs * (n_rounds - 1)
    suffix = ""
    if epochs is not None:
        fcfg.epochs, suffix = epochs, f"_{epochs}ep"
    train, val = validation_split(labels, fcfg.seed)
    run = out / f"scratch_member_0{suffix}"
    log.info("from scratch: %d labels, EGNN %d x %d", len(labels), arch["n_layers"], arch["hidden_nf"])
    scratch_metrics = finetune(
        fcfg, run, resume=resume and (run / "state.pt").is_file(), datasets=(train, val, Dataset([test], "eV"))
    )
    result = {
        "input": spec,
        "labels": len(labels),
        "test_frames": len(test),
        "level_of_theory": learned["level_of_theory"],
        "epochs": fcfg.epochs,
        "architecture": f"EGNN {arch['n_layers']} x {arch['hidden_nf']}",
        "zero_force_mae_meV_A": float(np.abs(test.forces).mean() * 1000.0),  # predicting F = 0 (eV/Å → meV/Å)
        "pretrained": {k: pretrained_metrics["test"].get(k) for k in KEYS}
        | {
            "from": cfg.pretrained,
            "cpu_s": _member0_cpu_s(out, n_rounds) if cfg.refine_epochs else pretrained_metrics.get("cpu_s"),
        },
        "scratch": {k: scratch_metrics["test"].get(k) for k in KEYS} | {"cpu_s": scratch_metrics.get("cpu_s")},
    }
    atomic_write_json(out / f"scratch_comparison{suffix}.json", result)
    return result
