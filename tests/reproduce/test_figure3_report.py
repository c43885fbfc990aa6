"""Figure 3 analogue: the campaign config loads and checks, the report table holds the runs' numbers."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import yaml

from emgp_md.reproduce.campaign import finetune_jobs, load_campaign, pretrain_jobs
from emgp_md.reproduce.figure3_report import count_parameters, spec_rows

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "workflows" / "configs" / "figure3.yaml"
BACKBONES = ["egnn", "schnet", "et", "se3set"]


@pytest.fixture
def campaign(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """workflows/configs/figure3.yaml with its run folder moved into tmp_path (paths relative to the repo)."""
    monkeypatch.chdir(ROOT)
    raw = yaml.safe_load(CONFIG.read_text())
    raw["out"] = str(tmp_path / "runs")
    path = tmp_path / "figure3.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _workflow():
    spec = importlib.util.spec_from_file_location("figure3_workflow", ROOT / "workflows" / "figure3.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fake_run(
    root: Path,
    spec: str,
    mol: str,
    force: float,
    energy: float,
    model: dict,
    epochs: int = 40,
    wall_s: float = 600.0,
    cpu_s: float | None = None,
) -> None:
    run = root / spec / mol
    run.mkdir(parents=True)
    m = {
        "energy_mae_kcal_mol": energy,
        "force_mae_kcal_mol_A": force,
        "energy_mae_meV": energy * 43.364,
        "force_mae_meV_A": force * 43.364,
    }
    (run / "metrics.json").write_text(
        json.dumps(
            {
                "finished": True,
                "epochs": epochs,
                "wall_s": wall_s,
                "best_epoch": epochs - 1,
                "val": m,
                "test": m,
                **({} if cpu_s is None else {"cpu_s": cpu_s}),
            }
        )
    )
    (run / "config.json").write_text(json.dumps({"model": model}))


def test_config_expands_to_every_backbone(campaign: Path) -> None:
    cfg = load_campaign(campaign)
    assert cfg.molecules == ["aspirin", "ethanol"]
    pre = {j.name: j.config for j in pretrain_jobs(cfg)}
    assert set(pre) == {f"pre_{b}" for b in BACKBONES}
    for b in ("egnn", "schnet", "et"):
        assert pre[f"pre_{b}"]["model"] == {
            "backbone": b,
            "hidden_nf": 64,
            "n_layers": 4,
            "head": "pooled",
            "noise_levels": 50,
            "attention": True,
        }
    assert pre["pre_se3set"]["model"]["se3set_preset"] == "cpu_small"
    assert pre["pre_se3set"]["batch_size"] == 16 and pre["pre_egnn"]["batch_size"] == 64
    assert all(
        c["max_conformers"] == 20000 and c["variant"] == "riemann" and c["cpu_budget_s"] == 300 for c in pre.values()
    )
    jobs = {(j.name, j.molecule): j.config for j in finetune_jobs(cfg)}
    assert len(jobs) == 16
    for b in BACKBONES:
        for mol in ("aspirin", "ethanol"):
            scratch, pretrained = jobs[f"{b}_scratch", mol], jobs[f"{b}_pretrained", mol]
            assert scratch["cpu_budget_s"] == pretrained["cpu_budget_s"] == 240 and "pretrained" not in scratch
            assert scratch["lr"] == pretrained["lr"] and scratch["loss"] == pretrained["loss"] == "mse"
            assert pretrained["pretrained"].endswith(f"pre_{b}/best.pt")
            assert scratch["model"]["backbone"] == pretrained["model"]["backbone"] == b
    assert [(r.backbone, r.init) for r in spec_rows(cfg)] == [
        (b, i) for b in BACKBONES for i in ("scratch", "pretrained")
    ]


def test_dry_run_checks_every_job_and_writes_nothing(campaign: Path, tmp_path: Path, caplog) -> None:
    workflow = _workflow()
    lines = workflow.check_jobs(load_campaign(campaign))
    assert len(lines) == 4 + 16 and any("se3set" in line for line in lines)
    assert workflow.main([str(campaign), "--dry-run", "--report-dir", str(tmp_path / "report")]) == 0
    assert not (tmp_path / "runs").exists() and not (tmp_path / "report").exists()


def test_report_table_and_figure(campaign: Path, tmp_path: Path) -> None:
    root = tmp_path / "runs"
    egnn = {"backbone": "egnn", "hidden_nf": 64, "n_layers": 4, "attention": True, "head": "atomwise"}
    _fake_run(root, "egnn_scratch", "aspirin", 2.5, 1.25, egnn, wall_s=1200.0, cpu_s=240.4)
    _fake_run(root, "egnn_pretrained", "aspirin", 1.25, 0.5, egnn)
    _fake_run(root, "egnn_scratch", "ethanol", 0.8, 0.2, egnn, epochs=37)
    pre = root / "pretrain" / "pre_egnn"  # a finished pretraining run: log and summary
    pre.mkdir(parents=True)
    (pre / "log.csv").write_text("epoch,val_loss,val_inp_acc,wall_s\n0,16.8,0.1,138.5\n")
    (pre / "summary.json").write_text(json.dumps({"best_val_loss": 16.8, "cpu_s": 137.7}))
    workflow = _workflow()
    assert workflow.main([str(campaign), "--report-only", "--report-dir", str(tmp_path / "report")]) == 0
    md = (tmp_path / "report" / "results_figure3.md").read_text()
    png = tmp_path / "report" / "figures" / "figure3_backbones.png"
    assert png.exists() and png.stat().st_size > 10_000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = {
        tuple(c.strip() for c in line.split("|")[1:4]): [c.strip() for c in line.split("|")[4:-1]]
        for line in md.splitlines()
        if line.count("|") == 15 and line.split("|")[3].strip() in ("scratch", "pretrained")
    }
    n = count_parameters(egnn)
    params = f"{n / 1e3:.1f} k"
    scratch = rows["EGNN", params, "scratch"]
    # aspirin F, E (kcal), F, E (meV); ethanol F, E (kcal), F, E (meV); epochs; CPU time; wall time
    assert scratch[:4] == ["2.500", "1.250", f"{2.5 * 43.364:.1f}", f"{1.25 * 43.364:.1f}"]
    assert scratch[4:8] == ["0.800", "0.200", f"{0.8 * 43.364:.1f}", f"{0.2 * 43.364:.1f}"]
    assert scratch[8:] == ["40 / 37", "240 / –", "20.0 / 10.0"]  # no cpu_s logged: "–", not invented
    pretrained = rows["EGNN", params, "pretrained"]
    assert pretrained[:2] == ["1.250", "0.500"] and pretrained[4:] == ["–"] * 4 + ["40 / –", "– / –", "10.0 / –"]
    se3set = next(v for k, v in rows.items() if k[0] == "SE3Set" and k[2] == "scratch")
    assert se3set == ["–"] * 8 + ["– / –"] * 3  # unfinished runs are blank, not invented
    assert len(rows) == 8
    gain = next(line for line in md.splitlines() if line.startswith("| EGNN |") and line.count("|") == 4)
    assert "| 2.00 |" in gain and gain.rstrip().endswith("| – |")
    assert "pre_se3set (not run)" in md
    pre_row = next(line for line in md.splitlines() if line.startswith("| pre_egnn"))
    assert [c.strip() for c in pre_row.split("|")[3:8]] == ["1", "16.800", "0.100", "138", "2.3"]
    assert "CPU budget per run (`cpu_budget_s`" in md and "fine-tuning 240, pretraining 300;" in md
