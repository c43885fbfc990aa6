"""Campaign expansion (MD17 reproduction), skip/resume logic, report tables and best-run selection."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from emgp_md.reproduce.campaign import finetune_jobs, load_campaign, pretrain_jobs, run_campaign, run_job
from emgp_md.reproduce.md17_report import collect, table1, table3, write_report
from emgp_md.reproduce.shipping import select_best


def _campaign(tmp_path: Path, extra: str = "") -> Path:
    base = tmp_path / "ft.yaml"
    base.write_text("data: ''\nepochs: 10\nwarmup_epochs: 2\nthreads: 1\n")
    pre = tmp_path / "pre.yaml"
    pre.write_text("data: conf\nepochs: 1\n")
    path = tmp_path / "campaign.yaml"
    path.write_text(f"""
out: {tmp_path / "runs"}
data_dir: /data/rmd17
molecules: [aspirin, ethanol]
pretrain:
  - {{name: p1, config: {pre}, overrides: {{variant: gaussian}}}}
finetune:
  - {{name: scratch, config: {base}}}
  - {{name: official, config: {base}, pretrained: ckpt.pt, epochs: {{default: 40, ethanol: 300}}}}
  - {{name: ours, config: {base}, pretrained: ours.pt, molecules: [aspirin]}}
  - {{name: t3, config: {base}, pretrained: "@p1", molecules: [aspirin]}}
{extra}""")
    return path


def test_jobs_expand_per_molecule(tmp_path: Path) -> None:
    cfg = load_campaign(_campaign(tmp_path))
    jobs = {(j.name, j.molecule): j for j in finetune_jobs(cfg)}
    assert set(jobs) == {
        ("scratch", "aspirin"),
        ("scratch", "ethanol"),
        ("official", "aspirin"),
        ("official", "ethanol"),
        ("ours", "aspirin"),
        ("t3", "aspirin"),
    }
    assert jobs["scratch", "ethanol"].config["data"] == "/data/rmd17/rmd17_ethanol_train_01.npz"
    assert jobs["scratch", "ethanol"].config["test_data"] == "/data/rmd17/rmd17_ethanol_test_01.npz"
    assert "pretrained" not in jobs["scratch", "aspirin"].config
    assert jobs["official", "ethanol"].config["epochs"] == 300
    assert jobs["official", "ethanol"].config["warmup_epochs"] == 60
    assert jobs["official", "aspirin"].config["epochs"] == 40
    assert jobs["t3", "aspirin"].config["pretrained"] == str(tmp_path / "runs" / "pretrain" / "p1" / "best.pt")
    (pre,) = pretrain_jobs(cfg)
    assert pre.config["variant"] == "gaussian" and pre.config["epochs"] == 1


def test_extends_and_finetune_overrides(tmp_path: Path) -> None:
    """A repeat at another seed: same jobs as the base campaign except ``seed`` and the folder."""
    base = load_campaign(_campaign(tmp_path))
    repeat = tmp_path / "repeat.yaml"
    repeat.write_text(
        f"extends: {tmp_path / 'campaign.yaml'}\nout: {tmp_path / 'runs_s2'}\nfinetune_overrides: {{seed: 7}}\n"
    )
    cfg = load_campaign(repeat)
    assert cfg.molecules == base.molecules and [s.name for s in cfg.finetune] == [s.name for s in base.finetune]
    for a, b in zip(finetune_jobs(base), finetune_jobs(cfg)):
        assert b.out == tmp_path / "runs_s2" / a.name / a.molecule and b.config["seed"] == 7
        differ = {k for k in a.config.keys() | b.config.keys() if a.config.get(k) != b.config.get(k)}
        assert differ <= {"seed", "pretrained"}  # "@p1" resolves inside the new folder
    assert [j.config for j in pretrain_jobs(cfg)] == [j.config for j in pretrain_jobs(base)]
    loop = tmp_path / "loop.yaml"
    loop.write_text(f"extends: {loop}\n")
    with pytest.raises(ValueError, match="extends itself"):
        load_campaign(loop)


def test_unknown_keys_and_molecules_are_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown key"):
        load_campaign(_campaign(tmp_path, "colour: blue\n"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("molecules: [aspirin, caffeine]\n")
    with pytest.raises(ValueError, match="caffeine"):
        load_campaign(bad)
    dangling = tmp_path / "dangling.yaml"
    dangling.write_text(f"finetune:\n  - {{name: a, config: {tmp_path / 'ft.yaml'}, pretrained: '@nope'}}\n")
    with pytest.raises(ValueError, match="@nope"):
        finetune_jobs(load_campaign(dangling))


def test_dry_run_writes_nothing_and_finished_runs_are_skipped(tmp_path: Path) -> None:
    cfg = load_campaign(_campaign(tmp_path))
    status = run_campaign(cfg, dry_run=True)
    assert set(status) == {
        "p1",
        "scratch/aspirin",
        "scratch/ethanol",
        "official/aspirin",
        "official/ethanol",
        "ours/aspirin",
        "t3/aspirin",
    }
    assert not (tmp_path / "runs").exists()
    job = finetune_jobs(cfg)[0]
    job.out.mkdir(parents=True)
    (job.out / "metrics.json").write_text(json.dumps({"finished": True}))
    assert job.finished
    assert run_job(job) == 0 and not (job.out / "config.yaml").exists()  # skipped: nothing rewritten


def _fake_run(root: Path, spec: str, mol: str, val_f: float, test_f: float) -> None:
    run = root / spec / mol
    run.mkdir(parents=True)
    m = {
        "energy_mae_kcal_mol": 0.1,
        "force_mae_kcal_mol_A": test_f,
        "energy_mae_meV": 4.3,
        "force_mae_meV_A": test_f * 43.364,
    }
    (run / "metrics.json").write_text(
        json.dumps(
            {
                "finished": True,
                "epochs": 10,
                "wall_s": 60.0,
                "best_epoch": 9,
                "val": {**m, "force_mae_kcal_mol_A": val_f},
                "test": m,
            }
        )
    )
    (run / "config.json").write_text(json.dumps({"model": {"n_layers": 4, "hidden_nf": 64}}))


def test_report_tables_figure_and_selection(tmp_path: Path) -> None:
    cfg = load_campaign(_campaign(tmp_path))
    root = tmp_path / "runs"
    _fake_run(root, "scratch", "aspirin", 2.0, 2.2)
    _fake_run(root, "official", "aspirin", 0.5, 0.6)
    _fake_run(root, "t3", "aspirin", 1.0, 1.1)
    results = collect(cfg)
    row = next(line for line in table1(results, ["aspirin"]).splitlines() if line.startswith("| aspirin"))
    assert "| 2.200 |" in row and "| 0.600 |" in row
    assert table3(results).count("–") >= 4  # variants without runs are blank, not invented
    _fake_run(root, "ours", "aspirin", 0.4, 0.9)  # lower validation MAE wins, whatever the test MAE
    assert select_best(collect(cfg), ["official", "ours"]) == {"aspirin": str(root / "ours" / "aspirin")}
    paths = write_report(cfg, tmp_path / "report")
    assert all(p.exists() and p.stat().st_size > 0 for p in paths)
    assert json.loads(paths[1].read_text())["scratch"]["aspirin"]["test"]["force_mae_kcal_mol_A"] == 2.2
    assert yaml.safe_load((root / "scratch" / "aspirin" / "config.json").read_text())["model"]["hidden_nf"] == 64


def test_shipping_bar_and_readme_table(tmp_path):
    from emgp_md.reproduce.shipping import misses_bar, models_table, update_readme

    assert misses_bar(0.60, 0.58) and misses_bar(0.58, 0.58) and not misses_bar(0.57, 0.58)
    assert not misses_bar(5.0, None)
    entry = {
        "formula": "C2H6O",
        "epochs": 300,
        "pretrained": "x/checkpoint-3dmgp",
        "architecture": {"backbone": "egnn", "n_layers": 7, "hidden_nf": 128},
        "test": {
            "energy_mae_kcal_mol": 0.024,
            "energy_mae_meV": 1.05,
            "force_mae_kcal_mol_A": 0.156,
            "force_mae_meV_A": 6.8,
        },
    }
    table = models_table({"ethanol": entry}, {"ethanol": 0.39})
    assert "| `ethanol` | C2H6O | authors' 3D-EMGP EGNN (7 × 128), fine-tuned 300 epochs" in table
    assert "0.156 kcal/mol/Å (6.8 meV/Å) | 0.39 kcal/mol/Å |" in table
    readme = tmp_path / "README.md"
    readme.write_text("# x\n<!-- shipped-models:start -->\nold\n<!-- shipped-models:end -->\nafter\n")
    assert update_readme(readme, table)
    text = readme.read_text()
    assert "old" not in text and table in text and text.endswith("<!-- shipped-models:end -->\nafter\n")
    plain = tmp_path / "plain.md"
    plain.write_text("no markers\n")
    assert not update_readme(plain, table) and plain.read_text() == "no markers\n"
