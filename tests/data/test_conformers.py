"""Offline conformer sets: exclusion by canonical SMILES, RDKit generation, shards, split by molecule."""

from __future__ import annotations

import csv
import itertools
from pathlib import Path

import numpy as np
import pytest
from rdkit import Chem
from rdkit.Chem import rdDetermineBonds, rdMolAlign

from emgp_md.cli import build_parser
from emgp_md.data.conformer_store import (
    ConformerDataset,
    ShardWriter,
    collate_records,
    split_by_molecule,
    write_manifest,
)
from emgp_md.data.conformers import generate_conformer_set, select_molecules
from emgp_md.data.molecule_conformers import (
    ConformerSettings,
    MoleculeConformers,
    generate_molecule,
    molecule_seed,
)
from emgp_md.data.rmd17 import MOLECULES, split_path
from emgp_md.data.smiles import (
    RMD17_SMILES,
    check_rmd17_formulas,
    default_exclusion,
    exclusion_key,
    read_smiles,
    resolve_source,
    rmd17_exclusion_keys,
)
from emgp_md.data.topology import bonds_from_rdkit, topology_from_rdkit

# Row 1 benzene and row 8 toluene are written non-canonically; row 7 repeats row 0; row 5 cannot embed
# (a bicyclobutane-like cage with impossible stereo); row 6 has no MMFF94 parameters (boron).
SOURCE = [
    "CCO",
    "C1=CC=CC=C1",
    "CC(O)C(N)C=O",
    "CCCCO",
    "not_a_smiles",
    "[C@H]12C[C@@H]1C2",
    "B(C)(C)C",
    "OCC",
    "c1ccccc1C",
    "OCCN",
]
EXCLUDE = list(RMD17_SMILES.values())[1:2] + ["Cc1ccccc1"]  # benzene, toluene: canonical spellings
GENERATED = {0: "CCO", 2: "CC(O)C(N)C=O", 3: "CCCCO", 9: "NCCO"}
KW = {"max_conformers": 3, "n_embed": 6, "shard_size": 2, "exclude": EXCLUDE, "progress": False}


@pytest.fixture(scope="module")
def source_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("src") / "mols.csv"
    path.write_text("smiles,n_conformers\n" + "".join(f"{s},1\n" for s in SOURCE))
    return path


