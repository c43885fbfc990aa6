"""Sharded on-disk conformer sets, read lazily, and a train/validation split by molecule.

A set is a folder holding ``manifest.json``, ``rejected.csv`` and shards ``shard_00000.npz``, ...
Each shard is a compressed ``.npz`` (no pickles) of up to ``shard_size`` molecules; per-molecule
arrays are concatenated and addressed by offsets:

=================  ==========================  =================================================
key                shape, dtype                meaning
=================  ==========================  =================================================
``mol_index``      (n_mol,) int64              molecule id: row in the SMILES source
``smiles``         (n_mol,) str                isomeric canonical SMILES of the stereoisomer
``atom_offsets``   (n_mol + 1,) int64          atoms of molecule m: ``z[atom_offsets[m]:...[m+1]]``
``z``              (n_atoms_total,) int8       atomic numbers, explicit hydrogens
``bond_offsets``   (n_mol + 1,) int64          bonds of molecule m, likewise
``bonds``          (n_bonds_total, 2) int32    RDKit bonds ``i < j``, molecule-local atom indices
``conf_offsets``   (n_mol + 1,) int64          conformers of molecule m, lowest energy first
``conf_mol``       (n_conf,) int32             shard-local molecule of each conformer
``pos_offsets``    (n_conf + 1,) int64         rows of ``pos`` of each conformer
``pos``            (n_pos, 3) float32, Å       positions
``energy_eV``      (n_conf,) float64, eV       MMFF94 energy (relative meaning only)
``converged``      (n_conf,) bool              MMFF converged
=================  ==========================  =================================================

:class:`ConformerDataset` needs only the manifest to index the set; a shard is read on first access
and kept in a small LRU cache.
"""

from __future__ import annotations

import csv
import json
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from emgp_md.atomic import atomic_write_json
from emgp_md.data.topology import Topology, topology_from_bonds

__all__ = ["FORMAT", "ConformerDataset", "ConformerRecord", "ShardWriter", "collate_records", "split_by_molecule"]

FORMAT = {"name": "emgp-md-conformers", "version": 1}
MANIFEST = "manifest.json"
REJECTED = "rejected.csv"


def _offsets(sizes: Sequence[int]) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)]).astype(np.int64)


class ShardWriter:
    """Collect molecules and write a shard every ``shard_size`` molecules.

    Parameters
    ----------
    out_dir : path
        Created if needed; must not already hold a manifest or shards.
    shard_size : int
        Molecules per shard.

    Raises
    ------
    ValueError
        If ``out_dir`` already holds a conformer set, or ``shard_size < 1``.
    """

    def __init__(self, out_dir: str | Path, shard_size: int = 1000) -> None:
        self.out_dir = Path(out_dir)
        if shard_size < 1:
            raise ValueError(f"shard_size must be >= 1, got {shard_size}")
        if (self.out_dir / MANIFEST).exists() or any(self.out_dir.glob("shard_*.npz")):
            raise ValueError(f"{str(self.out_dir)!r} already holds a conformer set; choose a new folder")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.shard_size = shard_size
        self._pending: list[Any] = []
        self.shards: list[dict[str, Any]] = []

    def add(self, mol: Any) -> None:
        """Queue one :class:`~emgp_md.data.conformers.MoleculeConformers` (in molecule order)."""
        self._pending.append(mol)
        if len(self._pending) >= self.shard_size:
            self._flush()

    def close(self) -> list[dict[str, Any]]:
        """Write the last partial shard; returns the shard list for the manifest."""
        if self._pending:
            self._flush()
        return self.shards

    def _flush(self) -> None:
        mols, self._pending = self._pending, []
        n_conf = [len(m.pos) for m in mols]
        arrays = {
            "mol_index": np.asarray([m.index for m in mols], dtype=np.int64),
            "smiles": np.asarray([m.smiles for m in mols], dtype=str),
            "atom_offsets": _offsets([len(m.z) for m in mols]),
            "z": np.concatenate([m.z for m in mols]).astype(np.int8),
            "bond_offsets": _offsets([len(m.bonds) for m in mols]),
            "bonds": np.concatenate([m.bonds.reshape(-1, 2) for m in mols]).astype(np.int32),
            "conf_offsets": _offsets(n_conf),
            "conf_mol": np.repeat(np.arange(len(mols), dtype=np.int32), n_conf),
            "pos_offsets": _offsets([len(m.z) for m in mols for _ in range(len(m.pos))]),
            "pos": np.concatenate([m.pos.reshape(-1, 3) for m in mols]).astype(np.float32),
            "energy_eV": np.concatenate([m.energy_eV for m in mols]).astype(np.float64),
            "converged": np.concatenate([m.converged for m in mols]).astype(bool),
        }
        name = f"shard_{len(self.shards):05d}.npz"
        np.savez_compressed(self.out_dir / name, **arrays)
        self.shards.append(
            {"file": name, "n_molecules": len(mols), "n_conformers": int(sum(n_conf)), "n_pos": len(arrays["pos"])}
        )


