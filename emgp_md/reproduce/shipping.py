"""Shipping fine-tuned models as package data, and choosing the best run per molecule.

``ship`` copies a finished fine-tuning run into ``emgp_md/pretrained`` with the reference geometry
(the frame the bond graph was frozen from), the chemical formula, split and machine in its metadata,
and updates ``index.json`` (with the file's SHA-256, checked whenever a shipped model is loaded).
``rehash_shipped`` re-saves shipped checkpoints that carry no content hash and rewrites every
``sha256`` of ``index.json``. ``select_best`` picks, per molecule, the pretrained run with the lowest
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

from emgp_md.atomic import atomic_path, atomic_write_json
from emgp_md.config import FinetuneConfig, from_dict
from emgp_md.data.rmd17 import load_frames, train_val_split
from emgp_md.models.checkpoint import (
    LEGACY_VERSIONS,
    load_checkpoint,
    read_checkpoint,
    safe_torch_load,
    save_checkpoint,
    write_checkpoint,
)
from emgp_md.pretrained import file_sha256

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
        "sha256": file_sha256(dest / f"{name}.pt"),
    }
    _write_index(index_path, index)
    log.info("shipped %s (%s) -> %s", name, formula, dest / f"{name}.pt")
    return index[name]


def _write_index(path: Path, index: dict[str, Any]) -> None:
    atomic_write_json(path, index, sort_keys=True, newline=True)


def add_content_hash(path: Path) -> bool:
    """Re-save a format-1 checkpoint (no content hash) with one; weights and metadata stay bit for bit.

    Returns whether the file was rewritten (False: it already carries a hash).

    Raises
    ------
    RuntimeError
        If the re-saved file does not read back with the same tensors and metadata (then the
        original is left in place).
    """
    raw = safe_torch_load(path)
    if raw.get("format_version") not in LEGACY_VERSIONS:
        read_checkpoint(path)  # current format: verify it, nothing to add
        return False
    state, meta = read_checkpoint(path)
    with atomic_path(path) as tmp:  # renamed onto path only when the check below passes
        write_checkpoint(tmp, state, meta)
        state2, meta2 = read_checkpoint(tmp)
        same = (
            meta2 == meta
            and json.dumps(meta2) == raw["metadata_json"]
            and state2.keys() == state.keys()
            and all(
                state2[k].dtype == v.dtype
                and state2[k].shape == v.shape
                and state2[k].numpy().tobytes() == v.numpy().tobytes()
                for k, v in state.items()
            )
        )
        if not same:
            raise RuntimeError(f"re-saving {path} with a content hash changed its content; original kept")
    log.info("added a content hash to %s", path)
    return True


def rehash_shipped(dest: Path = PACKAGE_DATA) -> dict[str, str]:
    """Give every shipped checkpoint of ``dest`` a content hash and rewrite ``index.json``'s ``sha256``.

    Returns ``{name: sha256}``.
    """
    index_path = dest / "index.json"
    index = json.loads(index_path.read_text())
    for name, entry in sorted(index.items()):
        add_content_hash(dest / entry["file"])
        entry["sha256"] = file_sha256(dest / entry["file"])
    _write_index(index_path, index)
    return {name: entry["sha256"] for name, entry in sorted(index.items())}


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


def ship_checkpoint(model_path: Path, name: str, training: str, dest: Path = PACKAGE_DATA) -> dict[str, Any]:
    """Ship a ``model.pt`` whose metadata carries its reference geometry (``topology.positions_A``).

    For runs of :mod:`emgp_md.training.stepwise` (the GPU session), which train on frames chosen
    from packed data rather than on one rMD17 file. ``training`` describes the data and budget
    (README table); the machine is the device the run trained on (``metrics.device``).
    """
    model, meta = load_checkpoint(model_path)
    topo = dict(meta["topology"])
    if "positions_A" not in topo:
        raise ValueError(f"{model_path}: metadata has no reference geometry (topology.positions_A)")
    formula = Atoms(numbers=topo["z"], positions=topo["positions_A"]).get_chemical_formula(mode="hill")
    metrics = meta.get("metrics", {})
    meta.update(name=name, formula=formula)
    meta["provenance"].update(split=meta["provenance"].get("split", ""), machine=str(metrics.get("device")))
    save_checkpoint(dest / f"{name}.pt", model, meta)
    index_path = dest / "index.json"
    index = json.loads(index_path.read_text()) if index_path.exists() else {}
    index[name] = {
        "file": f"{name}.pt",
        "formula": formula,
        "architecture": meta["model"],
        "init": "pretrained" if meta["provenance"].get("pretrained") else "scratch",
        "pretrained": meta["provenance"].get("pretrained"),
        "epochs": metrics.get("epochs"),
        "steps": metrics.get("steps"),
        "wall_time_s": metrics.get("train_wall_s"),
        "val": metrics.get("val"),
        "test": metrics.get("test"),
        "training": training,
        "sha256": file_sha256(dest / f"{name}.pt"),
    }
    _write_index(index_path, index)
    log.info("shipped %s (%s) -> %s", name, formula, dest / f"{name}.pt")
    return index[name]


def validation_comparison(new_model: Path, old_model: Path, frames: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """MAEs of two checkpoints on the same frames (each with its own frozen topology)."""
    from emgp_md.data.topology import Topology
    from emgp_md.training.evaluate import evaluate

    out = []
    for path in (new_model, old_model):
        model, meta = load_checkpoint(path)
        topo = Topology.from_dict({k: v for k, v in meta["topology"].items() if k != "positions_A"})
        out.append(evaluate(model, topo, frames))
    return out[0], out[1]


README_START, README_END = "<!-- shipped-models:start -->", "<!-- shipped-models:end -->"


def _init_text(entry: dict[str, Any]) -> str:
    arch = entry["architecture"]
    size = f"{arch.get('n_layers')} × {arch.get('hidden_nf')}"
    source = (
        "authors' 3D-EMGP EGNN"
        if str(entry.get("pretrained") or "").endswith("checkpoint-3dmgp")
        else f"pretrained {arch.get('backbone', 'egnn').upper()}"
        if entry.get("pretrained")
        else f"{arch.get('backbone', 'egnn').upper()} from scratch"
    )
    if entry.get("training"):
        return f"{source} ({size}), {entry['training']}"
    return f"{source} ({size}), fine-tuned {entry.get('epochs')} epochs on `train_01`"


def models_table(index: dict[str, dict[str, Any]], bars: dict[str, float]) -> str:
    """Markdown table of the shipped models (``index.json`` entries) with their test MAEs and bar."""
    lines = [
        "| model | formula | initialisation | rMD17 `test_01` energy MAE | force MAE | SchNet (1000 frames, force) |",
        "|---|---|---|---|---|---|",
    ]
    for name, entry in sorted(index.items()):
        t = entry["test"]
        bar = f"{bars[name]:.2f} kcal/mol/Å" if name in bars else "–"
        lines.append(
            f"| `{name}` | {entry['formula']} | {_init_text(entry)} | {t['energy_mae_kcal_mol']:.3f} kcal/mol "
            f"({t['energy_mae_meV']:.2f} meV) | {t['force_mae_kcal_mol_A']:.3f} kcal/mol/Å "
            f"({t['force_mae_meV_A']:.1f} meV/Å) | {bar} |"
        )
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
