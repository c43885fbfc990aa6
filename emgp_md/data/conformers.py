"""Offline conformer sets for pretraining: RDKit ETKDG v3 + MMFF94, RMSD-pruned, sharded on disk.

A GEOM-like set (docs/method.md §2.1) is rebuilt from SMILES because GEOM itself is not shipped:

1. read a SMILES source (``qm9``, ``drugs`` or a CSV path, :mod:`emgp_md.data.smiles`), drop
   unparsable rows, molecules in the exclusion set (``filter_smiles.txt`` ∪ rMD17, compared by
   stereo-free canonical SMILES, §7 item 5) and duplicates;
2. generate each molecule's conformers (:func:`emgp_md.data.molecule_conformers.generate_molecule`:
   explicit hydrogens, ETKDG v3 seeded from ``(seed, molecule index)``, MMFF94, one stereoisomer,
   heavy-atom RMSD pruning, at most ``max_conformers`` by lowest MMFF energy) in worker processes;
3. write the results in source order into shards (:mod:`emgp_md.data.conformer_store`), with a
   manifest and a ``rejected.csv`` listing every molecule not written and why.

Each molecule depends only on its SMILES, its index and the settings, so a set is identical for
any number of worker processes.
"""

from __future__ import annotations

import logging
import multiprocessing
import platform
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from emgp_md.data.conformer_store import ShardWriter, write_manifest, write_rejected
from emgp_md.data.molecule_conformers import (
    FAILURE_REASONS,
    ConformerSettings,
    MoleculeConformers,
    generate_molecule,
)
from emgp_md.data.smiles import canonical_smiles, default_exclusion, exclusion_key, read_smiles

logger = logging.getLogger(__name__)

__all__ = ["SKIP_REASONS", "generate_conformer_set", "select_molecules"]

#: Molecules skipped on purpose (listed in ``rejected.csv`` too).
SKIP_REASONS = ("excluded", "duplicate")


def _generate_item(item: tuple[int, str], settings: ConformerSettings, seed: int) -> MoleculeConformers:
    return generate_molecule(item[0], item[1], settings, seed)


def select_molecules(
    smiles: list[str], exclude: set[str], n_molecules: int | None = None, seed: int = 2021
) -> tuple[list[tuple[int, str]], list[tuple[int, str, str, str]]]:
    """Rows to generate and rows rejected before generation.

    Parameters
    ----------
    smiles : list of str
        The source; row ``k`` is molecule ``k``.
    exclude : set of str
        Exclusion keys (:func:`emgp_md.data.smiles.exclusion_key`).
    n_molecules : int, optional
        Draw this many source rows at random (seeded; kept in source order) instead of all rows.
        A random draw, not a prefix: QM9 is ordered by molecule size.
    seed : int

    Returns
    -------
    work : list of (index, canonical SMILES)
    rejected : list of (index, SMILES, reason, detail)
        ``reason`` is ``"parse"``, ``"excluded"`` (detail: the matching exclusion key) or
        ``"duplicate"`` (the same isomeric canonical SMILES as an earlier row, named in detail).
    """
    rows = np.arange(len(smiles))
    if n_molecules is not None and n_molecules < len(rows):
        rows = np.sort(np.random.default_rng(seed).choice(len(rows), n_molecules, replace=False))
    work, rejected, first_row = [], [], {}
    for i in rows.tolist():
        canon = canonical_smiles(smiles[i])
        if canon is None:
            rejected.append((i, smiles[i], "parse", "RDKit cannot parse the SMILES"))
        elif exclusion_key(canon) in exclude:
            rejected.append((i, smiles[i], "excluded", exclusion_key(canon)))
        elif canon in first_row:
            rejected.append((i, smiles[i], "duplicate", f"same molecule as row {first_row[canon]}"))
        else:
            first_row[canon] = i
            work.append((i, canon))
    return work, rejected


