"""GPU-session pieces at toy scale on CPU: packed frames, splits, step-budgeted training, reports, shipping."""

from __future__ import annotations

import json
import tarfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from emgp_md.config import FinetuneConfig, ModelConfig
from emgp_md.data.packed import load_packed, pack_molecule, pack_path, split_file, write_pack
from emgp_md.data.rmd17 import load_frames
from emgp_md.reproduce.gpu_session import (
    auto_step_scale,
    claim,
    grid_cells,
    grid_rows,
    paper_recipe_rows,
    paper_regime_rows,
)
from emgp_md.reproduce.paper_regime_report import write_paper_regime_report
from emgp_md.reproduce.session_config import GridSpec, SessionConfig, load_session
from emgp_md.reproduce.session_report import (
    aggregate_grid,
    collect_grid,
    write_data_efficiency_report,
)
from emgp_md.reproduce.session_results import pack_results, summary_text
from emgp_md.training.finetune import resolve_device
from emgp_md.training.stepwise import StepBudget, cosine_lr, train_steps

REPO = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------- packed data
def _fake_splits(root: Path, n_total: int = 60, per_file: int = 20, seed: int = 0) -> dict[int, float]:
    """Ten overlapping split files of a 3-atom molecule; returns old_index -> energy."""
    rng = np.random.default_rng(seed)
    coords = rng.normal(size=(n_total, 3, 3))
    energies = rng.normal(size=n_total) * 10 - 1000
    forces = rng.normal(size=(n_total, 3, 3))
    for k in range(1, 6):
        for kind in ("train", "test"):
            idx = rng.choice(n_total, size=per_file, replace=False)
            np.savez(
                split_file(root, "toy", kind, k),
                nuclear_charges=np.array([8, 1, 1]),
                coords=coords[idx],
                energies=energies[idx],
                forces=forces[idx],
                old_indices=idx,
            )
    return dict(enumerate(energies))


def test_pack_keeps_distinct_frames_with_flags(tmp_path):
    energies = _fake_splits(tmp_path)
    arrays = pack_molecule(tmp_path, "toy")
    olds = set()
    for k in range(1, 6):
        for kind in ("train", "test"):
            with np.load(split_file(tmp_path, "toy", kind, k)) as d:
                olds |= set(d["old_indices"].tolist())
    assert arrays["old_indices"].tolist() == sorted(olds)
    assert arrays["coords"].dtype == np.float32 and arrays["forces"].dtype == np.float32
    assert arrays["energies"].dtype == np.float64
    np.testing.assert_array_equal(arrays["energies"], [energies[o] for o in arrays["old_indices"]])
    pack = load_packed(write_pack(arrays, pack_path(tmp_path, "toy")))
    with np.load(split_file(tmp_path, "toy", "test", 1)) as d:
        np.testing.assert_array_equal(pack.old_indices[pack.test01_order], d["old_indices"])
        np.testing.assert_allclose(pack.test01().energies, d["energies"])
        np.testing.assert_allclose(pack.test01().forces, d["forces"], atol=1e-6)
    assert pack.in_test01.sum() == 20 and not (pack.in_test01[pack.pool_rows()]).any()
    assert len(pack.pool_rows()) + 20 == len(pack)


def test_pack_refuses_inconsistent_duplicates(tmp_path):
    _fake_splits(tmp_path)
    path = split_file(tmp_path, "toy", "test", 3)
    with np.load(path) as d:
        data = {k: d[k] for k in d.files}
    with np.load(split_file(tmp_path, "toy", "train", 1)) as d:
        data["old_indices"][0] = d["old_indices"][0]  # same frame id, different geometry
    np.savez(path, **data)
    with pytest.raises(ValueError, match="differs"):
        pack_molecule(tmp_path, "toy")


