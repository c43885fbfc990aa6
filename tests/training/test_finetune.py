"""Tiny fine-tuning runs on the 24-frame ethanol fixture: outputs, resume, transfer, evaluation."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch
from conftest import make_small_model

from emgp_md.config import FinetuneConfig, ModelConfig
from emgp_md.data.rmd17 import load_frames
from emgp_md.data.topology import topology_from_positions
from emgp_md.models.checkpoint import load_checkpoint, make_metadata, save_checkpoint
from emgp_md.models.heads import AtomwiseEnergyHead
from emgp_md.training.evaluate import evaluate, mae_metrics
from emgp_md.training.finetune import LOG_FIELDS, build_finetune_model, finetune
from emgp_md.training.losses import energy_force_loss


def _cfg(data, **kw) -> FinetuneConfig:
    base = {
        "data": str(data),
        "test_data": str(data),
        "n_train": 16,
        "n_val": 4,
        "model": ModelConfig(hidden_nf=8, n_layers=1),
        "epochs": 2,
        "batch_size": 8,
        "lr": 1e-3,
        "seed": 7,
    }
    base.update(kw)
    return FinetuneConfig(**base)


def _log(path):
    with open(path) as fh:
        reader = csv.DictReader(fh)
        return reader.fieldnames, list(reader)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_rmd17):
    out = tmp_path_factory.mktemp("ft")
    result = finetune(_cfg(tiny_rmd17), out)
    return out, result


def test_outputs_written(finished_run):
    out, result = finished_run
    for name in ("log.csv", "best.pt", "model.pt", "metrics.json", "state.pt", "config.json"):
        assert (out / name).is_file(), name
    assert not (out / "learning_curve.png").exists()  # figures are drawn by the CLI, not the library
    fields, rows = _log(out / "log.csv")
    assert fields == LOG_FIELDS
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    for r in rows:
        for key in ("lr", "train_loss", "val_energy_mae", "val_force_mae", "val_loss", "wall_s"):
            assert math.isfinite(float(r[key])), key
    assert result["finished"] is True and result["epochs"] == 2
    assert result["best_epoch"] in (0, 1)
    assert json.loads((out / "metrics.json").read_text()) == json.loads(json.dumps(result))


def test_metrics_finite_and_consistent(finished_run, tiny_rmd17):
    out, result = finished_run
    for split in ("val", "test"):
        m = result[split]
        for key in ("energy_mae_kcal_mol", "force_mae_kcal_mol_A", "energy_mae_meV", "force_mae_meV_A"):
            assert math.isfinite(m[key]) and m[key] >= 0, (split, key)
        assert m["energy_mae_meV"] == pytest.approx(m["energy_mae_kcal_mol"] * 43.364, rel=1e-3)
    assert result["val"]["n_frames"] == 4 and result["test"]["n_frames"] == 24
    # the logged best validation row is the one stored in best.pt
    _, rows = _log(out / "log.csv")
    best = rows[result["best_epoch"]]
    assert float(best["val_force_mae"]) == pytest.approx(result["val"]["force_mae_kcal_mol_A"], rel=1e-6)
    assert min(float(r["val_loss"]) for r in rows) == pytest.approx(float(best["val_loss"]))


def test_model_checkpoint_metadata(finished_run, tiny_rmd17):
    out, result = finished_run
    model, meta = load_checkpoint(out / "model.pt")
    assert meta["units"]["energy"] == "kcal/mol"
    assert meta["species"] == [1, 6, 8]
    assert meta["kind"] == "finetuned"
    assert meta["model"]["hidden_nf"] == 8 and meta["model"]["n_layers"] == 1
    assert len(meta["topology"]["bonds"]) == 8
    assert meta["metrics"]["test"]["force_mae_kcal_mol_A"] == result["test"]["force_mae_kcal_mol_A"]
    # the energy shift is the training mean, so predictions are on the scale of the labels
    frames = load_frames(tiny_rmd17)
    assert abs(model.energy_shift - frames.energies.mean()) < 5 * frames.energies.std()
    assert model.energy_scale > 0


def test_resume_continues_and_matches_uninterrupted(tmp_path, tiny_rmd17, finished_run):
    out = tmp_path / "resumed"
    first = finetune(_cfg(tiny_rmd17, epochs=1), out)
    assert first["epochs"] == 1
    _, rows = _log(out / "log.csv")
    assert [int(r["epoch"]) for r in rows] == [0]
    second = finetune(_cfg(tiny_rmd17, epochs=2), out, resume=True)
    assert second["finished"] and second["epochs"] == 2
    _, rows = _log(out / "log.csv")
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    # same seeded run as two epochs in one go
    _, straight = _log(finished_run[0] / "log.csv")
    for a, b in zip(rows, straight):
        for key in ("train_loss", "val_loss", "val_force_mae"):
            assert float(a[key]) == pytest.approx(float(b[key]), rel=1e-5), key


def test_wall_time_budget_stops_and_resume_finishes(tmp_path, tiny_rmd17):
    out = tmp_path / "budget"
    partial = finetune(_cfg(tiny_rmd17, max_wall_time_s=0.0, test_data=None), out)
    assert partial == {"finished": False, "epoch": 0, "wall_s": partial["wall_s"]}
    assert (out / "state.pt").is_file() and (out / "best.pt").is_file() and not (out / "model.pt").exists()
    done = finetune(_cfg(tiny_rmd17, test_data=None), out, resume=True)
    assert done["finished"] and (out / "model.pt").is_file()
    _, rows = _log(out / "log.csv")
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    assert float(rows[1]["wall_s"]) >= float(rows[0]["wall_s"])  # wall time accumulates across the restart


def test_cpu_budget_finishes_run_early(tmp_path, tiny_rmd17):
    out = tmp_path / "cpu_budget"
    result = finetune(_cfg(tiny_rmd17, epochs=5, cpu_budget_s=1e-9), out)
    # one batch of one epoch, then the budget is spent: validation, test, model.pt, finished
    assert result["finished"] and result["epochs"] == 1 and result["cpu_budget_s"] == 1e-9
    assert result["cpu_s"] > 0 and "test" in result and (out / "model.pt").is_file()
    _, rows = _log(out / "log.csv")
    assert [int(r["epoch"]) for r in rows] == [0]
    assert json.loads((out / "metrics.json").read_text())["epochs"] == 1


def test_fresh_start_replaces_log(tmp_path, tiny_rmd17):
    out = tmp_path / "fresh"
    finetune(_cfg(tiny_rmd17, epochs=1), out)
    finetune(_cfg(tiny_rmd17, epochs=1), out)  # no resume: starts over
    _, rows = _log(out / "log.csv")
    assert [int(r["epoch"]) for r in rows] == [0]


def _save_pretrained(path, head: str, seed: int):
    cfg = ModelConfig(hidden_nf=8, n_layers=1, head=head, noise_levels=5 if head == "pooled" else 0)
    model = make_small_model(seed=seed, hidden_nf=8, n_layers=1, head=head, noise_levels=cfg.noise_levels)
    save_checkpoint(path, model, make_metadata(cfg, list(range(1, 100)), "arbitrary"))
    return model


def test_transfer_copies_backbone_and_leaves_head_fresh(tmp_path, tiny_rmd17):
    # a pretrained model with the same (atomwise) head type, so "fresh" is checkable weight by weight
    pre = _save_pretrained(tmp_path / "pre.pt", "atomwise", seed=99)
    # the target asks for another width: the pretrained architecture wins
    cfg = _cfg(tiny_rmd17, pretrained=str(tmp_path / "pre.pt"), model=ModelConfig(hidden_nf=32, n_layers=3))
    model, eff = build_finetune_model(cfg, scale=2.0, shift=-10.0)
    assert (eff.model.hidden_nf, eff.model.n_layers, eff.model.head) == (8, 1, "atomwise")
    for key, value in pre.backbone.state_dict().items():
        assert torch.equal(model.backbone.state_dict()[key], value), key
    for key, value in pre.head.state_dict().items():
        assert not torch.equal(model.head.state_dict()[key], value), f"head weight {key} was copied"
    assert (model.energy_scale, model.energy_shift) == (2.0, -10.0)
    # the fresh head is seeded: the same config gives the same model
    again, _ = build_finetune_model(_cfg(tiny_rmd17, pretrained=str(tmp_path / "pre.pt")), 2.0, -10.0)
    for key, value in model.state_dict().items():
        assert torch.equal(again.state_dict()[key], value), key


def test_transfer_from_pretraining_model_drops_its_heads(tmp_path, tiny_rmd17):
    pre = _save_pretrained(tmp_path / "pre.pt", "pooled", seed=98)
    model, eff = build_finetune_model(_cfg(tiny_rmd17, pretrained=str(tmp_path / "pre.pt")), 1.0, 0.0)
    assert eff.model.head == "atomwise" and eff.model.noise_levels == 0
    assert isinstance(model.head, AtomwiseEnergyHead) and model.noise_head is None
    for key, value in pre.backbone.state_dict().items():
        assert torch.equal(model.backbone.state_dict()[key], value), key


def test_finetune_from_pretrained_runs(tmp_path, tiny_rmd17):
    pre = make_small_model(seed=5, hidden_nf=8, n_layers=1, head="pooled")
    ckpt = tmp_path / "pre.pt"
    save_checkpoint(
        ckpt, pre, make_metadata(ModelConfig(hidden_nf=8, n_layers=1, head="pooled"), [1, 6, 8], "arbitrary")
    )
    result = finetune(_cfg(tiny_rmd17, pretrained=str(ckpt), epochs=1, test_data=None), tmp_path / "run")
    assert result["finished"] and "test" not in result
    _, meta = load_checkpoint(tmp_path / "run" / "model.pt")
    assert meta["provenance"]["pretrained"] == str(ckpt)


def test_paper_init_and_bad_options(tiny_rmd17):
    model, _ = build_finetune_model(_cfg(tiny_rmd17, init="paper"), 1.0, 0.0)
    bound = math.sqrt(6.0 / 8)  # Kaiming-uniform, a=0, fan_in 8
    w = model.backbone.gcl_0.node_mlp[2].weight
    assert w.abs().max() <= bound and w.abs().max() > 0.5 * bound
    with pytest.raises(ValueError, match="init"):
        build_finetune_model(_cfg(tiny_rmd17, init="xavier"), 1.0, 0.0)


def test_evaluate_matches_manual_mae(finished_run, tiny_rmd17):
    out, _ = finished_run
    model, _meta = load_checkpoint(out / "model.pt")
    frames = load_frames(tiny_rmd17)
    topo = topology_from_positions(frames.z, frames.coords[0])
    m = evaluate(model, topo, frames, batch_size=5, dtype=torch.float64)
    assert m["n_frames"] == 24
    m32 = evaluate(model, topo, frames, batch_size=64)
    assert m32["force_mae_kcal_mol_A"] == pytest.approx(m["force_mae_kcal_mol_A"], rel=1e-4)
    pred_e = frames.energies + 1.0
    pred_f = frames.forces - 0.5
    manual = mae_metrics(pred_e, pred_f, frames)
    assert manual["energy_mae_kcal_mol"] == pytest.approx(1.0) and manual["force_mae_kcal_mol_A"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="do not match"):
        evaluate(model, topology_from_positions(np.array([6, 1]), np.eye(2, 3)), frames)


def test_evaluate_cli_prints_maes(finished_run, tiny_rmd17, capsys, tmp_path):
    from emgp_md.cli import main

    out, _ = finished_run
    plot = tmp_path / "parity.png"
    args = ["evaluate", str(out / "model.pt"), str(tiny_rmd17), "--json", "--dtype", "float64", "--plot", str(plot)]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "energy MAE" in text and "force MAE" in text and "kcal/mol" in text and "meV" in text
    assert "C2H6O" in text.splitlines()[2]  # the per-molecule table: one row for ethanol, then "all"
    assert plot.read_bytes()[:4] == b"\x89PNG"
    m = json.loads(text.strip().splitlines()[-1])
    model, _meta = load_checkpoint(out / "model.pt")
    frames = load_frames(tiny_rmd17)
    ref = evaluate(model, topology_from_positions(frames.z, frames.coords[0]), frames, dtype=torch.float64)
    assert m["force_mae_kcal_mol_A"] == pytest.approx(ref["force_mae_kcal_mol_A"], rel=1e-9)
    assert f"{m['energy_mae_kcal_mol']:.4f}" in text


def test_loss_function():
    e, f = torch.tensor([1.0, 3.0]), torch.ones(4, 3)
    zero = energy_force_loss(e, f, e, f, scale=2.0, energy_weight=0.2, force_weight=0.8)
    assert zero.item() == 0.0
    l1 = energy_force_loss(e + 2.0, f, e, f, 2.0, 0.2, 0.8, "l1")
    assert l1.item() == pytest.approx(0.2 * 1.0)
    mse = energy_force_loss(e, f + 1.0, e, f, 2.0, 0.2, 0.8, "mse")
    assert mse.item() == pytest.approx(0.8 * 0.25)
    with pytest.raises(ValueError, match="huber"):
        energy_force_loss(e, f, e, f, 1.0, 0.2, 0.8, "huber")


@pytest.mark.parametrize("kind", ["l1", "mse"])
def test_loss_global_counts_add_up_over_shards(kind):
    """Shards of a batch, each divided by the global counts, sum to the single-process loss."""
    gen = torch.Generator().manual_seed(0)
    pe, te = torch.randn(6, generator=gen, dtype=torch.float64), torch.randn(6, generator=gen, dtype=torch.float64)
    pf, tf = (
        torch.randn(18, 3, generator=gen, dtype=torch.float64),
        torch.randn(18, 3, generator=gen, dtype=torch.float64),
    )
    full = energy_force_loss(pe, pf, te, tf, 1.5, 0.2, 0.8, kind)
    counts = (6, 18 * 3)
    torch.testing.assert_close(energy_force_loss(pe, pf, te, tf, 1.5, 0.2, 0.8, kind, global_counts=counts), full)
    shards = [(slice(0, 4), slice(0, 12)), (slice(4, 6), slice(12, 18))]  # 3 atoms per molecule
    parts = sum(
        energy_force_loss(pe[a], pf[b], te[a], tf[b], 1.5, 0.2, 0.8, kind, global_counts=counts) for a, b in shards
    )
    torch.testing.assert_close(parts, full, rtol=1e-12, atol=1e-12)


def test_normalisation_scale_options() -> None:
    import numpy as np

    from emgp_md.data.rmd17 import Frames
    from emgp_md.training.finetune import normalisation_scale

    rng = np.random.default_rng(0)
    frames = Frames(
        z=np.array([1, 8]),
        coords=rng.normal(size=(5, 2, 3)),
        energies=rng.normal(size=5) * 3.0,
        forces=rng.normal(size=(5, 2, 3)) * 7.0,
        source="synthetic",
    )
    assert normalisation_scale(frames, "energy_std") == pytest.approx(frames.energies.std())
    assert normalisation_scale(frames, "force_rms") == pytest.approx(np.sqrt(np.mean(frames.forces**2)))
    with pytest.raises(ValueError, match="force_rms"):
        normalisation_scale(frames, "per_atom")


def test_init_model_continues_from_every_weight_and_the_scale(tmp_path, tiny_rmd17, finished_run):
    out, result = finished_run
    start, _ = load_checkpoint(out / "model.pt")
    cfg = _cfg(tiny_rmd17, init_model=str(out / "model.pt"), model=ModelConfig(hidden_nf=16, n_layers=2))
    model, used = build_finetune_model(cfg, 1.0, 0.0)
    assert used.model.hidden_nf == 8 and used.model.n_layers == 1  # the model's own architecture
    assert model.energy_scale == start.energy_scale
    for (name, a), (_, b) in zip(model.state_dict().items(), start.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    again = finetune(_cfg(tiny_rmd17, init_model=str(out / "model.pt"), lr=1e-12, epochs=1), tmp_path / "more")
    # same data, learning rate ~0: the continued model predicts as the one it started from
    assert again["test"]["force_mae"] == pytest.approx(result["test"]["force_mae"], rel=1e-4)
    with pytest.raises(ValueError, match="exclude each other"):
        build_finetune_model(_cfg(tiny_rmd17, init_model=str(out / "model.pt"), pretrained="x.pt"), 1.0, 0.0)
