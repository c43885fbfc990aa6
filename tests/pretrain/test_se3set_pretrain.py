"""SE3Set pretraining: hypergraphs per conformer molecule (SMILES bond orders, clean reference
conformer, cache, skipped molecules), the EFP + INP losses and the pretraining loop."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from ase.build import molecule
from helpers.ddp_pretrain import synthetic_conformers

from emgp_md.config import PretrainConfig
from emgp_md.data.convert import attach_hypergraph
from emgp_md.data.fragment import PRESETS as FRAGMENT_PRESETS
from emgp_md.data.graph import collate
from emgp_md.data.topology import topology_from_positions
from emgp_md.models import build_model, hypergraph_options
from emgp_md.models.checkpoint import load_checkpoint
from emgp_md.models.se3set.config import se3set_model_config
from emgp_md.pretrain import trainer
from emgp_md.pretrain.hypergraphs import (
    HypergraphCache,
    HypergraphSamples,
    build_pretrain_hypergraph,
    mol_from_smiles_and_bonds,
)
from emgp_md.pretrain.noise import noise_levels
from emgp_md.pretrain.objectives import draw_noise, pretrain_losses

# acetic acid, acetaldehyde, ethanolamine, phenol, alanine, a radical cation that cannot be fragmented
# (no bond orders map onto it, and none can be perceived at charge 0), butane
SOURCE = ["CC(=O)O", "CC=O", "OCCN", "c1ccccc1O", "CC(N)C(=O)O", "[CH]C#C[NH3+]", "CCCC"]
RADICAL = "[CH]C#C[NH3+]"


def _model_cfg(**kw):
    return se3set_model_config("tiny", head="pooled", noise_levels=50, **kw)


def _cfg(**kw) -> PretrainConfig:
    base = {"model": _model_cfg(), "epochs": 1, "batch_size": 4, "checkpoint_every_steps": 100, "threads": 1, "seed": 3}
    base.update(kw)
    return PretrainConfig(**base)


@pytest.fixture(scope="module")
def conformer_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from emgp_md.data.conformers import generate_conformer_set

    root = tmp_path_factory.mktemp("se3set_conformers")
    (root / "mols.csv").write_text("smiles\n" + "".join(f"{s}\n" for s in SOURCE))
    generate_conformer_set(
        root / "mols.csv", root / "set", max_conformers=3, n_embed=6, shard_size=3, exclude=(), progress=False, seed=5
    )
    return root / "set"


def _small_batch():
    topos, pos = [], []
    for name in ("CH3CH2OH", "CH3COOH"):
        atoms = molecule(name)
        topo = topology_from_positions(atoms.numbers, atoms.positions)
        topos.append(attach_hypergraph(topo, atoms.positions, FRAGMENT_PRESETS["md17"]))
        pos.append(atoms.positions)
    return collate(topos, pos, torch.float32)


@pytest.mark.parametrize("variant", ["riemann", "gaussian", "distance"])
def test_losses_finite_with_gradients(variant: str) -> None:
    torch.manual_seed(0)
    model = build_model(_model_cfg(distance_head=variant == "distance")).train()
    graph = _small_batch()
    assert graph.hypergraph is not None and graph.hypergraph.n_graphs == 2
    draw = draw_noise([0, 1], [9, 8], 50, 1, seed=1, epoch=0)
    sigmas = noise_levels(10.0, 0.01, 50).float()
    loss, stats = pretrain_losses(model, graph, draw, sigmas, variant, 1.0, 0.2, 2)
    assert torch.isfinite(loss) and stats["n"] == 2 and math.isfinite(stats["efp"]) and stats["inp"] > 0
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert all(torch.isfinite(g).all() for g in grads.values())
    for part in ("backbone.", "noise_head."):
        assert any(n.startswith(part) and g.abs().sum() > 0 for n, g in grads.items()), part


def test_bond_orders_from_stored_smiles_and_clean_reference(conformer_set: Path) -> None:
    from emgp_md.pretrain.data import load_split

    train, val = load_split(conformer_set, 2, seed=0)
    records = [data.record(i) for data in (train, val) for i in range(len(data))]
    acid = next(r for r in records if r.smiles == "CC(=O)O")
    mol = mol_from_smiles_and_bonds(acid.smiles, acid.topology.z, acid.topology.bonds)
    assert [a.GetAtomicNum() for a in mol.GetAtoms()] == acid.topology.z.tolist()
    assert max(b.GetBondTypeAsDouble() for b in mol.GetBonds()) == 2.0  # the C=O survives
    with pytest.raises(ValueError, match="do not map"):
        mol_from_smiles_and_bonds("CCO", acid.topology.z, acid.topology.bonds)
    for data in (train, val):  # the reference is the molecule's lowest-energy (rank 0) conformer
        for i in range(len(data)):
            rec = data.record(i)
            ref = data.dataset[int(data.indices[i]) - rec.conformer]
            assert ref.conformer == 0 and ref.mol_index == rec.mol_index
            np.testing.assert_array_equal(data.reference_positions(i), ref.pos)
    hg = build_pretrain_hypergraph(acid.topology, acid.pos, FRAGMENT_PRESETS["md17"], acid.smiles)
    assert hg.n_atoms == 8 and np.array_equal(hg.z, acid.topology.z)


def test_cache_builds_once_and_logs_each_failure_once(caplog) -> None:
    calls = []

    def builder(topology, pos, options, smiles):
        calls.append(topology.n_atoms)
        if topology.n_atoms == 4:  # NH3 "fails"
            raise ValueError("no groups")
        return build_pretrain_hypergraph(topology, pos, options, smiles)

    cache = HypergraphCache(FRAGMENT_PRESETS["md17"], max_molecules=2, builder=builder)
    data = HypergraphSamples(synthetic_conformers(10, seed=2), cache)  # 5 molecules, 2 conformers each
    with caplog.at_level(logging.WARNING, logger="emgp_md.pretrain.hypergraphs"):
        first = [data[i] for i in range(10)]
    assert [s is None for s in first] == [False, False, False, True, False] * 2
    assert sum("skipped" in r.message for r in caplog.records) == 1
    assert cache.failed and len(cache.failures) == 1 and cache.skipped_samples == 2
    assert len(cache) == 2  # least recently used molecules evicted
    for (topo, pos), s in zip(synthetic_conformers(10, seed=2), first):
        if s is not None:
            assert s[0].hypergraph is not None and s[0].hypergraph.n_atoms == topo.n_atoms
            np.testing.assert_array_equal(s[1], pos)  # positions are the sample's, not the reference's


def test_one_epoch_on_a_conformer_set_skips_what_cannot_be_fragmented(
    tmp_path: Path, conformer_set: Path, capsys
) -> None:
    from emgp_md.pretrain.data import load_split

    train, val = load_split(conformer_set, 2, seed=0)
    result = trainer.pretrain(_cfg(), train, val, tmp_path)
    for name in ("state.pt", "best.pt", "last.pt", "log.csv", "hypergraphs.json"):
        assert (tmp_path / name).exists(), name
    assert math.isfinite(result["best_val_loss"]) and result["skipped_steps"] == 0
    doc = json.loads((tmp_path / "hypergraphs.json").read_text())
    assert doc["epochs"][0]["failed_molecules"] == result["hypergraphs"]["failed_molecules"] == 1
    assert [RADICAL in f["molecule"] for f in doc["failed"]] == [True]
    assert doc["epochs"][0]["built"] == len(SOURCE) - 1
    model, meta = load_checkpoint(tmp_path / "best.pt")
    assert meta["model"]["backbone"] == "se3set" and meta["model"]["se3set_preset"] == "tiny"
    assert all(torch.isfinite(p).all() for p in model.parameters())
    from emgp_md.cli import main as cli_main

    capsys.readouterr()
    assert (
        cli_main(
            [
                "pretrain-report",
                str(tmp_path / "best.pt"),
                "--data",
                str(conformer_set),
                "--n-val-molecules",
                "2",
                "--seed",
                "0",
                "--json",
            ]
        )
        == 0
    )
    report = json.loads(capsys.readouterr().out)["best.pt"]
    assert report["n_conformers"] > 0 and all(math.isfinite(c) for c in report["cosine_riemann"])


def test_finetune_from_se3set_pretraining(tmp_path: Path, tiny_rmd17: Path) -> None:
    from emgp_md.config import FinetuneConfig
    from emgp_md.training.finetune import finetune
    from emgp_md.training.transfer import pretrained_backbone

    confs = synthetic_conformers(8, seed=6)
    trainer.pretrain(_cfg(), confs[:6], confs[6:], tmp_path / "pre")
    cfg = FinetuneConfig(
        data=str(tiny_rmd17),
        test_data=str(tiny_rmd17),
        n_train=16,
        n_val=4,
        epochs=1,
        batch_size=8,
        lr=1e-3,
        seed=7,
        pretrained=str(tmp_path / "pre" / "best.pt"),
        model=se3set_model_config("tiny"),
    )
    result = finetune(cfg, tmp_path / "ft")
    assert result["finished"] and math.isfinite(result["test"]["force_mae_kcal_mol_A"])
    pre, _ = pretrained_backbone(tmp_path / "pre" / "best.pt")
    ft, meta = load_checkpoint(tmp_path / "ft" / "model.pt")
    assert meta["model"]["backbone"] == "se3set" and set(pre) == {
        k[len("backbone.") :] for k in ft.state_dict() if k.startswith("backbone.")
    }


def test_second_epoch_builds_no_hypergraph(tmp_path: Path, monkeypatch) -> None:
    from emgp_md.pretrain import hypergraphs

    built = []
    original = hypergraphs.build_pretrain_hypergraph

    def counting(*args, **kwargs):
        built.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(hypergraphs, "build_pretrain_hypergraph", counting)
    original_batch = trainer.run_batch
    per_epoch: dict[int, int] = {}

    def run_batch(*args, **kwargs):
        out = original_batch(*args, **kwargs)
        per_epoch[args[5]] = len(built)  # hypergraphs built so far, by epoch
        return out

    monkeypatch.setattr(trainer, "run_batch", run_batch)
    confs = synthetic_conformers(14, seed=4)
    result = trainer.pretrain(_cfg(epochs=2), confs[:10], confs[10:], tmp_path)
    assert per_epoch[0] == 5 and per_epoch[1] == 5  # 5 molecules; epoch 1 reuses every one
    doc = json.loads((tmp_path / "hypergraphs.json").read_text())
    assert [e["built"] for e in doc["epochs"]] == [5, 5]
    assert doc["epochs"][1]["hits"] > doc["epochs"][0]["hits"] and result["hypergraphs"]["failed_molecules"] == 0


def test_direct_variant_needs_egnn(tmp_path: Path) -> None:
    with pytest.raises(NotImplementedError, match="coordinate"):
        trainer.pretrain(_cfg(variant="direct"), [], [], tmp_path)
    assert hypergraph_options(_model_cfg()).mode in ("explicit", "implicit")