@pytest.fixture
def toy_pack(tmp_path):
    _fake_splits(tmp_path, n_total=200, per_file=60)
    return load_packed(write_pack(pack_molecule(tmp_path, "toy"), pack_path(tmp_path, "toy")))


def test_grid_rows_nested_and_disjoint(toy_pack):
    small_tr, small_va = grid_rows(toy_pack, 10, 5, seed=1)
    big_tr, big_va = grid_rows(toy_pack, 40, 5, seed=1)
    np.testing.assert_array_equal(small_va, big_va)
    assert set(small_tr) <= set(big_tr) and not set(big_tr) & set(big_va)
    assert toy_pack.in_train01[big_tr].all() and toy_pack.in_train01[big_va].all()
    with pytest.raises(ValueError):
        grid_rows(toy_pack, 60, 5, seed=1)


def test_paper_regime_rows_avoid_test01_and_train01_in_validation(toy_pack):
    tr, va = paper_regime_rows(toy_pack, 8, seed=3)
    assert not toy_pack.in_test01[tr].any() and not toy_pack.in_test01[va].any()
    assert not toy_pack.in_train01[va].any()
    assert sorted(set(tr) | set(va)) == toy_pack.pool_rows().tolist() and not set(tr) & set(va)


def test_paper_recipe_rows_match_finetune_split(toy_pack):
    tr, va = paper_recipe_rows(toy_pack, seed=2021, n_train=50, n_val=10)
    assert len(tr) == 50 and len(va) == 10 and toy_pack.in_train01[tr].all()