def _results(
    work: list[tuple[int, str]], settings: ConformerSettings, seed: int, n_workers: int, progress: bool
) -> Iterator[MoleculeConformers]:
    """Results in the order of ``work``, from ``n_workers`` processes, with a progress bar."""
    from tqdm.auto import tqdm

    fn = partial(_generate_item, settings=settings, seed=seed)
    pool = ProcessPoolExecutor(n_workers, mp_context=_mp_context()) if n_workers > 1 else None
    try:
        chunk = max(1, min(16, len(work) // (8 * n_workers)))
        stream = map(fn, work) if pool is None else pool.map(fn, work, chunksize=chunk)  # input order
        yield from tqdm(stream, total=len(work), unit="mol", desc="conformers", disable=not progress)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)


def _mp_context() -> multiprocessing.context.BaseContext:
    """``forkserver`` where available (workers do not inherit the parent's threads), else ``spawn``.

    Both need an importable ``__main__``: a script file or the CLI, not ``python -`` reading stdin.
    """
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def generate_conformer_set(
    smiles_csv: str | Path,
    out_dir: str | Path,
    *,
    n_molecules: int | None = None,
    max_conformers: int = 10,
    rmsd_threshold_A: float = 0.5,
    seed: int = 2021,
    n_workers: int = 1,
    shard_size: int = 1000,
    exclude: Iterable[str] | None = None,
    n_embed: int = 30,
    embed_timeout_s: float = 1.0,
    progress: bool = True,
) -> dict[str, Any]:
    """Generate a sharded conformer set (see the module docstring) and return its manifest.

    Parameters
    ----------
    smiles_csv : path
        SMILES source (:func:`emgp_md.data.smiles.read_smiles`).
    out_dir : path
        New or empty folder for ``shard_*.npz``, ``manifest.json`` and ``rejected.csv``.
    n_molecules : int, optional
        Seeded random draw of source rows (:func:`select_molecules`); all rows by default.
    max_conformers, rmsd_threshold_A, n_embed, embed_timeout_s
        See :class:`~emgp_md.data.molecule_conformers.ConformerSettings`.
    seed : int
        Fixes the row draw and every molecule's ETKDG seed.
    n_workers : int
        Processes (``forkserver``, see :func:`_mp_context`); the output does not depend on it.
    shard_size : int
        Molecules per shard.
    exclude : iterable of str, optional
        SMILES to exclude (compared by stereo-free canonical SMILES); by default
        :func:`emgp_md.data.smiles.default_exclusion`. Pass ``()`` to exclude nothing.
    progress : bool
        Show a tqdm progress bar.

    Returns
    -------
    dict
        The manifest (also written to ``out_dir/manifest.json``).

    Raises
    ------
    ValueError
        If ``out_dir`` already holds a conformer set, or on invalid settings.
    """
    t0 = time.perf_counter()
    settings = ConformerSettings(
        max_conformers=max_conformers,
        n_embed=n_embed,
        rmsd_threshold_A=rmsd_threshold_A,
        embed_timeout_s=embed_timeout_s,
    )
    writer = ShardWriter(out_dir, shard_size)  # refuses an existing set before any work
    keys = default_exclusion() if exclude is None else {k for k in map(exclusion_key, exclude) if k}
    smiles = read_smiles(smiles_csv)
    work, rejected = select_molecules(smiles, keys, n_molecules, seed)
    counts = Counter(row[2] for row in rejected)
    logger.info("%s: %d rows, %d to generate, skipped %s", smiles_csv, len(smiles), len(work), dict(counts))
    t1 = time.perf_counter()
    n_unconverged = 0
    for result in _results(work, settings, seed, n_workers, progress):
        if result.failure is None:
            writer.add(result)
            n_unconverged += int((~result.converged).sum())
        else:
            rejected.append((result.index, result.smiles, result.failure, result.detail))
            counts[result.failure] += 1
    shards = writer.close()
    t2 = time.perf_counter()
    manifest = _manifest(smiles_csv, len(smiles), work, counts, shards, settings, seed, n_workers, n_molecules)
    manifest.update(n_mmff_unconverged=n_unconverged, exclusion_keys=len(keys))
    manifest["timing"] = _timing(t1 - t0, t2 - t1, len(work), manifest["n_conformers"])
    write_rejected(out_dir, sorted(rejected))
    write_manifest(out_dir, manifest)
    _log_summary(manifest)
    return manifest


def _manifest(
    source: str | Path,
    n_rows: int,
    work: list,
    counts: Counter,
    shards: list[dict],
    settings: ConformerSettings,
    seed: int,
    n_workers: int,
    n_molecules: int | None,
) -> dict[str, Any]:
    from rdkit import rdBase

    return {
        "source": str(Path(source).resolve()),
        "n_source_rows": n_rows,
        "n_requested": n_molecules,
        "n_attempted": len(work),
        "n_molecules": sum(s["n_molecules"] for s in shards),
        "n_conformers": sum(s["n_conformers"] for s in shards),
        "failures": {r: counts.get(r, 0) for r in FAILURE_REASONS},
        "skipped": {r: counts.get(r, 0) for r in SKIP_REASONS},
        "seed": seed,
        "n_workers": n_workers,
        "settings": asdict(settings),
        "embedding": "RDKit ETKDGv3, explicit hydrogens; bonds from RDKit",
        "versions": {"rdkit": rdBase.rdkitVersion, "numpy": np.__version__, "python": platform.python_version()},
        "shards": shards,
    }


def _timing(prepare_s: float, generate_s: float, n_attempted: int, n_conformers: int) -> dict[str, float]:
    return {
        "prepare_s": round(prepare_s, 3),
        "generate_s": round(generate_s, 3),
        "molecules_per_s": n_attempted / generate_s if generate_s > 0 else float("nan"),
        "conformers_per_s": n_conformers / generate_s if generate_s > 0 else float("nan"),
    }


def _log_summary(manifest: dict[str, Any]) -> None:
    timing = manifest["timing"]
    logger.info(
        "wrote %d conformers of %d molecules in %d shards (%.2f molecules/s, %.2f conformers/s)",
        manifest["n_conformers"],
        manifest["n_molecules"],
        len(manifest["shards"]),
        timing["molecules_per_s"],
        timing["conformers_per_s"],
    )
    failed = {k: v for k, v in manifest["failures"].items() if v}
    if failed:
        logger.warning("molecules not generated, by reason: %s (listed in rejected.csv)", failed)