@pytest.fixture(scope="module")
def conformer_set(source_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("set") / "one_worker"
    return out, generate_conformer_set(source_csv, out, n_workers=1, **KW)


# ------------------------------------------------------------------------------------------- exclusion
@pytest.mark.parametrize("spelling", ["C1=CC=CC=C1", "c1ccccc1", "[cH]1[cH][cH][cH][cH][cH]1", "C1C=CC=CC=1"])
def test_benzene_excluded_in_any_spelling(spelling):
    assert exclusion_key(spelling) in rmd17_exclusion_keys()


@pytest.mark.parametrize("spelling", ["c1ccccc1C", "CC1=CC=CC=C1", "C(c1ccccc1)([H])([H])[H]"])
def test_toluene_excluded_in_any_spelling(spelling):
    assert exclusion_key(spelling) in rmd17_exclusion_keys()


def test_other_rmd17_molecules_and_tautomers_excluded():
    keys = rmd17_exclusion_keys()
    for spelling in [
        "OCC",
        "C(=O)CC=O",
        "OC=CC=O",
        "O=C1NC(=O)C=CN1",
        "Oc1ccnc(O)n1",
        "OC(=O)c1ccccc1O",
        "C1=CC=C2C=CC=CC2=C1",
        "O=C(C)Oc1ccccc1C(O)=O",
    ]:
        assert exclusion_key(spelling) in keys, spelling
    for other in ["Cc1ccccc1C", "CCCO", "c1ccncc1"]:
        assert exclusion_key(other) not in keys, other


def test_exclusion_key_strips_stereo_but_record_key_keeps_it():
    assert exclusion_key("C[C@H](O)CC") == exclusion_key("C[C@@H](O)CC") == exclusion_key("CCC(C)O")
    assert exclusion_key("C/C=C/C") == exclusion_key("CC=CC")
    assert exclusion_key("not_a_smiles") is None


def test_select_molecules_reasons():
    keys = {exclusion_key(s) for s in EXCLUDE}
    work, rejected = select_molecules(SOURCE, keys)
    reasons = {i: reason for i, _, reason, _ in rejected}
    assert reasons == {1: "excluded", 4: "parse", 7: "duplicate", 8: "excluded"}
    assert [i for i, _ in work] == [0, 2, 3, 5, 6, 9]
    sub, _ = select_molecules(SOURCE, keys, n_molecules=5, seed=3)
    again, _ = select_molecules(SOURCE, keys, n_molecules=5, seed=3)
    assert sub == again


def test_default_exclusion_catches_stereo_listed_filter_entries(shared_data):
    keys = default_exclusion(data_dir=shared_data)
    listed = read_smiles(shared_data / "emgp_official" / "filter_smiles.txt")
    with_stereo = next(s for s in listed if "@" in s and Chem.MolFromSmiles(s) is not None)
    flat = Chem.MolToSmiles(Chem.MolFromSmiles(with_stereo), isomericSmiles=False)
    assert flat != with_stereo and exclusion_key(flat) in keys  # the authors' string match misses this
    for name in ("benzene", "toluene", "malonaldehyde", "uracil"):  # absent from filter_smiles.txt
        assert exclusion_key(RMD17_SMILES[name]) in keys


# ------------------------------------------------------------------------------------------- rMD17
def test_rmd17_smiles_match_nuclear_charges(shared_data):
    formulas = check_rmd17_formulas(shared_data / "rmd17")
    assert set(formulas) == set(MOLECULES)
    assert formulas["aspirin"] == "C9H8O4" and formulas["uracil"] == "C4H4N2O2"


def test_rmd17_smiles_match_first_frame_bond_graph(shared_data):
    from ase.data import chemical_symbols

    for name in MOLECULES:
        with np.load(split_path(name, "train", 1, shared_data / "rmd17")) as data:
            z, xyz = data["nuclear_charges"], data["coords"][0]
        block = f"{len(z)}\n\n" + "\n".join(f"{chemical_symbols[a]} {x} {y} {w}" for a, (x, y, w) in zip(z, xyz))
        mol = Chem.MolFromXYZBlock(block)
        rdDetermineBonds.DetermineBonds(mol, charge=0)
        assert exclusion_key(mol) == exclusion_key(RMD17_SMILES[name]), name


# ------------------------------------------------------------------------------------------- generation
def test_molecule_seed_is_deterministic_and_in_range():
    seeds = [molecule_seed(2021, i) for i in range(100)]
    assert seeds == [molecule_seed(2021, i) for i in range(100)]
    assert len(set(seeds)) == 100 and all(0 <= s < 2**31 - 1 for s in seeds)
    assert molecule_seed(2022, 0) != seeds[0]


def test_manifest_counts_failures_and_skips(conformer_set):
    out, manifest = conformer_set
    assert manifest["failures"] == {"parse": 1, "embed": 1, "mmff_setup": 1, "error": 0}
    assert manifest["skipped"] == {"excluded": 2, "duplicate": 1}
    assert manifest["n_molecules"] == len(GENERATED) and manifest["n_attempted"] == 6
    assert manifest["n_conformers"] == sum(s["n_conformers"] for s in manifest["shards"])
    assert len(manifest["shards"]) == 2 and manifest["timing"]["molecules_per_s"] > 0
    with (out / "rejected.csv").open() as handle:
        rows = {int(r["index"]): r["reason"] for r in csv.DictReader(handle)}
    assert rows == {1: "excluded", 4: "parse", 5: "embed", 6: "mmff_setup", 7: "duplicate", 8: "excluded"}


def test_conformers_have_explicit_hydrogens_and_rdkit_bonds(conformer_set):
    out, _ = conformer_set
    ds = ConformerDataset(out)
    seen = set()
    for rec in (ds[i] for i in range(len(ds))):
        mol_h = Chem.AddHs(Chem.MolFromSmiles(Chem.CanonSmiles(GENERATED[rec.mol_index])))
        assert rec.topology.n_atoms == mol_h.GetNumAtoms() and (rec.topology.z == 1).sum() > 0
        np.testing.assert_array_equal(rec.topology.bonds, bonds_from_rdkit(mol_h))
        np.testing.assert_array_equal(rec.topology.edge_type, topology_from_rdkit(mol_h).edge_type)
        lengths = np.linalg.norm(rec.pos[rec.topology.bonds[:, 0]] - rec.pos[rec.topology.bonds[:, 1]], axis=1)
        assert lengths.min() > 0.9 and lengths.max() < 1.7
        assert exclusion_key(rec.smiles) == exclusion_key(GENERATED[rec.mol_index])
        seen.add(rec.mol_index)
    assert seen == set(GENERATED)


def _as_rdkit(rec) -> Chem.Mol:
    mol = Chem.AddHs(Chem.MolFromSmiles(Chem.CanonSmiles(GENERATED[rec.mol_index])))
    conf = Chem.Conformer(mol.GetNumAtoms())
    conf.SetPositions(rec.pos)
    mol.AddConformer(conf)
    return mol


def test_conformers_share_one_stereoisomer_and_are_pruned(conformer_set):
    out, _ = conformer_set
    ds = ConformerDataset(out)
    by_mol: dict[int, list] = {}
    for i in range(len(ds)):
        by_mol.setdefault(ds[i].mol_index, []).append(ds[i])
    assert len(by_mol[2]) > 1  # CC(O)C(N)C=O is flexible
    for recs in by_mol.values():
        energies = [r.energy_eV for r in recs]
        assert energies == sorted(energies) and [r.conformer for r in recs] == list(range(len(recs)))
        mols = [_as_rdkit(r) for r in recs]
        for mol, rec in zip(mols, recs):
            Chem.AssignStereochemistryFrom3D(mol)
            assert Chem.MolToSmiles(Chem.RemoveHs(mol)) == rec.smiles
        for a, b in itertools.combinations([Chem.RemoveHs(m) for m in mols], 2):
            assert rdMolAlign.GetBestRMS(a, b) > 0.5


def test_generation_is_deterministic_and_independent_of_workers(conformer_set, source_csv, tmp_path):
    out, manifest = conformer_set
    two = generate_conformer_set(source_csv, tmp_path / "two", n_workers=2, **KW)
    assert two["failures"] == manifest["failures"] and two["shards"] == manifest["shards"]
    for shard in manifest["shards"]:
        with np.load(out / shard["file"]) as a, np.load(tmp_path / "two" / shard["file"]) as b:
            assert a.files == b.files
            for key in a.files:
                np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    other = generate_molecule(2, "CC(O)C(N)C=O", ConformerSettings(max_conformers=3, n_embed=6), seed=7)
    same = ConformerDataset(out)[int(np.flatnonzero(ConformerDataset(out).molecule_ids() == 2)[0])]
    assert not np.allclose(other.pos[0], same.pos, atol=1e-3)  # a different seed gives other conformers


def test_refuses_to_overwrite(conformer_set, source_csv):
    out, _ = conformer_set
    with pytest.raises(ValueError, match="already holds"):
        generate_conformer_set(source_csv, out, **KW)


# ------------------------------------------------------------------------------------------- storage
def _fake(index: int, n_atoms: int, n_conf: int, rng: np.random.Generator) -> MoleculeConformers:
    return MoleculeConformers(
        index=index,
        smiles="C" * n_atoms,
        z=rng.integers(1, 10, n_atoms),
        bonds=np.stack([np.arange(n_atoms - 1), np.arange(1, n_atoms)], axis=1),
        pos=rng.normal(size=(n_conf, n_atoms, 3)).astype(np.float32),
        energy_eV=np.sort(rng.normal(size=n_conf)),
        converged=np.ones(n_conf, bool),
    )


def test_shards_read_back_lazily_equal_what_was_written(tmp_path, rng):
    mols = [_fake(10 * k, int(rng.integers(2, 9)), int(rng.integers(1, 4)), rng) for k in range(7)]
    writer = ShardWriter(tmp_path, shard_size=3)
    for mol in mols:
        writer.add(mol)
    write_manifest(tmp_path, {"shards": writer.close()})
    ds = ConformerDataset(tmp_path, cache_shards=1)
    assert len(ds) == sum(len(m.pos) for m in mols) and len(ds.manifest["shards"]) == 3
    assert not ds._cache  # nothing read yet
    expected = [(m, c) for m in mols for c in range(len(m.pos))]
    for i in reversed(range(len(ds))):
        rec, (mol, c) = ds[i], expected[i]
        assert rec.mol_index == mol.index and rec.conformer == c and rec.smiles == mol.smiles
        np.testing.assert_array_equal(rec.pos, mol.pos[c].astype(np.float64))
        np.testing.assert_array_equal(rec.topology.z, mol.z)
        np.testing.assert_array_equal(rec.topology.bonds, mol.bonds)
        assert rec.energy_eV == mol.energy_eV[c] and len(ds._cache) == 1
    np.testing.assert_array_equal(ds.molecule_ids(), [m.index for m, _ in expected])
    np.testing.assert_array_equal(ds[-1].pos, ds[len(ds) - 1].pos)
    with pytest.raises(IndexError):
        ds[len(ds)]
    batch = collate_records([ds[0], ds[1]])
    assert batch.n_graphs == 2 and batch.pos.shape == (ds[0].topology.n_atoms + ds[1].topology.n_atoms, 3)


def test_split_by_molecule_is_disjoint_and_seeded(rng):
    mol_ids = np.repeat(np.arange(0, 200, 2), rng.integers(1, 6, 100))
    train, val = split_by_molecule(mol_ids, 20, seed=5)
    assert len(np.intersect1d(train, val)) == 0 and len(train) + len(val) == len(mol_ids)
    assert len(np.unique(mol_ids[val])) == 20
    assert not set(mol_ids[train]) & set(mol_ids[val])
    again = split_by_molecule(mol_ids, 20, seed=5)
    np.testing.assert_array_equal(val, again[1])
    assert not np.array_equal(val, split_by_molecule(mol_ids, 20, seed=6)[1])
    with pytest.raises(ValueError, match="n_val_molecules"):
        split_by_molecule(mol_ids, 101)


def test_dataset_split_keeps_molecules_whole(conformer_set):
    ds = ConformerDataset(conformer_set[0])
    train, val = ds.split(n_val_molecules=1, seed=0)
    ids = ds.molecule_ids()
    assert len(set(ids[val])) == 1 and not set(ids[train]) & set(ids[val])


# ------------------------------------------------------------------------------------------- CLI
def test_cli_conformers_named_source(shared_data, tmp_path, monkeypatch):
    monkeypatch.setenv("EMGP_MD_DATA", str(shared_data))
    assert resolve_source("qm9") == shared_data / "qm9" / "lapool_qm9_smiles.csv"
    args = build_parser().parse_args(
        [
            "conformers",
            "qm9",
            "--out",
            str(tmp_path / "q"),
            "--n-molecules",
            "3",
            "--max-conformers",
            "2",
            "--n-embed",
            "4",
            "--quiet",
        ]
    )
    assert args.func(args) == 0
    ds = ConformerDataset(tmp_path / "q")
    keys = default_exclusion(data_dir=shared_data)
    assert len(ds) > 0 and all(exclusion_key(ds[i].smiles) not in keys for i in range(len(ds)))
