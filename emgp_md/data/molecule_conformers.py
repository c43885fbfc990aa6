"""One molecule's conformers: RDKit ETKDG v3 embedding, MMFF94 optimisation, RMSD pruning.

:func:`generate_molecule` adds explicit hydrogens, embeds ``n_embed`` conformers with ETKDG v3
seeded from ``(seed, molecule index)``, optimises each with MMFF94, keeps one stereoisomer (perceived
from 3D: stereo given in the SMILES is enforced by ETKDG; unassigned centres take the most frequent
configuration and mirror-image conformers are reflected onto it, so that, like GEOM, all conformers
of a record share one stereoisomer), then keeps conformers in order of increasing MMFF energy while
their symmetry-aware heavy-atom RMSD to every kept one exceeds ``rmsd_threshold_A``, at most
``max_conformers``. The result depends only on the SMILES, the index, the seed and the settings.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from emgp_md.data.smiles import canonical_smiles

__all__ = ["FAILURE_REASONS", "ConformerSettings", "MoleculeConformers", "generate_molecule", "molecule_seed"]


#: Molecules that could not be generated (the source row is kept in ``rejected.csv``).
FAILURE_REASONS = ("parse", "embed", "mmff_setup", "error")


@dataclass(frozen=True)
class ConformerSettings:
    """Per-molecule generation settings.

    Attributes
    ----------
    max_conformers : int
        Conformers kept per molecule at most (GEOM pretraining keeps ≤ 10, docs/method.md §2.1).
    n_embed : int
        ETKDG v3 embeddings tried per molecule, each MMFF-optimised before pruning.
    rmsd_threshold_A : float, Å
        A conformer is kept only if its heavy-atom RMSD to every kept one exceeds this.
    mmff_variant : str
        ``"MMFF94"`` or ``"MMFF94s"``.
    mmff_max_iters : int
        MMFF optimisation steps per conformer; unconverged conformers are kept and counted.
    max_symmetry_matches : int
        Cap on the symmetry-equivalent atom maps tried per RMSD.
    embed_timeout_s : float, s
        Time budget of each ETKDG call (RDKit ``timeout``). Strained cages that ETKDG cannot embed
        otherwise take 10–20 s each; with the budget they fail fast or keep what was found.
    """

    max_conformers: int = 10
    n_embed: int = 30
    rmsd_threshold_A: float = 0.5
    mmff_variant: str = "MMFF94"
    mmff_max_iters: int = 500
    max_symmetry_matches: int = 1000
    embed_timeout_s: float = 1.0

    def __post_init__(self) -> None:
        if self.max_conformers < 1 or self.n_embed < self.max_conformers:
            raise ValueError(f"need 1 <= max_conformers <= n_embed, got {self.max_conformers} and {self.n_embed}")
        if self.rmsd_threshold_A < 0:
            raise ValueError(f"rmsd_threshold_A must be >= 0, got {self.rmsd_threshold_A}")


@dataclass
class MoleculeConformers:
    """Conformers of one molecule, or the reason there are none.

    Attributes
    ----------
    index : int
        Row of the molecule in its SMILES source (the molecule id).
    smiles : str
        Isomeric canonical SMILES of the embedded stereoisomer (the input SMILES on failure).
    failure : str or None
        One of :data:`FAILURE_REASONS`, ``None`` on success; ``detail`` says more.
    z : (n_atoms,) int64
        Atomic numbers, explicit hydrogens included.
    bonds : (n_bonds, 2) int64
        RDKit bonds ``i < j``.
    pos : (n_conformers, n_atoms, 3) float32, Å
        MMFF94-optimised conformers, lowest energy first.
    energy_eV : (n_conformers,) float64, eV
        MMFF94 energies (meaningful only relative to each other).
    converged : (n_conformers,) bool
        Whether MMFF converged within ``mmff_max_iters``.
    """

    index: int
    smiles: str
    failure: str | None = None
    detail: str = ""
    z: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    bonds: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.int64))
    pos: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 3), np.float32))
    energy_eV: np.ndarray = field(default_factory=lambda: np.zeros(0))
    converged: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))


def molecule_seed(seed: int, index: int) -> int:
    """Deterministic ETKDG seed in ``[0, 2**31 - 1)`` from the global seed and the molecule index."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0] % (2**31 - 1))


def _embed(mol_h: Any, n_embed: int, seed: int, timeout_s: float = 1.0) -> list[int]:
    from rdkit.Chem import rdDistGeom

    params = rdDistGeom.ETKDGv3()
    params.randomSeed = seed
    params.numThreads = 1
    params.timeout = max(1, round(timeout_s))  # RDKit takes whole seconds
    cids = list(rdDistGeom.EmbedMultipleConfs(mol_h, n_embed, params))
    if not cids:  # the standard fallback for hard cases: start from random coordinates
        params.useRandomCoords = True
        cids = list(rdDistGeom.EmbedMultipleConfs(mol_h, n_embed, params))
    present = {conf.GetId() for conf in mol_h.GetConformers()}
    return [c for c in cids if c in present]  # a timed-out call can report ids it did not keep


def _stereo_label(mol_h: Any, conf_id: int) -> str:
    """Isomeric canonical SMILES with stereo perceived from conformer ``conf_id``."""
    from rdkit import Chem

    mol = Chem.Mol(mol_h, confId=conf_id)
    Chem.AssignStereochemistryFrom3D(mol)
    return Chem.MolToSmiles(Chem.RemoveHs(mol))


