"""The active-learning loop of ``emgp-md learn`` end to end on water with GFN2-xTB (issue #15 items 4-5, 7).

A tiny scratch EGNN, a two-member committee, femtosecond-long MD: every stage runs, in seconds.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("tblite", reason="the xTB labeller needs tblite (pip install '.[learn]')")

from emgp_md.cli import main
from emgp_md.committee import CommitteeCalculator
from emgp_md.learn.active import learn
from emgp_md.learn.compare import scratch_side_by_side
from emgp_md.learn.settings import LearnConfig
from emgp_md.models.checkpoint import load_checkpoint

TINY = {
    "labeller": "xtb",
    "n_pool": 12,
    "n_initial": 6,
    "n_per_round": 3,
    "max_labels": 9,
    "n_test": 4,
    "committee": 2,
    "epochs": 2,
    "refine_epochs": 1,
    "batch_size": 4,
    "probe_ps": 0.02,
    "stability_ps": 0.02,
    "pretrained": "none",
    "scratch_hidden_nf": 8,
    "scratch_layers": 1,
}


def test_budget_spent_is_said_and_never_called_converged(tmp_path):
    cfg = LearnConfig(**TINY, disagreement_eV_A=1e-9)  # a committee never agrees this well
    result = learn("O", tmp_path / "w", cfg)
    assert result.status == "budget_spent"
    assert result.n_labels == cfg.max_labels and len(result.rounds) == 2  # 6 labels, then 3 more
    assert [r["n_labels"] for r in result.rounds] == [6, 9]
    assert result.stability is not None and "stable" in result.stability
    _, meta = load_checkpoint(tmp_path / "w" / "model.pt")
    prov = meta["provenance"]["learn"]
    assert prov["status"] == "budget_spent" and prov["labels"] == 9 and prov["input"] == "O"
    assert prov["level_of_theory"] == "GFN2-xTB" and prov["test"]["force_mae_meV_A"] > 0
    saved = json.loads((tmp_path / "w" / "learn.json").read_text())
    assert saved["status"] == "budget_spent"
    # the committee's disagreement is the user's uncertainty afterwards
    atoms = __import__("ase.io", fromlist=["read"]).read(tmp_path / "w" / "start.xyz")
    atoms.calc = CommitteeCalculator(result.committee)
    atoms.get_forces()
    assert atoms.calc.results["forces_std"].shape == (3, 3)
    assert np.isfinite(atoms.calc.results["force_disagreement"])


def test_later_rounds_continue_from_the_round_before(tmp_path):
    learn("O", tmp_path / "w", LearnConfig(**TINY, disagreement_eV_A=1e-9))
    first = json.loads((tmp_path / "w" / "round_0" / "member_1" / "config.json").read_text())
    later = json.loads((tmp_path / "w" / "round_1" / "member_1" / "config.json").read_text())
    assert first["pretrained"] is None and first["init_model"] is None and first["epochs"] == 2
    assert later["init_model"].endswith("round_0/member_1/model.pt") and later["epochs"] == 1


def test_scratch_side_by_side_uses_the_same_labels_and_test(tmp_path):
    cfg = LearnConfig(**TINY, disagreement_eV_A=1e-9)
    learn("O", tmp_path / "w", cfg)
    result = scratch_side_by_side(tmp_path / "w")
    assert result["labels"] == cfg.max_labels and result["test_frames"] == cfg.n_test
    assert result["architecture"] == "EGNN 1 x 8" and result["epochs"] == 2 + 1  # round 0 + one refinement
    assert result["scratch"]["force_mae_meV_A"] > 0 and result["pretrained"]["force_mae_meV_A"] > 0
    assert (tmp_path / "w" / "scratch_comparison.json").is_file() and result["zero_force_mae_meV_A"] > 0
    longer = scratch_side_by_side(tmp_path / "w", epochs=4)
    assert longer["epochs"] == 4 and (tmp_path / "w" / "scratch_comparison_4ep.json").is_file()


def test_converges_when_the_committee_agrees_and_the_run_is_stable(tmp_path):
    # a loose threshold and a few cold femtoseconds: the loop's convergence path, not the model's quality
    cfg = LearnConfig(
        **{**TINY, "probe_ps": 0.005, "stability_ps": 0.005, "temperature_K": 50.0}, disagreement_eV_A=1e3
    )
    result = learn("O", tmp_path / "w", cfg)
    assert result.status == "converged" and len(result.rounds) == 1 and result.stability["stable"]


def test_resume_reuses_labels_members_and_md(tmp_path, monkeypatch):
    cfg = LearnConfig(**TINY, disagreement_eV_A=1e-9)
    first = learn("O", tmp_path / "w", cfg)
    member = tmp_path / "w" / "round_1" / "member_1" / "model.pt"
    stamp = member.stat().st_mtime_ns
    from emgp_md.learn import labelling

    def no_labels(*args, **kwargs):
        raise AssertionError("a resumed run relabelled a frame")

    monkeypatch.setattr(labelling.XTBLabeller, "__call__", no_labels)
    killed_mid_probe = tmp_path / "w" / "round_1" / "probe_summary.json"
    killed_mid_probe.unlink()  # as if killed during the probe: its MD settings file (probe.json) stays
    assert (tmp_path / "w" / "round_1" / "probe.json").is_file()
    again = learn("O", tmp_path / "w", cfg)
    assert again.n_labels == first.n_labels and member.stat().st_mtime_ns == stamp
    assert again.wall_s > first.wall_s  # the clock adds the resumed invocation to the first
    assert [r["n_labels"] for r in again.rounds] == [6, 9]  # round 0 still counts its own labels
    assert "intact" in json.loads(killed_mid_probe.read_text())
    assert again.rounds[-1]["test_force_mae_meV_A"] == first.rounds[-1]["test_force_mae_meV_A"]


def test_unknown_elements_and_bad_smiles_are_refused_before_any_work(tmp_path, caplog):
    with pytest.raises(ValueError, match=r"Si \(Z=14\).*authors-3dmgp"):
        learn("[SiH4]", tmp_path / "si", LearnConfig(**{**TINY, "pretrained": "authors-3dmgp"}))
    assert not (tmp_path / "si").exists()
    assert main(["learn", "C1CC(", "--out", str(tmp_path / "bad")]) == 2
    assert "C1CC(" in caplog.text
    assert not (tmp_path / "bad").exists()


def test_cli_writes_report_and_exits_4_when_the_budget_ran_out(tmp_path, capsys):
    cfg = tmp_path / "learn.yaml"
    cfg.write_text("".join(f"{k}: {v}\n" for k, v in {**TINY, "disagreement_eV_A": 1e-9}.items()))
    out = tmp_path / "w"
    assert main(["learn", "O", str(cfg), "--out", str(out)]) == 4
    report = (out / "report.md").read_text()
    assert "budget" in report.lower() and (out / "error_vs_labels.png").is_file()
    assert main(["learn", "O", str(cfg), "--out", str(out)]) == 2  # not empty, no --resume
    assert main(["learn", "O", str(cfg), "--out", str(out), "--resume"]) == 4


def test_selection_takes_the_most_uncertain_spaced_geometries(tmp_path):
    from emgp_md.learn.rounds import select_frames

    score = np.array([0.1, 0.9, 0.8, 0.2, 0.7, 0.3, 0.05, 0.6])
    positions = np.arange(len(score))[:, None, None] * np.ones((1, 3, 3))
    np.savez(tmp_path / "probe_history.npz", positions_A=positions, disagreement_eV_A=score)
    z = np.array([8, 1, 1])
    spaced = select_frames(tmp_path, 3, z, min_spacing=2)
    assert [int(a.positions[0, 0]) for a in spaced] == [1, 4, 7]  # 0.9, then 0.7 and 0.6 two steps apart
    short = select_frames(tmp_path, 6, z, min_spacing=3)  # spacing leaves three: the rest by uncertainty
    assert sorted(int(a.positions[0, 0]) for a in short) == [1, 2, 3, 4, 5, 7]