# --------------------------------------------------------------------------- session config and plan
def test_session_config_strict_and_checked(tmp_path):
    cfg = load_session(REPO / "workflows/configs/gpu_session.yaml")
    assert cfg.grid.workers >= 1 and set(cfg.grid.steps) == set(cfg.grid.n_train)
    load_session(REPO / "workflows/configs/gpu_session_cpu_toy.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("grid: {molecules: [ethanol], n_train: [25], steps: {50: 3}}\n")
    with pytest.raises(ValueError, match="step budget"):
        load_session(bad)
    bad.write_text("grid: {recipe: {lr: 1.0, bogus: 2}, steps: {}}\n")
    with pytest.raises(ValueError, match="bogus"):
        load_session(bad, {"grid": {"molecules": [], "recipe": {"bogus": 1}}})
    with pytest.raises(ValueError, match="unknown key"):
        load_session(REPO / "workflows/configs/gpu_session.yaml", {"nonsense": 1})


def test_grid_cells_seed_major_same_steps_both_inits():
    cfg = SessionConfig(
        grid=GridSpec(molecules=["ethanol", "uracil"], n_train=[25, 50], seeds=[0, 1], steps={25: 100, 50: 200})
    )
    cells = grid_cells(cfg, 0.5)
    assert [c[0].seed for c in cells] == [0] * 4 + [1] * 4
    assert all(len({j.max_steps for j in c}) == 1 and [j.init for j in c] == ["pretrained", "scratch"] for c in cells)
    assert {c[0].n_train: c[0].max_steps for c in cells} == {25: 50, 50: 100}
    assert cells[0][0].out == "grid/ethanol/N50/pretrained/seed0"


def test_auto_step_scale_is_clipped():
    cfg = SessionConfig(grid=GridSpec(molecules=["ethanol"], n_train=[25], seeds=[0], steps={25: 1000}, workers=1))
    assert auto_step_scale(cfg, step_s=1e-6, train_time_s=100) == cfg.max_step_scale
    assert auto_step_scale(cfg, step_s=10.0, train_time_s=100) == cfg.min_step_scale
    mid = auto_step_scale(cfg, step_s=0.05, train_time_s=100)
    assert cfg.min_step_scale <= mid <= cfg.max_step_scale


def test_claim_is_exclusive(tmp_path):
    assert claim(tmp_path, "grid/a/N25/seed0")
    assert not claim(tmp_path, "grid/a/N25/seed0")


# --------------------------------------------------------------------------- training
def test_device_option(tiny_rmd17):
    assert resolve_device("cpu").type == "cpu"
    with pytest.raises(ValueError, match="cpu"):
        resolve_device("meta")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            resolve_device("cuda")


def _tiny_cfg() -> FinetuneConfig:
    return FinetuneConfig(
        model=ModelConfig(hidden_nf=8, n_layers=1),
        batch_size=4,
        lr=1e-3,
        scheduler="cosine",
        loss="mse_then_l1",
        normalisation="force_rms",
        device="cpu",
    )


def test_train_steps_budget_cut_and_resume(tmp_path, tiny_rmd17):
    data = load_frames(tiny_rmd17)
    train, val = data.subset(np.arange(12)), data.subset(np.arange(12, 18))
    done = train_steps(_tiny_cfg(), train, val, val, tmp_path / "a", StepBudget(max_steps=6, val_every=3))
    assert done["finished"] and done["steps"] == 6 and np.isfinite(done["test"]["force_mae_kcal_mol_A"])
    assert (tmp_path / "a" / "model.pt").exists() and len((tmp_path / "a" / "log.csv").read_text().splitlines()) == 3
    cut = train_steps(
        _tiny_cfg(),
        train,
        val,
        None,
        tmp_path / "b",
        StepBudget(max_steps=10_000, val_every=3, deadline_unix=time.time() - 1, save_model=False),
    )
    assert not cut["finished"] and cut["cut_by_deadline"] and cut["steps"] == 0 and cut["val"] is not None
    resumed = train_steps(_tiny_cfg(), train, val, None, tmp_path / "b", StepBudget(max_steps=4, val_every=2))
    assert resumed["finished"] and resumed["steps"] == 4
    again = train_steps(_tiny_cfg(), train, val, None, tmp_path / "b", StepBudget(max_steps=4, val_every=2))
    assert again == json.loads((tmp_path / "b" / "metrics.json").read_text())


def test_train_steps_honours_compile_step(tmp_path, tiny_rmd17, compile_calls):
    """compile_step in a session recipe takes the compiled training step (it was silently ignored)."""
    calls = compile_calls
    data = load_frames(tiny_rmd17)
    train, val = data.subset(np.arange(12)), data.subset(np.arange(12, 18))
    budget = StepBudget(max_steps=2, val_every=2, save_model=False)
    train_steps(_tiny_cfg(), train, val, None, tmp_path / "eager", budget)
    assert calls == []
    cfg = replace(_tiny_cfg(), compile_step=True)
    done = train_steps(cfg, train, val, None, tmp_path / "compiled", budget)
    assert len(calls) == 1 and done["finished"] and np.isfinite(done["val"]["force_mae_kcal_mol_A"])


def test_cosine_lr_and_progress():
    cfg = FinetuneConfig(lr=1e-3, min_lr=1e-5)
    assert cosine_lr(cfg, 0.0) == pytest.approx(1e-3) and cosine_lr(cfg, 1.0) == pytest.approx(1e-5)
    budget = StepBudget(max_steps=100, wall_budget_s=10.0)
    assert budget.progress(50, 1.0) == 0.5 and budget.progress(10, 8.0) == 0.8
    with pytest.raises(ValueError):
        StepBudget()


# --------------------------------------------------------------------------- reports
def _fake_metrics(force: float, finished: bool = True, **extra) -> dict:
    test = {"force_mae_kcal_mol_A": force, "energy_mae_kcal_mol": force / 2, "force_mae_meV_A": force * 43.364}
    return {
        "finished": finished,
        "steps": 100,
        "max_steps": 100,
        "batch_size": 32,
        "train_wall_s": 10.0,
        "device": "cuda (fake)",
        "test": test,
        "val": test,
        "n_train": 25,
        "n_val": 50,
        "epochs": 3.0,
        **extra,
    }


def _fake_session(root: Path) -> None:
    for mol in ("ethanol", "aspirin"):
        for n in (25, 100):
            for seed in (0, 1, 2):
                for init, f in (("pretrained", 1.0 / n), ("scratch", 2.0 / n)):
                    run = root / "grid" / mol / f"N{n}" / init / f"seed{seed}"
                    run.mkdir(parents=True)
                    (run / "metrics.json").write_text(
                        json.dumps(_fake_metrics(f * (1 + 0.1 * seed), seed != 2 or n != 100))
                    )
    run = root / "paper_regime" / "aspirin"
    run.mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps(_fake_metrics(0.35, n_train=8133, n_val=500)))
    (root / "go_0.json").write_text(
        json.dumps({"mps": True, "step_scale": 1.0, "bench": [{}] * 15, "median_step_s": 0.03})
    )


