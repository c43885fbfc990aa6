"""``emgp-md`` command line: help texts, model listing, error exit codes, small end-to-end runs."""

from __future__ import annotations

import json

import ase.io
import numpy as np
import pytest

import emgp_md
from emgp_md.cli import build_parser, main

CORE_SUBCOMMANDS = {"md", "relax", "finetune", "evaluate", "import-official", "models"}
SUBCOMMANDS = sorted(next(a for a in build_parser()._actions if a.dest == "command").choices)


def test_help_exits_zero(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for sub in SUBCOMMANDS:
        assert sub in out


@pytest.mark.parametrize("sub", SUBCOMMANDS)
def test_subcommand_help_exits_zero(sub, capsys):
    with pytest.raises(SystemExit) as info:
        main([sub, "--help"])
    assert info.value.code == 0
    assert f"emgp-md {sub}" in capsys.readouterr().out


def test_md_and_relax_help_state_units_and_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["md", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for text in (
        "(K) (default: 300.0)",
        "(fs) (default: 0.5)",
        "(1/fs) (default: 0.01)",
        "OUT.traj",
        "noise (default: 0)",
        "precision (default: float32)",
    ):
        assert text in out
    assert "(default: None)" not in out and "(default: False)" not in out
    args = build_parser().parse_args(["relax", "ethanol", "--out", "x.xyz"])
    assert args.dtype == "float64" and args.fmax_eV_per_A == 0.01
    assert build_parser().parse_args(["md", "--out", "x"]).dtype == "float32"


def test_parser_has_core_subcommands():
    assert CORE_SUBCOMMANDS <= set(SUBCOMMANDS)


def test_no_subcommand_is_an_error():
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2


def test_models_lists_shipped(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in emgp_md.available_models():
        assert name in out
    assert main(["models", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == emgp_md.available_models()


def test_missing_input_exits_2(tmp_path):
    assert main(["evaluate", str(tmp_path / "none.pt"), str(tmp_path / "none.npz")]) == 2
    assert main(["import-official", str(tmp_path / "none"), str(tmp_path / "out.pt")]) == 2
    assert not (tmp_path / "out.pt").exists()


def test_md_cli_end_to_end(small_checkpoint, ethanol, tmp_path):
    xyz = tmp_path / "ethanol.xyz"
    ase.io.write(xyz, ethanol)
    out = tmp_path / "md" / "run"
    rc = main(
        [
            "md",
            str(xyz),
            "--model",
            str(small_checkpoint),
            "--out",
            str(out),
            "--steps",
            "4",
            "--interval",
            "2",
            "--quiet",
            "--ensemble",
            "nve",
            "--dtype",
            "float64",
        ]
    )
    assert rc == 0
    for suffix in (".traj", ".csv", ".png"):
        assert out.with_suffix(suffix).is_file(), suffix
    frames = ase.io.read(out.with_suffix(".traj"), index=":")
    assert len(frames) == 3 and frames[0].get_chemical_formula() == ethanol.get_chemical_formula()


def test_relax_cli_writes_structure(small_checkpoint, ethanol, tmp_path):
    xyz = tmp_path / "ethanol.xyz"
    ase.io.write(xyz, ethanol)
    out = tmp_path / "relaxed.xyz"
    rc = main(["relax", str(xyz), "--model", str(small_checkpoint), "--out", str(out), "--steps", "3", "--quiet"])
    assert rc in (0, 1)  # 1 = not converged within 3 steps
    relaxed = ase.io.read(out)
    assert len(relaxed) == 9 and not np.allclose(relaxed.positions, ethanol.positions)


def test_unknown_structure_exits_2(small_checkpoint, tmp_path):
    rc = main(["relax", "not-a-molecule", "--model", str(small_checkpoint), "--out", str(tmp_path / "x.xyz")])
    assert rc == 2


def test_finetune_cli(tmp_path, tiny_rmd17, capsys):
    cfg = tmp_path / "ft.yaml"
    cfg.write_text(
        f"data: {tiny_rmd17}\nn_train: 12\nn_val: 4\nbatch_size: 6\nepochs: 5\nmodel:\n  hidden_nf: 8\n  n_layers: 1\n"
    )
    assert main(["finetune", str(cfg), "--out", str(tmp_path / "run"), "--epochs", "1"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["finished"] and result["epochs"] == 1  # --epochs overrides the file
    assert (tmp_path / "run" / "model.pt").is_file()
    bad = tmp_path / "bad.yaml"
    bad.write_text("dataa: x.npz\n")
    assert main(["finetune", str(bad), "--out", str(tmp_path / "bad")]) == 2
