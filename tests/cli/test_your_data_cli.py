"""``emgp-md finetune --data`` / ``emgp-md evaluate`` on user files (issue #14 items 3, 5, 6)."""

from __future__ import annotations

import json

import ase.io
import numpy as np
import pytest
from ase.build import molecule
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator

from emgp_md.calculator import EMGPCalculator
from emgp_md.cli import main
from emgp_md.models.checkpoint import load_checkpoint

TINY = "model:\n  hidden_nf: 8\n  n_layers: 1\nbatch_size: 8\n"


def _frames(names: list[str], per: int, seed: int = 0) -> list:
    """EMT-labelled jiggled copies of ASE test molecules (a stand-in for DFT frames, eV)."""
    rng = np.random.default_rng(seed)
    frames = []
    for name in names:
        for _ in range(per):
            atoms = molecule(name)
            atoms.positions += rng.normal(0.0, 0.04, atoms.positions.shape)
            atoms.calc = EMT()
            e, f = atoms.get_potential_energy(), atoms.get_forces()
            atoms.calc = SinglePointCalculator(atoms, energy=e, forces=f)
            frames.append(atoms)
    return frames


@pytest.fixture
def tiny_config(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    return path


def test_many_molecules_held_out_by_molecule_then_evaluated(tmp_path, tiny_config, capsys):
    data = tmp_path / "mix.extxyz"
    ase.io.write(data, _frames(["H2O", "CH4", "CH3OH", "C2H6", "CH3CH2OH"], 6))
    out = tmp_path / "run"
    argv = ["finetune", str(tiny_config), "--data", str(data), "--split", "molecules", "--n-val", "1"]
    assert main([*argv, "--n-test", "1", "--epochs", "2", "--pretrained", "none", "--out", str(out)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["finished"]
    test = ase.io.read(out / "test_frames.xyz", index=":")
    assert len(test) == 6 and len({a.get_chemical_formula() for a in test}) == 1  # one whole molecule
    held_out = test[0].copy()
    held_out.calc = EMGPCalculator(str(out / "model.pt"))
    assert np.isfinite(held_out.get_potential_energy())  # a molecule it never saw, of its elements
    plot = tmp_path / "parity.png"
    assert main(["evaluate", str(out / "model.pt"), str(out / "test_frames.xyz"), "--plot", str(plot)]) == 0
    printed = capsys.readouterr().out
    assert test[0].get_chemical_formula() in printed and "force MAE" in printed
    assert plot.is_file() and plot.stat().st_size > 1000
    stretched = _frames(["CH4"], 2, seed=4)
    stretched[0].positions[1] *= 3.0  # an H far out (stale labels: only the graph handling is under test)
    ase.io.write(tmp_path / "stretched.extxyz", stretched)
    assert main(["evaluate", str(out / "model.pt"), str(tmp_path / "stretched.extxyz"), "--plot", "none"]) == 0


def test_held_out_element_missing_from_training_is_refused(tmp_path, tiny_config, caplog):
    data, val = tmp_path / "mix.extxyz", tmp_path / "val.extxyz"
    ase.io.write(data, _frames(["CH4", "C2H6"], 4))
    ase.io.write(val, _frames(["NH3"], 4))
    out = tmp_path / "run"
    argv = ["finetune", str(tiny_config), "--data", str(data), "--val", str(val)]
    assert main([*argv, "--pretrained", "none", "--out", str(out)]) == 2
    assert "element(s) N that no training frame has" in caplog.text and "--seed" in caplog.text
    assert not out.exists()


def test_unit_declared_on_the_command_line_reaches_the_model(tmp_path, tiny_config, capsys):
    data = tmp_path / "w.extxyz"
    ase.io.write(data, _frames(["H2O"], 12))
    out = tmp_path / "run"
    argv = ["finetune", str(tiny_config), "--data", str(data), "--energy-unit", "kcal/mol", "--n-val", "4"]
    assert main([*argv, "--epochs", "1", "--pretrained", "none", "--out", str(out)]) == 0
    _, meta = load_checkpoint(out / "model.pt")
    assert meta["units"]["energy"] == "kcal/mol"


@pytest.mark.parametrize(
    ("make", "extra", "message"),
    [
        ("pickled", [], "pickled Python objects"),
        ("plain_xyz", [], "no energy under the key 'energy'"),
        ("npz_no_unit", [], "carries no energy unit"),
        ("labelled", ["--energy-key", "REF_energy"], "'REF_energy'"),
    ],
)
def test_unreadable_data_fails_before_any_output_folder(tmp_path, tiny_config, caplog, make, extra, message):
    frames = _frames(["H2O"], 3)
    path = tmp_path / ("d.npz" if make in ("pickled", "npz_no_unit") else "d.xyz")
    if make == "pickled":
        np.savez(path, R=np.array([{"x": 1}], dtype=object))
    elif make == "npz_no_unit":
        np.savez(
            path, R=np.stack([a.positions for a in frames]), z=frames[0].numbers, E=np.zeros(3), F=np.zeros((3, 3, 3))
        )
    elif make == "plain_xyz":
        ase.io.write(path, [a.copy() for a in frames], format="xyz")
    else:
        ase.io.write(path, frames)
    out = tmp_path / "run"
    assert main(["finetune", str(tiny_config), "--data", str(path), *extra, "--out", str(out)]) == 2
    assert message in caplog.text
    assert not out.exists()