def test_reports_from_fake_run_folders(tmp_path):
    root = tmp_path / "session"
    _fake_session(root)
    stats = aggregate_grid(collect_grid(root))
    assert stats[("ethanol", 25, "pretrained")]["n"] == 3 and stats[("ethanol", 100, "scratch")]["n_cut"] == 1
    paths = write_data_efficiency_report(root, tmp_path / "docs")
    assert all(p.exists() for p in paths)
    text = paths[0].read_text()
    assert "| ethanol | 25 |" in text and "2.00×" in text and "2 cut" in text and "N=25: 100" in text
    md = write_paper_regime_report(
        root,
        tmp_path / "docs",
        {"aspirin": {"test": {"force_mae_kcal_mol_A": 0.8}}},
        [{"molecule": "aspirin", "new_val_force": 0.3, "old_val_force": 0.7, "shipped": True}],
    )
    body = md.read_text()
    assert (
        "**0.350**" in body
        and "6.6 / 8.2 meV/Å" in body
        and "≤ 0.40" in body
        and "| aspirin | 0.3000 | 0.7000 | yes |" in body
    )


def test_fair_scratch_report_puts_new_scratch_runs_beside_the_baseline_pretrained_cells(tmp_path):
    from emgp_md.reproduce.fair_scratch_report import baseline_pretrained, write_fair_scratch_report

    _fake_session(tmp_path / "gpu")
    baseline = write_data_efficiency_report(tmp_path / "gpu", tmp_path / "old")[1]
    root = tmp_path / "cpu"
    for n in (25, 100):  # new scratch runs of ethanol only, 1.5x the pretrained MAE; one cut
        for seed in (0, 1):
            run = root / "grid" / "ethanol" / f"N{n}" / "scratch" / f"seed{seed}"
            run.mkdir(parents=True)
            (run / "metrics.json").write_text(
                json.dumps(_fake_metrics(1.5 / n * (1 + 0.1 * seed), n != 100 or seed != 1))
            )
    md, js, fig = write_fair_scratch_report(root, baseline, tmp_path / "docs", {"ethanol": 1.0})
    text = md.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ethanol")]
    assert len(rows) == 2 and "aspirin" not in text.split("Scratch budget")[1].split("Scratch runs cut")[0]
    assert "| ethanol | 25 | 0.044 ± 0.004 | 0.063 ± 0.004 | 1.43× |" in rows[0]  # pretrained mean of 3 seeds
    assert (
        "2/1 (2 cut)" in rows[1]
    )  # one cut in each session and "Scratch runs cut by the deadline (not in the means): 1:" in text
    assert fig.exists() and json.loads(js.read_text())["stats"][0]["init"] == "pretrained"
    with pytest.raises(ValueError, match="no pretrained runs of"):
        baseline_pretrained(baseline, {"uracil"})
    only = tmp_path / "cpu_n100"  # a scratch cell at N = 100 only: labels saved still count pretrained N = 25
    run = only / "grid" / "ethanol" / "N100" / "scratch" / "seed0"
    run.mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps(_fake_metrics(0.05)))
    text = write_fair_scratch_report(only, baseline, tmp_path / "docs2", {"ethanol": 1.0})[0].read_text()
    assert "- ethanol: pretrained with **25** frames (0.04)" in text and "≥ 4× fewer labels" in text


