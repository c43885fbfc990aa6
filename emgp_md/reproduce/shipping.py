"""Shipping fine-tuned models as package data, and choosing the best run per molecule.

``ship`` copies a finished fine-tuning run into ``emgp_md/pretrained`` with the reference geometry
(the frame the bond graph was frozen from), the chemical formula, split and machine in its metadata,
and updates ``index.json``. ``select_best`` picks, per molecule, the pretrained run with the lowest
*validation* force MAE (the test frames are never used to choose).
"""

from __future__ import annotations

import json
import logging
import os
import platform
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ase import Atoms

from emgp_md.config import FinetuneConfig, from_dict
from emgp_md.data.rmd17 import load_frames, train_val_split
from emgp_md.models.checkpoint import load_checkpoint, save_checkpoint

PACKAGE_DATA = Path(__file__).resolve().parents[1] / "pretrained"
log = logging.getLogger(__name__)


def reference_positions(cfg: FinetuneConfig) -> np.ndarray:
    """The first training frame of the run's seeded split: the geometry its topology came from."""
    data = load_frames(cfg.data, cfg.label_set)
    train_idx, _ = train_val_split(len(data), cfg.n_train, cfg.n_val, cfg.seed)
    return data.coords[train_idx[0]]


def ship(run_dir: Path, name: str, dest: Path = PACKAGE_DATA) -> dict[str, Any]:
    """Copy ``run_dir/model.pt`` to ``dest/<name>.pt`` with shipping metadata; returns its index entry."""
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



def select_best(results: dict[str, dict[str, dict[str, Any]]], candidates: list[str]) -> dict[str, str]:
    """Molecule → run folder of the candidate spec with the lowest validation force MAE.

    ``results`` is :func:`emgp_md.reproduce.md17_report.collect`'s output.
    """
    best: dict[str, tuple[float, str]] = {}
    for spec in candidates:
        for mol, run in results.get(spec, {}).items():
            val = float(run["val"]["force_mae_kcal_mol_A"])
            if mol not in best or val < best[mol][0]:
                best[mol] = (val, run["run"])
    return {mol: run for mol, (_, run) in sorted(best.items())}


def misses_bar(test_force_mae: float, bar: float | None) -> bool:
    """Whether a run's ``test_01`` force MAE (kcal/mol/Å) fails to beat the bar a shipped model must beat.

    The bar is SchNet's published 1000-frame force MAE for the molecule; a molecule without a
    bar (``None``) is never held back.
    """
    return bar is not None and not test_force_mae < bar


README_START, README_END = "<!-- shipped-models:start -->", "<!-- shipped-models:end -->"


def _init_text(entry: dict[str, Any]) -> str:
    arch = entry["architecture"]
    size = f"{arch.get('n_layers')} × {arch.get('hidden_nf')}"
    source = ("authors' 3D-EMGP EGNN" if str(entry.get("pretrained") or "").endswith("checkpoint-3dmgp")
              else f"pretrained {arch.get('backbone', 'egnn').upper()}" if entry.get("pretrained")
              else f"{arch.get('backbone', 'egnn').upper()} from scratch")
    return f"{source} ({size}), fine-tuned {entry.get('epochs')} epochs on `train_01`"


def models_table(index: dict[str, dict[str, Any]], bars: dict[str, float]) -> str:
    """Markdown table of the shipped models (``index.json`` entries) with their test MAEs and bar."""
    lines = ["| model | formula | initialisation | rMD17 `test_01` energy MAE | force MAE | SchNet (1000 frames, force) |",
             "|---|---|---|---|---|---|"]
    for name, entry in sorted(index.items()):
        t = entry["test"]
        bar = f"{bars[name]:.2f} kcal/mol/Å" if name in bars else "–"
        lines.append(f"| `{name}` | {entry['formula']} | {_init_text(entry)} | {t['energy_mae_kcal_mol']:.3f} kcal/mol "
                     f"({t['energy_mae_meV']:.2f} meV) | {t['force_mae_kcal_mol_A']:.3f} kcal/mol/Å "
                     f"({t['force_mae_meV_A']:.1f} meV/Å) | {bar} |")
    return "\n".join(lines)


def update_readme(readme: Path, table: str) -> bool:
    """Replace the text between the shipped-models markers of ``readme``; False when it has no markers."""
    text = readme.read_text()
    if README_START not in text or README_END not in text:
        return False
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    readme.write_text(f"{head}{README_START}\n{table}\n{README_END}{tail}")
    return True