def write_manifest(out_dir: str | Path, manifest: dict[str, Any]) -> Path:
    """Write ``manifest.json`` (with the format tag) last, so that a complete set has one."""
    path = Path(out_dir) / MANIFEST
    atomic_write_json(path, {"format": FORMAT, **manifest})
    return path


def write_rejected(out_dir: str | Path, rows: Sequence[tuple[int, str, str, str]]) -> Path:
    """Write ``rejected.csv``: ``index, smiles, reason, detail`` of every molecule not in the set."""
    path = Path(out_dir) / REJECTED
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["index", "smiles", "reason", "detail"])
        writer.writerows(rows)
    return path


def read_manifest(root: str | Path) -> dict[str, Any]:
    """Manifest of a set.

    Raises
    ------
    FileNotFoundError
        If ``root/manifest.json`` is absent (e.g. an unfinished run).
    ValueError
        If it is not an ``emgp-md-conformers`` manifest of a known version.
    """
    path = Path(root) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{str(path)!r} does not exist: not a finished conformer set")
    manifest = json.loads(path.read_text())
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{str(path)!r} has format {manifest.get('format')!r}, expected {FORMAT}")
    return manifest


@dataclass(frozen=True)
class ConformerRecord:
    """One conformer.

    Attributes
    ----------
    topology : Topology
        Frozen hop-typed graph built from the stored RDKit bonds (shared by a molecule's conformers).
    pos : (n_atoms, 3) float64, Å
    mol_index : int
        Molecule id (row in the SMILES source).
    conformer : int
        Rank of the conformer within its molecule, 0 = lowest MMFF energy.
    smiles : str
    energy_eV : float, eV
        MMFF94 energy.
    """

    topology: Topology
    pos: np.ndarray
    mol_index: int
    conformer: int
    smiles: str
    energy_eV: float


class _Shard:
    """Arrays of one shard, with topologies built on first use."""

    def __init__(self, path: Path) -> None:
        with np.load(path, allow_pickle=False) as data:
            self.a = {key: data[key] for key in data.files}
        self._topologies: dict[int, Topology] = {}

    def topology(self, m: int) -> Topology:
        if m not in self._topologies:
            a = self.a
            z = a["z"][a["atom_offsets"][m] : a["atom_offsets"][m + 1]]
            bonds = a["bonds"][a["bond_offsets"][m] : a["bond_offsets"][m + 1]]
            self._topologies[m] = topology_from_bonds(z, bonds)
        return self._topologies[m]

    def record(self, k: int) -> ConformerRecord:
        a = self.a
        m = int(a["conf_mol"][k])
        return ConformerRecord(
            topology=self.topology(m),
            pos=a["pos"][a["pos_offsets"][k] : a["pos_offsets"][k + 1]].astype(np.float64),
            mol_index=int(a["mol_index"][m]),
            conformer=int(k - a["conf_offsets"][m]),
            smiles=str(a["smiles"][m]),
            energy_eV=float(a["energy_eV"][k]),
        )