def test_scratch_recipe_is_read_from_the_run_folders_and_names_molecules_when_they_differ(tmp_path):
    from emgp_md.config import FinetuneConfig, to_dict
    from emgp_md.reproduce.grid_summary import recipe_text

    records = []
    for mol, ew in (("ethanol", 0.2), ("aspirin", 0.01), ("uracil", 0.01)):
        run = tmp_path / mol
        run.mkdir()
        cfg = FinetuneConfig(init="unit_distance", energy_weight=ew, force_weight=1 - ew)
        (run / "config.json").write_text(json.dumps({"config": to_dict(cfg)}))
        records.append({"molecule": mol, "run": str(run)})
    text = recipe_text(records)
    assert "aspirin, uracil: init `unit_distance`" in text and "0.01 E + 0.99 F" in text
    assert "ethanol: init `unit_distance`" in text and "0.2 E + 0.8 F" in text
    assert "0.2 E" not in recipe_text(records[1:]) and not recipe_text(records[1:]).startswith("aspirin")


def test_labels_saved_names_the_fewest_pretrained_frames_that_match_scratch_at_its_best():
    from emgp_md.reproduce.grid_summary import labels_saved

    def cell(f):
        return {"n": 3, "force_mean": f}

    stats = {
        ("ethanol", 25, "pretrained"): cell(3.0),
        ("ethanol", 100, "pretrained"): cell(1.5),
        ("ethanol", 950, "pretrained"): cell(0.8),
        ("ethanol", 100, "scratch"): cell(2.0),  # scratch's best mean, at N = 100, not at the largest N
        ("ethanol", 950, "scratch"): cell(6.0),
        ("uracil", 25, "pretrained"): cell(5.0),
        ("uracil", 950, "scratch"): cell(4.0),
    }
    lines = labels_saved(stats)
    assert (
        lines[0].startswith("- ethanol: pretrained with **100** frames (1.50)")
        and "with 100 frames (2.00 kcal/mol/Å, 3 scratch seeds)" in lines[0]
    )
    assert "1× fewer labels at these step budgets." in lines[0] and "≥" not in lines[0]
    stats[("ethanol", 25, "pretrained")] = cell(1.9)
    assert "≥ 4× fewer labels at these step budgets (the smallest N run)." in labels_saved(stats)[0]
    assert lines[1] == "- uracil: no pretrained cell reaches scratch's best mean (4.00 at N=950, 3 scratch seeds)."


def test_pack_results_limits(tmp_path):
    root = tmp_path / "session"
    _fake_session(root)
    (root / "paper_regime" / "aspirin" / "model.pt").write_bytes(b"x" * 1000)
    (root / "grid" / "ethanol" / "N25" / "scratch" / "seed0" / "state.pt").write_bytes(b"x" * 1000)
    written = pack_results(root, tmp_path / "OUT")
    assert [p.name for p in written] == ["results.tar.gz", "models_paper_regime_aspirin.tar.gz"]
    with tarfile.open(written[0]) as tar:
        names = tar.getnames()
    assert "session/grid/ethanol/N25/scratch/seed0/metrics.json" in names and not any(n.endswith(".pt") for n in names)
    assert "paper_regime/aspirin: finished" in summary_text(root, 1.0)


