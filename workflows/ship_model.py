"""Copy a finished fine-tuning run into the package data as a shipped default model.

Adds the reference geometry (the frame the bond graph was frozen from) and the chemical formula to
the checkpoint metadata and updates ``emgp_md/pretrained/index.json``.

Example::

    python workflows/ship_model.py runs/aspirin --name aspirin
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
from pathlib import Path

import numpy as np
import torch
from ase import Atoms

from emgp_md.config import FinetuneConfig, from_dict
from emgp_md.data.rmd17 import load_frames, train_val_split
from emgp_md.models.checkpoint import load_checkpoint, save_checkpoint

PACKAGE_DATA = Path(__file__).resolve().parents[1] / "emgp_md" / "pretrained"
log = logging.getLogger("ship_model")


def reference_positions(cfg: FinetuneConfig) -> np.ndarray:
    """The first training frame of the run's seeded split: the geometry its topology came from."""
    data = load_frames(cfg.data, cfg.label_set)
    train_idx, _ = train_val_split(len(data), cfg.n_train, cfg.n_val, cfg.seed)
    return data.coords[train_idx[0]]


def ship(run_dir: Path, name: str, dest: Path = PACKAGE_DATA) -> dict:
    model, meta = load_checkpoint(run_dir / "model.pt")
    cfg = from_dict(FinetuneConfig, json.loads((run_dir / "config.json").read_text()))
    topo = dict(meta["topology"])
    pos = reference_positions(cfg)
    topo["positions_A"] = pos.tolist()
    formula = Atoms(numbers=topo["z"], positions=pos).get_chemical_formula(mode="hill")
    meta.update(name=name, formula=formula, topology=topo)
    meta["provenance"].update(
        split=f"{Path(cfg.data).name}: {cfg.n_train} train / {cfg.n_val} validation frames (seed {cfg.seed}); "
        f"test: {Path(cfg.test_data).name if cfg.test_data else 'none'}",
        machine=f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPU cores, torch {torch.__version__}",
    )
    save_checkpoint(dest / f"{name}.pt", model, meta)
    index_path = dest / "index.json"
    index = json.loads(index_path.read_text()) if index_path.exists() else {}
    metrics = meta.get("metrics", {})
    index[name] = {
        "file": f"{name}.pt",
        "formula": formula,
        "architecture": meta["model"],
        "init": "pretrained" if meta["provenance"].get("pretrained") else "scratch",
        "pretrained": meta["provenance"].get("pretrained"),
        "epochs": metrics.get("epochs"),
        "wall_time_s": metrics.get("wall_s"),
        "val": metrics.get("val"),
        "test": metrics.get("test"),
    }
    index_path.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    log.info("shipped %s (%s) -> %s", name, formula, dest / f"{name}.pt")
    return index[name]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--name", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    print(json.dumps(ship(args.run_dir, args.name), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
