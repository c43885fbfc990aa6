"""Lost work: `md`/`relax` check --out before running; Ctrl-C and bond changes in `md` keep what ran."""

from __future__ import annotations

import csv

import ase.io
import numpy as np
import pytest
from ase.build import molecule

from emgp_md.calculator import EMGPCalculator
from emgp_md.cli import main
from emgp_md.cli.md import EXIT_BOND_CHANGE, EXIT_INTERRUPTED
from emgp_md.errors import BondChangeError
from emgp_md.md import run_md


@pytest.fixture
def xyz(tmp_path, ethanol):
    path = tmp_path / "ethanol.xyz"
    ase.io.write(path, ethanol)
    return path


def _relax(xyz, ckpt, out, *extra):
    return main(["relax", str(xyz), "--model", str(ckpt), "--out", str(out), "--steps", "2", "--quiet", *extra])


def _md(xyz, ckpt, out, *extra, steps: int = 4):
    return main(
        [
            "md",
            str(xyz),
            "--model",
            str(ckpt),
            "--out",
            str(out),
            "--steps",
            str(steps),
            "--interval",
            "2",
            "--quiet",
            "--ensemble",
            "nve",
            *extra,
        ]
    )


def _steps(csv_path) -> list[int]:
    with open(csv_path) as fh:
        return [int(r["step"]) for r in csv.DictReader(fh)]


def _fail_on_call(monkeypatch, n: int, exc: BaseException) -> None:
    """Make the ``n``-th ``EMGPCalculator.calculate`` call (1-based) raise ``exc``; call n is MD step n - 1."""
    original = EMGPCalculator.calculate
    calls = {"n": 0}

    def calculate(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == n:
            raise exc
        return original(self, *args, **kwargs)

    monkeypatch.setattr(EMGPCalculator, "calculate", calculate)


# --------------------------------------------------------------------------- --out checks
@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("relaxed.foo", "no structure format 'foo'"),
        ("relaxed", "no structure format"),
        ("relaxed.png", "cannot write and read back"),
    ],
)
def test_relax_refuses_unknown_format_before_running(small_checkpoint, xyz, tmp_path, caplog, name, message):
    assert _relax(xyz, small_checkpoint, tmp_path / name) == 2
    assert message in caplog.text and name in caplog.text
    assert not (tmp_path / name).exists()


def test_relax_refuses_existing_output_unless_overwrite(small_checkpoint, xyz, tmp_path, caplog):
    out = tmp_path / "relaxed.xyz"
    out.write_text("precious\n")
    assert _relax(xyz, small_checkpoint, out) == 2
    assert "already exist" in caplog.text and "--overwrite" in caplog.text and str(out) in caplog.text
    assert out.read_text() == "precious\n"
    assert _relax(xyz, small_checkpoint, out, "--overwrite") in (0, 1)
    assert len(ase.io.read(out)) == 9


def test_relax_creates_missing_folders_but_refuses_a_file_as_folder(small_checkpoint, xyz, tmp_path, caplog):
    assert _relax(xyz, small_checkpoint, tmp_path / "new" / "dir" / "r.xyz") in (0, 1)
    assert (tmp_path / "new" / "dir" / "r.xyz").is_file()
    (tmp_path / "blocker").write_text("a file")
    assert _relax(xyz, small_checkpoint, tmp_path / "blocker" / "r.xyz") == 2
    assert "is a file, not a folder" in caplog.text


def test_md_refuses_existing_outputs_unless_overwrite(small_checkpoint, xyz, tmp_path, caplog):
    out = tmp_path / "run"
    out.with_suffix(".csv").write_text("precious\n")
    assert _md(xyz, small_checkpoint, out) == 2
    assert "run.csv" in caplog.text and "--overwrite" in caplog.text
    assert out.with_suffix(".csv").read_text() == "precious\n" and not out.with_suffix(".traj").exists()
    assert _md(xyz, small_checkpoint, out, "--overwrite") == 0
    assert _steps(out.with_suffix(".csv")) == [0, 2, 4]
    assert _md(xyz, small_checkpoint, out) == 2  # a finished run is not overwritten either