def test_ship_checkpoint_and_validation_comparison(tmp_path, tiny_rmd17):
    from emgp_md.reproduce.shipping import ship_checkpoint, validation_comparison

    data = load_frames(tiny_rmd17)
    train, val = data.subset(np.arange(12)), data.subset(np.arange(12, 18))
    train_steps(_tiny_cfg(), train, val, val, tmp_path / "run", StepBudget(max_steps=2, val_every=1))
    model = tmp_path / "run" / "model.pt"
    new, old = validation_comparison(model, model, val)
    assert new["force_mae_kcal_mol_A"] == pytest.approx(old["force_mae_kcal_mol_A"])
    entry = ship_checkpoint(model, "ethanol", "fine-tuned 2 steps on 12 frames", tmp_path / "dest")
    assert entry["formula"] == "C2H6O" and entry["training"].startswith("fine-tuned")
    from emgp_md.models.checkpoint import load_checkpoint

    _, meta = load_checkpoint(tmp_path / "dest" / "ethanol.pt")
    assert meta["name"] == "ethanol" and len(meta["topology"]["positions_A"]) == 9
    from emgp_md.pretrained import file_sha256

    assert entry["sha256"] == file_sha256(tmp_path / "dest" / "ethanol.pt")  # verified on every load


def test_plateau_runs_are_marked_and_their_gains_bracketed():
    from emgp_md.reproduce.grid_summary import data_efficiency_table, on_plateau

    cell = {"n": 3, "n_cut": 0, "steps": [100], "energy_mean": 1.0, "energy_std": 0.1}
    stats = {
        ("ethanol", 25, "pretrained"): {**cell, "force_mean": 2.0, "force_std": 0.1},
        ("ethanol", 25, "scratch"): {**cell, "force_mean": 20.1, "force_std": 0.0},
    }
    assert on_plateau(20.1, 20.2) and not on_plateau(2.0, 20.2) and not on_plateau(20.1, None)
    table = data_efficiency_table(stats, {"ethanol": 20.2})
    assert "20.100 ± 0.000 (plateau)" in table and "(10.05×)" in table
    assert "(plateau)" not in data_efficiency_table(stats)


def test_plain_report_reads_each_inits_recipe_and_names_the_labels_saved(tmp_path):
    from emgp_md.config import FinetuneConfig, to_dict

    def write_configs(root: Path, scratch_ew: float) -> None:
        for run in (root / "grid").glob("*/*/*/seed*"):
            pretrained = run.parent.name == "pretrained"
            ew = 0.01 if pretrained else scratch_ew
            cfg = FinetuneConfig(
                init="default" if pretrained else "unit_distance",
                pretrained="ckpt" if pretrained else None,
                energy_weight=ew,
                force_weight=1 - ew,
            )
            (run / "config.json").write_text(json.dumps({"config": to_dict(cfg)}))

    root = tmp_path / "same"
    _fake_session(root)
    write_configs(root, 0.01)
    md, js, fig = write_data_efficiency_report(root, tmp_path / "docs", {"ethanol": 5.0}, name="de_cpu")
    text = md.read_text()
    assert md.name == "de_cpu.md" and js.name == "de_cpu.json" and fig.name == "de_cpu.png" and fig.exists()
    assert "One recipe for both inits" in text and "0.2 E" not in text
    assert (
        "pretrained: init the authors' checkpoint, Adam lr 0.0005" in text and "scratch: init `unit_distance`" in text
    )
    # scratch is 2x pretrained at each N: only pretrained N = 100 (0.011) matches scratch at its best (0.021)
    assert "- ethanol: pretrained with **100** frames" in text and "1× fewer labels" in text
    other = tmp_path / "other"
    _fake_session(other)
    write_configs(other, 0.2)
    text = write_data_efficiency_report(other, tmp_path / "docs2")[0].read_text()
    assert "Recipes (from each run's `config.json`)" in text and "0.2 E + 0.8 F" in text
    assert (tmp_path / "docs2" / "figures" / "data_efficiency.png").exists()


