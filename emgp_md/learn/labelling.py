"""Labelling frames into a store that survives a kill: one file per label, written atomically.

The store is a folder: ``000012.json`` holds frame 12's geometry (Å), energy (eV), forces (eV/Å),
level of theory and time; ``000012.failed.json`` the error of a frame whose calculation failed
(recorded and skipped, never fatal). :func:`label_frames` computes only the frames the store does
not hold, so a killed run resumes without relabelling anything. Labels run through a
``concurrent.futures`` executor: worker processes by default, any executor you pass, or a
``dask.distributed`` client's executor (labelling then scales out over that cluster).
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import time
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from emgp_md.atomic import atomic_write_json
from emgp_md.data.frames import Dataset, Frames
from emgp_md.errors import LabelError
from emgp_md.learn.labellers import CalculatorLabeller, PySCFLabeller, XTBLabeller

__all__ = [
    "CalculatorLabeller",
    "LabelResult",
    "PySCFLabeller",
    "XTBLabeller",
    "label_frames",
    "load_store",
]

log = logging.getLogger(__name__)


@dataclass
class LabelResult:
    """What a store holds: ``labelled`` records (sorted by index), ``failed`` ones, and the time spent."""

    store: Path
    labelled: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)
    wall_s: float = 0.0

    def to_frames(self, name: str = "", below: int | None = None) -> Frames:
        """The labelled frames as :class:`Frames` in eV (one molecule: the same atomic numbers in order);
        with ``below``, only frames of index ``< below`` (the labels of the rounds so far)."""
        records = [r for r in self.labelled if below is None or r["index"] < below]
        if not records:
            raise ValueError(f"{self.store}: no labelled frames ({len(self.failed)} failed)")
        z = np.asarray(records[0]["numbers"], dtype=np.int64)
        if any(r["numbers"] != records[0]["numbers"] for r in records):
            raise ValueError(f"{self.store}: frames of different molecules in one store")
        return Frames(
            z=z,
            coords=np.array([r["positions_A"] for r in records], dtype=np.float64),
            energies=np.array([r["energy_eV"] for r in records], dtype=np.float64),
            forces=np.array([r["forces_eV_A"] for r in records], dtype=np.float64),
            source=str(self.store),
            energy_unit="eV",
            name=name,
        )

    def to_dataset(self, name: str = "") -> Dataset:
        """The labelled frames as a one-molecule :class:`Dataset` (eV)."""
        frames = self.to_frames(name)
        return Dataset([frames], "eV", frames.source)


def _path(store: Path, index: int, failed: bool = False) -> Path:
    return store / f"{index:06d}{'.failed' if failed else ''}.json"


def load_store(store: str | Path) -> LabelResult:
    """Every record of ``store`` (an absent store is empty)."""
    store = Path(store)
    result = LabelResult(store)
    if not store.is_dir():
        return result
    for path in sorted(store.glob("*.json")):
        record = json.loads(path.read_text())
        (result.failed if path.name.endswith(".failed.json") else result.labelled).append(record)
    return result


def _label_one(labeller: Any, index: int, numbers: list[int], positions: list[list[float]]) -> dict[str, Any]:
    """One frame's record (or its failure record); runs in a worker."""
    t0 = time.perf_counter()
    atoms = Atoms(numbers=numbers, positions=positions)
    base = {"index": index, "numbers": numbers, "positions_A": positions, "level_of_theory": labeller.level_of_theory}
    try:
        energy, forces = labeller(atoms)
    except Exception as exc:  # noqa: BLE001 - any failure of one frame is recorded, never fatal
        error = str(exc) if isinstance(exc, LabelError) else f"{type(exc).__name__}: {exc}"
        return {**base, "error": error, "wall_s": time.perf_counter() - t0}
    return {
        **base,
        "energy_eV": float(energy),
        "forces_eV_A": np.asarray(forces, dtype=np.float64).tolist(),
        "wall_s": time.perf_counter() - t0,
    }


def _check_same_geometry(store: Path, index: int, atoms: Atoms) -> None:
    for failed in (False, True):
        path = _path(store, index, failed)
        if path.is_file():
            record = json.loads(path.read_text())
            same = record["numbers"] == atoms.numbers.tolist() and np.allclose(
                record["positions_A"], atoms.positions, atol=1e-6
            )
            if not same:
                raise ValueError(
                    f"{path} holds another geometry than frame {index} given now: "
                    "the store belongs to other frames; use a new store folder"
                )


def _executor(max_workers: int, executor: Executor | None, client: Any) -> tuple[Executor | None, bool]:
    """The executor to use and whether this call owns it (and must shut it down)."""
    if executor is not None:
        return executor, False
    if client is not None:
        return client.get_executor(), False
    if max_workers <= 1:
        return None, False
    return ProcessPoolExecutor(max_workers, mp_context=multiprocessing.get_context("spawn")), True


def _save(store: Path, record: dict[str, Any]) -> None:
    failed = "error" in record
    atomic_write_json(_path(store, record["index"], failed), record)
    if failed:
        log.warning("label of frame %d failed and is skipped: %s", record["index"], record["error"])


def label_frames(
    frames: list[Atoms],
    labeller: Any,
    store: str | Path,
    *,
    max_workers: int = 1,
    start_index: int = 0,
    executor: Executor | None = None,
    client: Any = None,
    progress: bool = True,
) -> LabelResult:
    """Label ``frames`` (frame ``i`` has index ``start_index + i``) into ``store``; returns the whole store.

    Frames the store already holds (labelled or failed) are not recomputed. ``max_workers > 1`` runs
    them in that many spawned processes; ``executor`` (any ``concurrent.futures.Executor``) or
    ``client`` (a ``dask.distributed.Client``) take their place. The result's ``wall_s`` is this call's.
    """
    from tqdm import tqdm

    store = Path(store)
    store.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    todo = []
    for i, atoms in enumerate(frames):
        index = start_index + i
        if _path(store, index).is_file() or _path(store, index, failed=True).is_file():
            _check_same_geometry(store, index, atoms)
        else:
            todo.append((index, atoms.numbers.tolist(), atoms.positions.tolist()))
    if len(todo) < len(frames):
        log.info(
            "%s: %d of %d frames already labelled, %d to go", store, len(frames) - len(todo), len(frames), len(todo)
        )
    bar = tqdm(total=len(todo), desc=f"labels ({labeller.level_of_theory})", unit="frame", disable=not progress)
    pool, owned = _executor(max_workers, executor, client)
    try:
        if pool is None:
            for job in todo:
                _save(store, _label_one(labeller, *job))
                bar.update()
        else:
            futures = [pool.submit(_label_one, labeller, *job) for job in todo]
            for future in as_completed(futures):
                _save(store, future.result())
                bar.update()
    finally:
        bar.close()
        if owned and pool is not None:
            pool.shutdown(cancel_futures=True)
    result = load_store(store)
    result.wall_s = time.perf_counter() - t0
    return result