class ConformerDataset:
    """All conformers of a set, indexed ``0..len-1`` in shard order; a map-style torch dataset.

    Parameters
    ----------
    root : path
        Folder written by :func:`emgp_md.data.conformers.generate_conformer_set`.
    cache_shards : int
        Shards kept in memory (least recently used evicted).
    """

    def __init__(self, root: str | Path, cache_shards: int = 2) -> None:
        self.root = Path(root)
        self.manifest = read_manifest(self.root)
        self._files = [self.root / s["file"] for s in self.manifest["shards"]]
        self._start = _offsets([s["n_conformers"] for s in self.manifest["shards"]])
        self.cache_shards = max(1, cache_shards)
        self._cache: OrderedDict[int, _Shard] = OrderedDict()

    def __len__(self) -> int:
        return int(self._start[-1])

    def __getitem__(self, i: int) -> ConformerRecord:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"conformer {i} out of range for a set of {n}")
        i = int(i) % n
        s = int(np.searchsorted(self._start, i, side="right") - 1)
        return self._shard(s).record(i - int(self._start[s]))

    def __getstate__(self) -> dict[str, Any]:  # DataLoader workers start with an empty cache
        return {**self.__dict__, "_cache": OrderedDict()}

    def _shard(self, s: int) -> _Shard:
        if s in self._cache:
            self._cache.move_to_end(s)
        else:
            self._cache[s] = _Shard(self._files[s])
            while len(self._cache) > self.cache_shards:
                self._cache.popitem(last=False)
        return self._cache[s]

    def molecule_ids(self) -> np.ndarray:
        """(n_conformers,) int64 molecule id of each conformer; reads two small arrays per shard."""
        ids = []
        for path in self._files:
            with np.load(path, allow_pickle=False) as data:
                ids.append(np.repeat(data["mol_index"], np.diff(data["conf_offsets"])))
        return np.concatenate(ids) if ids else np.zeros(0, np.int64)

    def split(self, n_val_molecules: int = 500, seed: int = 2021) -> tuple[np.ndarray, np.ndarray]:
        """Conformer indices ``(train, val)`` split by molecule: see :func:`split_by_molecule`."""
        return split_by_molecule(self.molecule_ids(), n_val_molecules, seed)


def split_by_molecule(mol_ids: np.ndarray, n_val_molecules: int, seed: int = 2021) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of conformers by molecule: a molecule's conformers are all on one side.

    Parameters
    ----------
    mol_ids : (n_conformers,) int
        Molecule id of each conformer.
    n_val_molecules : int
        Molecules drawn for validation (the authors use 500, docs/method.md §2.1).
    seed : int

    Returns
    -------
    train, val : (n,) int64
        Sorted conformer indices.

    Raises
    ------
    ValueError
        If ``n_val_molecules`` exceeds the number of molecules.
    """
    mol_ids = np.asarray(mol_ids)
    molecules = np.unique(mol_ids)
    if not 0 <= n_val_molecules <= len(molecules):
        raise ValueError(f"n_val_molecules={n_val_molecules} but the set has {len(molecules)} molecules")
    val_mols = np.random.default_rng(seed).permutation(molecules)[:n_val_molecules]
    is_val = np.isin(mol_ids, val_mols)
    return np.flatnonzero(~is_val).astype(np.int64), np.flatnonzero(is_val).astype(np.int64)


def collate_records(records: Sequence[ConformerRecord], dtype: Any = None) -> Any:
    """A :class:`~emgp_md.data.graph.GraphBatch` of records (a DataLoader ``collate_fn``).

    ``dtype`` is the torch dtype of the positions (default ``torch.float32``).
    """
    import torch

    from emgp_md.data.graph import collate

    return collate([r.topology for r in records], [r.pos for r in records], dtype or torch.float32)