def test_plain_report_fills_lost_cells_and_merges_seeds_from_an_earlier_report(tmp_path):
    import shutil

    full = tmp_path / "full"
    _fake_session(full)  # N=100 seed 2 cut: the earlier report has seeds 0, 1 there
    baseline = write_data_efficiency_report(full, tmp_path / "old")[1]
    part = tmp_path / "part"
    _fake_session(part)
    shutil.rmtree(part / "grid" / "aspirin" / "N25" / "scratch")  # aspirin scratch: folders gone
    shutil.rmtree(part / "grid" / "aspirin" / "N100" / "scratch")
    shutil.rmtree(part / "grid" / "ethanol" / "N25" / "pretrained")  # one lost cell: taken whole
    cell = part / "grid" / "ethanol" / "N100" / "pretrained"  # only the cut seed 2, run again here
    shutil.rmtree(cell / "seed0"), shutil.rmtree(cell / "seed1")
    (cell / "seed2" / "metrics.json").write_text(json.dumps(_fake_metrics(0.012)))
    md, js, _ = write_data_efficiency_report(part, tmp_path / "new", name="filled", fill_from=baseline)
    text, data = md.read_text(), json.loads(js.read_text())
    assert (
        "**Cells from an earlier report**" in text
        and "Their recipe: pretrained: not recorded; scratch: not recorded." in text
    )
    assert "One recipe for both inits" not in text  # no config.json here: nothing says the recipes agree
    assert data["filled_from"]["cells"] == [
        "aspirin scratch: N=25, N=100",
        "ethanol pretrained: N=25, N=100 seeds 0,1 there + 2 here",
    ]
    old = {(s["molecule"], s["n_train"], s["init"]): s for s in json.loads(baseline.read_text())["stats"]}
    new = {(s["molecule"], s["n_train"], s["init"]): s for s in data["stats"]}
    assert new[("aspirin", 25, "scratch")]["force_mean"] == old[("aspirin", 25, "scratch")]["force_mean"]
    assert new[("ethanol", 25, "pretrained")]["force_mean"] == old[("ethanol", 25, "pretrained")]["force_mean"]
    merged, values = new[("ethanol", 100, "pretrained")], np.array([0.010, 0.011, 0.012])
    assert merged["seeds"] == [0, 1, 2] and merged["n"] == 3 and merged["n_cut"] == 0
    assert merged["force_mean"] == pytest.approx(values.mean(), rel=1e-12)
    assert merged["force_std"] == pytest.approx(values.std(ddof=1), rel=1e-9)
    assert merged["force_max"] == pytest.approx(0.012) and merged["energy_mean"] == pytest.approx(0.0055)
    assert "| aspirin | 25 |" in text and "2.00×" in text
    assert data["recipes"] == {"pretrained": "not recorded", "scratch": "not recorded"}
    assert {(r["molecule"], r["n_train"], r["init"], r["seed"]) for r in data["runs"]} >= {
        ("ethanol", 100, "pretrained", 2)
    }
    assert all("run" not in r for r in data["runs"])  # no local paths in the archive
    only = json.loads(write_data_efficiency_report(part, tmp_path / "one", molecules=["ethanol"])[1].read_text())
    assert {s["molecule"] for s in only["stats"]} == {"ethanol"} and {r["molecule"] for r in only["runs"]} == {
        "ethanol"
    }
    with pytest.raises(ValueError, match="no grid runs for uracil"):
        write_data_efficiency_report(part, tmp_path / "one", molecules=["ethanol", "uracil"])
    # a seed in both cannot be split out of the earlier mean
    (cell / "seed0").mkdir()
    (cell / "seed0" / "metrics.json").write_text(json.dumps(_fake_metrics(0.010)))
    with pytest.raises(ValueError, match=r"ethanol N=100 pretrained: seeds \[0\] are in both"):
        write_data_efficiency_report(part, tmp_path / "new", fill_from=baseline)
    # the earlier JSON now records recipes; a JSON without stats is refused
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="not a data-efficiency report"):
        write_data_efficiency_report(part, tmp_path / "new", fill_from=tmp_path / "bad.json")


