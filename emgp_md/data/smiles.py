"""SMILES sources, canonicalisation and the downstream-exclusion set for pretraining conformers.

Two canonical forms are used (RDKit canonical SMILES, hydrogens implicit):

* the **record key** ``canonical_smiles(s)``: isomeric (stereo and isotopes kept). It names the
  molecules written to a conformer set and removes duplicates from a source;
* the **exclusion key** ``exclusion_key(s)``: the canonical SMILES of the molecule with all
  stereochemistry and isotope labels removed (``isomericSmiles=False``). Exclusion compares these
  keys, so a molecule is removed when *any* stereoisomer of it is listed. This is deliberately
  stricter than the authors' exact string match (docs/method.md §2.1 and §7.5): their
  ``filter_smiles.txt`` carries stereo (``[C@H]``), while the QM9 SMILES of ``lapool_qm9_smiles.csv``
  carry almost none, and benzene, toluene, malonaldehyde and uracil were let through.

The rMD17 molecules are excluded together with all their tautomers (RDKit ``TautomerEnumerator``;
malonaldehyde's enol form ``O=CC=CO`` is a separate QM9 molecule from ``O=CCC=O``). Charges and
protonation states are not normalised.
"""

from __future__ import annotations

import csv
import logging
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from emgp_md.data.rmd17 import MOLECULES, default_data_dir, split_path

logger = logging.getLogger(__name__)

__all__ = [
    "RMD17_SMILES",
    "SMILES_COLUMNS",
    "SOURCES",
    "canonical_smiles",
    "check_rmd17_formulas",
    "default_exclusion",
    "exclusion_key",
    "formula_from_smiles",
    "formula_from_z",
    "read_exclusion_file",
    "read_smiles",
    "resolve_source",
    "rmd17_exclusion_keys",
]

#: Named sources, relative to :func:`emgp_md.data.rmd17.default_data_dir`.
SOURCES = {
    "qm9": "qm9/lapool_qm9_smiles.csv",
    "drugs": "geom_like/geomol_drugs_test_smiles_corrected.csv",
    "geom-qm9": "geom_like/geomol_qm9_test_smiles_corrected.csv",
}
#: Columns tried in order; GeoMol's ``corrected_smiles`` (stereo from the GEOM geometry, radicals
#: fixed) wins over the raw GEOM key ``smiles``.
SMILES_COLUMNS = ("corrected_smiles", "smiles", "SMILES")
FILTER_FILE = "emgp_official/filter_smiles.txt"

#: The eight rMD17 molecules, keyed by their rMD17 file names (``emgp_md.data.rmd17.MOLECULES``).
#: Each matches the formula of the file's ``nuclear_charges`` and the bond graph RDKit perceives in
#: its first frame (``rdDetermineBonds``).
RMD17_SMILES = {
    "aspirin": "CC(=O)Oc1ccccc1C(=O)O",
    "benzene": "c1ccccc1",
    "ethanol": "CCO",
    "malonaldehyde": "O=CCC=O",
    "naphthalene": "c1ccc2ccccc2c1",
    "salicylic": "O=C(O)c1ccccc1O",
    "toluene": "Cc1ccccc1",
    "uracil": "O=c1cc[nH]c(=O)[nH]1",
}


def resolve_source(source: str | Path, data_dir: str | Path | None = None) -> Path:
    """Path of a SMILES source: a file path, or one of the names in :data:`SOURCES`.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    """
    name = str(source)
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    path = root / SOURCES[name] if name in SOURCES else Path(name)
    if not path.is_file():
        raise FileNotFoundError(
            f"SMILES source {name!r} -> {str(path)!r} does not exist (named sources: {sorted(SOURCES)})"
        )
    return path


def read_smiles(path: str | Path) -> list[str]:
    """SMILES of a CSV with a header, or of a plain file with one SMILES per line.

    The column is the first of :data:`SMILES_COLUMNS` present in the header. A file whose first line
    names none of them is read as one SMILES per line (first whitespace-separated token). Row ``k``
    of the returned list is molecule index ``k`` of that source.

    Raises
    ------
    ValueError
        If a CSV header has commas but no known SMILES column.
    """
    path = Path(path)
    with path.open(newline="") as handle:
        header = handle.readline().strip().split(",")
        column = next((c for c in SMILES_COLUMNS if c in header), None)
        if column is None:
            if len(header) > 1:
                raise ValueError(f"{str(path)!r}: header {header} has none of the SMILES columns {SMILES_COLUMNS}")
            handle.seek(0)
            return [line.split()[0] for line in handle if line.strip()]
        col = header.index(column)
        return [row[col].strip() for row in csv.reader(handle) if row]


def _mol(smiles_or_mol: Any) -> Any:
    from rdkit import Chem, rdBase

    if not isinstance(smiles_or_mol, str):
        return smiles_or_mol
    with rdBase.BlockLogs():
        return Chem.MolFromSmiles(smiles_or_mol)