def _mirror(smiles: str) -> str:
    """Canonical SMILES of the mirror image (every tetrahedral centre inverted; E/Z unchanged)."""
    from rdkit import Chem

    mol = Chem.MolFromSmiles(smiles)
    for atom in mol.GetAtoms():
        atom.InvertChirality()
    return Chem.MolToSmiles(mol)


def _one_stereoisomer(mol_h: Any, energies: np.ndarray) -> tuple[str, list[int]]:
    """Pick one stereoisomer; reflect its mirror-image conformers onto it.

    Conformers are grouped by their 3D stereo up to reflection. The group with the most conformers
    wins (ties: lowest energy), so a stereo given in the SMILES, which ETKDG enforces, is kept.
    Returns the chosen SMILES and the conformer positions that have it, lowest energy first.
    """
    confs = list(mol_h.GetConformers())
    labels = [_stereo_label(mol_h, c.GetId()) for c in confs]
    mirrors = {label: _mirror(label) for label in set(labels)}
    group = [min(label, mirrors[label]) for label in labels]
    order = np.argsort(energies, kind="stable")
    counts = Counter(group)
    rank: dict[str, int] = {}  # group -> energy rank of its lowest conformer
    for r, k in enumerate(order):
        rank.setdefault(group[k], r)
    best = max(counts, key=lambda g: (counts[g], -rank[g]))
    chosen = labels[next(k for k in order if group[k] == best)]
    for k, conf in enumerate(confs):
        if group[k] == best and labels[k] != chosen:
            conf.SetPositions(conf.GetPositions() * np.array([-1.0, 1.0, 1.0]))
    return chosen, [int(k) for k in order if group[k] == best]


def _prune(mol_h: Any, candidates: list[int], settings: ConformerSettings) -> list[int]:
    """Greedy RMSD pruning of ``candidates`` (positions into ``mol_h.GetConformers()``, lowest energy first)."""
    from rdkit import Chem
    from rdkit.Chem import rdMolAlign

    ref = Chem.RemoveHs(mol_h)
    probe = Chem.Mol(ref)  # GetBestRMS moves the probe; RMSD is unaffected
    ids = [c.GetId() for c in mol_h.GetConformers()]
    kept: list[int] = []
    for k in candidates:
        if all(
            rdMolAlign.GetBestRMS(probe, ref, ids[k], ids[j], maxMatches=settings.max_symmetry_matches)
            > settings.rmsd_threshold_A
            for j in kept
        ):
            kept.append(k)
            if len(kept) == settings.max_conformers:
                break
    return kept


def _conformers_of(index: int, mol: Any, settings: ConformerSettings, seed: int) -> MoleculeConformers:
    from ase import units
    from rdkit import Chem
    from rdkit.Chem import rdForceFieldHelpers

    mol_h = Chem.AddHs(mol)
    if not rdForceFieldHelpers.MMFFHasAllMoleculeParams(mol_h):
        return MoleculeConformers(index, canonical_smiles(mol), "mmff_setup", "no MMFF94 parameters")
    if not _embed(mol_h, settings.n_embed, seed, settings.embed_timeout_s):
        return MoleculeConformers(index, canonical_smiles(mol), "embed", "ETKDG v3 found no conformer")
    out = rdForceFieldHelpers.MMFFOptimizeMoleculeConfs(
        mol_h, numThreads=1, maxIters=settings.mmff_max_iters, mmffVariant=settings.mmff_variant
    )
    energies = np.asarray([e for _, e in out], dtype=np.float64)
    smiles, candidates = _one_stereoisomer(mol_h, energies)
    kept = _prune(mol_h, candidates, settings)
    confs = list(mol_h.GetConformers())
    return MoleculeConformers(
        index=index,
        smiles=smiles,
        z=np.asarray([a.GetAtomicNum() for a in mol_h.GetAtoms()], dtype=np.int64),
        bonds=_bonds(mol_h),
        pos=np.stack([confs[k].GetPositions() for k in kept]).astype(np.float32),
        energy_eV=energies[kept] * (units.kcal / units.mol),
        converged=np.asarray([out[k][0] == 0 for k in kept], dtype=bool),
    )


def _bonds(mol_h: Any) -> np.ndarray:
    from emgp_md.data.topology import bonds_from_rdkit

    return bonds_from_rdkit(mol_h)


def generate_molecule(
    index: int, smiles: str, settings: ConformerSettings = ConformerSettings(), seed: int = 2021
) -> MoleculeConformers:
    """Conformers of one molecule (step 2 of the module docstring).

    Parameters
    ----------
    index : int
        Molecule id; with ``seed`` it fixes the ETKDG random seed (:func:`molecule_seed`).
    smiles : str
    settings : ConformerSettings
    seed : int
        Global seed of the set.

    Returns
    -------
    MoleculeConformers
        ``failure`` is set instead of raising, so that one molecule cannot end a long run.
    """
    from rdkit import Chem, rdBase

    with rdBase.BlockLogs():
        mol = Chem.MolFromSmiles(smiles)
        if mol is None:
            return MoleculeConformers(index, smiles, "parse", "RDKit cannot parse the SMILES")
        try:
            return _conformers_of(index, mol, settings, molecule_seed(seed, index))
        except Exception as exc:  # noqa: BLE001 - recorded as a failure, with its message
            return MoleculeConformers(index, smiles, "error", f"{type(exc).__name__}: {exc}")
