"""workflows/learn_summary.py on the committed results of the learn runs (docs/figures/learn): one
row per run with the numbers of its JSON files, a table and a figure written."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "docs" / "figures" / "learn"


def _workflow():
    spec = importlib.util.spec_from_file_location("learn_summary", ROOT / "workflows" / "learn_summary.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_rows_carry_the_numbers_of_the_json_files() -> None:
    rows = {r["name"]: r for r in _workflow().summary_rows(RESULTS)}
    learn = json.loads((RESULTS / "glycine_dft_learn.json").read_text())
    scratch = json.loads((RESULTS / "glycine_dft_scratch_comparison.json").read_text())
    long = json.loads((RESULTS / "glycine_dft_scratch_comparison_600ep.json").read_text())
    row = rows["glycine_dft"]
    assert row["labels"] == learn["n_labels"] and row["status"] == learn["status"]
    assert row["pretrained"] == learn["test"]["force_mae_meV_A"]
    assert row["scratch"] == scratch["scratch"]["force_mae_meV_A"]
    assert row["scratch_10x"] == long["scratch"]["force_mae_meV_A"]
    assert row["smiles"] == "NCC(=O)O"


def test_writes_table_and_figure(tmp_path: Path, monkeypatch) -> None:
    for path in RESULTS.glob("glycine_xtb_*.json"):
        shutil.copy(path, tmp_path)
    wf = _workflow()
    monkeypatch.setattr("sys.argv", ["learn_summary.py", str(tmp_path)])
    wf.main()
    table = (tmp_path / "summary.md").read_text()
    assert "| glycine_xtb | `NCC(=O)O` |" in table
    assert (tmp_path / "summary.png").stat().st_size > 10_000