def canonical_smiles(smiles_or_mol: Any) -> str | None:
    """Isomeric RDKit canonical SMILES (the record key); ``None`` if RDKit cannot parse it."""
    from rdkit import Chem

    mol = _mol(smiles_or_mol)
    return None if mol is None else Chem.MolToSmiles(Chem.RemoveHs(mol))


def exclusion_key(smiles_or_mol: Any) -> str | None:
    """Canonical SMILES without stereo or isotopes (the exclusion key); ``None`` if unparsable."""
    from rdkit import Chem

    mol = _mol(smiles_or_mol)
    return None if mol is None else Chem.MolToSmiles(Chem.RemoveHs(mol), isomericSmiles=False)


def _keys(smiles: Iterable[str]) -> tuple[set[str], int]:
    keys, n_bad = set(), 0
    for s in smiles:
        key = exclusion_key(s)
        if key is None:
            n_bad += 1
        else:
            keys.add(key)
    return keys, n_bad


def read_exclusion_file(path: str | Path) -> set[str]:
    """Exclusion keys of a SMILES list (e.g. the authors' ``filter_smiles.txt``).

    Entries RDKit cannot sanitise (59 radical or hypervalent-N GEOM keys in ``filter_smiles.txt``)
    are logged and skipped: they cannot match any molecule that parses, and a source molecule that
    does not parse is rejected anyway.
    """
    keys, n_bad = _keys(read_smiles(path))
    if n_bad:
        logger.info("%s: %d SMILES could not be parsed by RDKit and cannot match any molecule", path, n_bad)
    return keys


def rmd17_exclusion_keys(tautomers: bool = True) -> set[str]:
    """Exclusion keys of the eight rMD17 molecules, with all their tautomers by default."""
    from rdkit import Chem
    from rdkit.Chem.MolStandardize import rdMolStandardize

    enumerator = rdMolStandardize.TautomerEnumerator()
    keys = set()
    for smiles in RMD17_SMILES.values():
        mol = Chem.MolFromSmiles(smiles)
        forms = list(enumerator.Enumerate(mol)) if tautomers else [mol]
        keys.update(exclusion_key(m) for m in forms)
    return keys


def default_exclusion(filter_file: str | Path | None = None, data_dir: str | Path | None = None) -> set[str]:
    """``filter_smiles.txt`` ∪ rMD17 (with tautomers), as exclusion keys.

    Parameters
    ----------
    filter_file : path, optional
        Defaults to ``<data_dir>/emgp_official/filter_smiles.txt``.
    data_dir : path, optional
        Defaults to :func:`emgp_md.data.rmd17.default_data_dir`.

    Raises
    ------
    FileNotFoundError
        If the filter file is absent: the exclusion is never skipped silently.
    """
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    path = Path(filter_file) if filter_file is not None else root / FILTER_FILE
    if not path.is_file():
        raise FileNotFoundError(f"exclusion list {str(path)!r} does not exist")
    return read_exclusion_file(path) | rmd17_exclusion_keys()


def _hill(counts: Counter) -> str:
    order = ["C", "H"] if "C" in counts else []
    order += sorted(e for e in counts if e not in order)
    return "".join(f"{e}{counts[e] if counts[e] > 1 else ''}" for e in order if counts[e])


def formula_from_z(z: np.ndarray) -> str:
    """Hill formula of atomic numbers ``z: (n_atoms,) int``."""
    from ase.data import chemical_symbols

    return _hill(Counter(chemical_symbols[int(a)] for a in np.asarray(z).reshape(-1)))


def formula_from_smiles(smiles: str) -> str:
    """Hill formula of a SMILES with its implicit hydrogens made explicit."""
    from rdkit import Chem

    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    return _hill(Counter(a.GetSymbol() for a in mol.GetAtoms()))


def check_rmd17_formulas(rmd17_dir: str | Path | None = None) -> dict[str, str]:
    """Check :data:`RMD17_SMILES` against ``rmd17_<mol>_train_01.npz`` ``nuclear_charges``.

    Returns
    -------
    dict
        Molecule name -> Hill formula.

    Raises
    ------
    ValueError
        On the first formula mismatch, naming the molecule and both formulas.
    """
    formulas = {}
    for name in MOLECULES:
        with np.load(split_path(name, "train", 1, rmd17_dir)) as data:
            from_file = formula_from_z(data["nuclear_charges"])
        from_smiles = formula_from_smiles(RMD17_SMILES[name])
        if from_file != from_smiles:
            raise ValueError(f"rMD17 {name}: SMILES {RMD17_SMILES[name]!r} is {from_smiles}, the file has {from_file}")
        formulas[name] = from_file
    return formulas