def test_paper_regime_report_reads_its_recipe_from_the_runs_and_takes_a_name(tmp_path):
    from emgp_md.config import FinetuneConfig, to_dict

    root = tmp_path / "session"
    _fake_session(root)
    shipped = {"aspirin": {"test": {"force_mae_kcal_mol_A": 0.8}}}
    body = write_paper_regime_report(root, tmp_path / "docs", shipped).read_text()
    assert "recipe not recorded in the run folders" in body and "energy-std" not in body
    cfg = FinetuneConfig(
        pretrained="ckpt", batch_size=32, lr=1e-3, energy_weight=0.01, force_weight=0.99, normalisation="force_rms"
    )
    (root / "paper_regime" / "aspirin" / "config.json").write_text(json.dumps({"config": to_dict(cfg)}))
    md = write_paper_regime_report(root, tmp_path / "docs", shipped, name="results_paper_regime_cpu")
    text = md.read_text()
    assert md.name == "results_paper_regime_cpu.md"
    assert "init the authors' checkpoint, Adam lr 0.001" in text and "0.01 E + 0.99 F" in text and "batch 32" in text


def test_paper_regime_report_joins_session_folders_and_plots_the_validation_curves(tmp_path):
    first, second = tmp_path / "s1", tmp_path / "s2"
    _fake_session(first)
    run = second / "paper_regime" / "ethanol"
    run.mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps(_fake_metrics(0.12, n_train=8133, n_val=500, epochs=140.0)))
    (run / "log.csv").write_text("step,epoch,val_force_mae\n200,0.8,0.9\n400,1.6,0.4\n")
    decisions = [{"molecule": "ethanol", "new_val_force": 0.12, "old_val_force": 0.15, "shipped": True}]
    md = write_paper_regime_report([first, second], tmp_path / "docs", {}, decisions, name="joined")
    text = md.read_text()
    assert (
        f"`{first}`, `{second}`" in text
        and "| paper_regime | aspirin |" in text
        and "| paper_regime | ethanol |" in text
    )
    assert "![validation force MAE against epochs](figures/joined.png)" in text
    assert (tmp_path / "docs" / "figures" / "joined.png").stat().st_size > 10_000
    (first / "paper_regime" / "ethanol").mkdir()
    (first / "paper_regime" / "ethanol" / "metrics.json").write_text(json.dumps(_fake_metrics(0.2)))
    with pytest.raises(ValueError, match="paper_regime/ethanol is in both"):
        write_paper_regime_report([first, second], tmp_path / "docs", {})


def test_a_recorded_ship_decision_stands_for_later_reports(tmp_path):
    """Once a run is shipped, comparing it again would compare it with itself: its folder's
    ship_decision.json is reused (with the test MAE of the default it replaced)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("paper_regime_wf", REPO / "workflows" / "paper_regime.py")
    wf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(wf)
    run = tmp_path / "s" / "paper_regime" / "aspirin"
    run.mkdir(parents=True)
    (run / "model.pt").write_bytes(b"not read")
    recorded = {"molecule": "aspirin", "new_val_force": 0.716, "old_val_force": 0.799, "old_test_force": 0.801}
    recorded["shipped"] = True
    (run / wf.DECISION_FILE).write_text(json.dumps(recorded))
    assert wf.ship_if_better(tmp_path / "s", tmp_path / "no-packs", tmp_path / "dest") == [recorded]
    (run / "metrics.json").write_text(json.dumps(_fake_metrics(0.718, n_train=8133, n_val=500)))
    shipped_now = {"aspirin": {"test": {"force_mae_kcal_mol_A": 0.718}}}
    text = write_paper_regime_report(tmp_path / "s", tmp_path / "docs", shipped_now, [recorded]).read_text()
    assert "| 0.801 | ≤ 0.40 |" in text  # the replaced default's test MAE, not the run's own