# --------------------------------------------------------------------------- Ctrl-C and bond changes
def test_md_ctrl_c_keeps_frames_and_exits_130(small_checkpoint, xyz, tmp_path, caplog, monkeypatch):
    _fail_on_call(monkeypatch, 8, KeyboardInterrupt())  # while computing step 7; steps 0..6 done
    out = tmp_path / "md" / "run"
    assert _md(xyz, small_checkpoint, out, steps=20) == EXIT_INTERRUPTED == 130
    assert "interrupted (Ctrl-C) after step 6 of 20" in caplog.text and "frames up to step 6" in caplog.text
    assert _steps(out.with_suffix(".csv")) == [0, 2, 4, 6]
    frames = ase.io.read(out.with_suffix(".traj"), index=":")
    assert len(frames) == 4 and np.isfinite(frames[-1].get_potential_energy())
    assert out.with_suffix(".png").is_file()


def test_md_bond_change_keeps_frames_names_bonds_and_exits_3(small_checkpoint, xyz, tmp_path, caplog, monkeypatch):
    symbols = molecule("CH3CH2OH").get_chemical_symbols()
    exc = BondChangeError("bond 1-2 is 2.4 Å long", broken=[(1, 2)], formed=[(2, 8)])
    _fail_on_call(monkeypatch, 6, exc)  # while computing step 5
    out = tmp_path / "run"
    assert _md(xyz, small_checkpoint, out, steps=20) == EXIT_BOND_CHANGE == 3
    text = caplog.text
    assert "MD stopped at step 5 of 20: the bond graph changed" in text
    assert f"broken: {symbols[1]}1-{symbols[2]}2" in text and f"formed: {symbols[2]}2-{symbols[8]}8" in text
    assert "bond 1-2 is 2.4 Å long" in text and "frames up to step 4" in text
    assert _steps(out.with_suffix(".csv")) == [0, 2, 4]
    assert len(ase.io.read(out.with_suffix(".traj"), index=":")) == 3
    failed = ase.io.read(tmp_path / "run_bond_change.xyz")
    assert failed.get_chemical_symbols() == symbols
    # the next run to the same --out is refused (the bond-change geometry included), then replaces it all
    caplog.clear()
    monkeypatch.undo()
    assert _md(xyz, small_checkpoint, out) == 2 and "run_bond_change.xyz" in caplog.text
    assert _md(xyz, small_checkpoint, out, "--overwrite") == 0
    assert not (tmp_path / "run_bond_change.xyz").exists()


def test_md_stopped_before_any_frame(small_checkpoint, xyz, tmp_path, caplog, monkeypatch):
    _fail_on_call(monkeypatch, 1, KeyboardInterrupt())  # the structure check before the first step
    out = tmp_path / "run"
    assert _md(xyz, small_checkpoint, out) == EXIT_INTERRUPTED
    assert "no frame was written" in caplog.text and not out.with_suffix(".csv").exists()
    assert not out.with_suffix(".png").exists()


def test_run_md_without_stop_on_raises_but_closes_files(small_checkpoint, ethanol, tmp_path, monkeypatch):
    _fail_on_call(monkeypatch, 4, KeyboardInterrupt())
    ethanol.calc = EMGPCalculator(model=small_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        run_md(ethanol, tmp_path / "lib", steps=10, interval=1, progress=False)
    assert _steps(tmp_path / "lib.csv") == [0, 1, 2]
    assert len(ase.io.read(tmp_path / "lib.traj", index=":")) == 3
    assert ethanol.constraints == []  # Langevin's FixCom removed even so


def test_run_md_stop_on_returns_partial_result(small_checkpoint, ethanol, tmp_path, monkeypatch):
    exc = BondChangeError("changed", broken=[(0, 1)], formed=[])
    _fail_on_call(monkeypatch, 4, exc)
    ethanol.calc = EMGPCalculator(model=small_checkpoint)
    res = run_md(ethanol, tmp_path / "lib", steps=10, interval=2, progress=False, stop_on=(BondChangeError,))
    assert res.stopped_by is exc and res.steps == 2 and res.last_frame_step == 2
