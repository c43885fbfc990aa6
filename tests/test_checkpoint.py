"""Checkpoint files: round trip, atomic writes, clear errors."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch
from conftest import make_small_model, topo_of

from emgp_md.config import ModelConfig
from emgp_md.data.graph import collate
from emgp_md.models.checkpoint import (
    FORMAT,
    FORMAT_VERSION,
    atomic_save,
    load_checkpoint,
    make_metadata,
    read_checkpoint,
    save_checkpoint,
)

CFG = ModelConfig(hidden_nf=16, n_layers=2)


def _save(tmp_path, filename="m.pt", **meta_extra):
    model = make_small_model(seed=11, energy_scale=1.7, energy_shift=-321.0)
    meta = make_metadata(CFG, species=[8, 1, 6], energy_unit="kcal/mol", **meta_extra)
    path = tmp_path / filename
    save_checkpoint(path, model, meta)
    return path, model, meta


def test_round_trip_energies_and_metadata(tmp_path, ethanol):
    topo = topo_of(ethanol)
    path, model, meta = _save(tmp_path, filename="sub/dir/m.pt", topology=topo.to_dict(), name="rt", metrics={"a": 1.0})
    loaded, meta2 = load_checkpoint(path)
    assert not loaded.training
    assert meta2["species"] == [1, 6, 8]
    assert meta2["units"] == {"energy": "kcal/mol", "length": "Angstrom"}
    assert meta2["normalisation"] == {"energy_scale": 1.7, "energy_shift": -321.0}
    assert meta2["topology"] == topo.to_dict() and meta2["name"] == "rt" and meta2["metrics"] == {"a": 1.0}
    assert meta2["model"] == meta["model"]
    assert (loaded.energy_scale, loaded.energy_shift) == (1.7, -321.0)
    g = collate([topo], [ethanol.positions], torch.float32)
    with torch.no_grad():
        assert torch.equal(loaded(g), model(g))
        assert torch.equal(loaded.total_energy(loaded(g)), model.total_energy(model(g)))
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_weights_saved_as_float32(tmp_path):
    model = make_small_model(seed=1).double()
    path = tmp_path / "m.pt"
    save_checkpoint(path, model, make_metadata(CFG, [1], "eV"))
    state, _ = read_checkpoint(path)
    assert all(v.dtype == torch.float32 for v in state.values())


def test_make_metadata_rejects_non_json():
    with pytest.raises(TypeError):
        make_metadata(CFG, [1], "eV", bad=object())


def test_atomic_save_leaves_no_temp_files(tmp_path):
    path = tmp_path / "obj.pt"
    atomic_save({"x": torch.arange(3)}, path)
    atomic_save({"x": torch.arange(4)}, path)  # overwrite
    assert [p.name for p in tmp_path.iterdir()] == ["obj.pt"]
    assert torch.equal(torch.load(path, weights_only=True)["x"], torch.arange(4))


def test_atomic_save_failure_keeps_old_file(tmp_path):
    path = tmp_path / "obj.pt"
    atomic_save({"x": torch.arange(3)}, path)
    with pytest.raises((pickle.PicklingError, AttributeError), match="pickle"):
        atomic_save({"x": lambda: None}, path)  # unpicklable
    assert [p.name for p in tmp_path.iterdir()] == ["obj.pt"]
    assert torch.equal(torch.load(path, weights_only=True)["x"], torch.arange(3))


def test_missing_file_names_path(tmp_path):
    path = tmp_path / "nope.pt"
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_checkpoint(path)


def test_corrupt_file(tmp_path):
    path = tmp_path / "corrupt.pt"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(ValueError, match="corrupt"):
        load_checkpoint(path)


def test_truncated_checkpoint(tmp_path):
    path, _, _ = _save(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="corrupt"):
        load_checkpoint(path)


def test_authors_raw_format_points_to_import_official(tmp_path):
    path = tmp_path / "raw.pt"
    torch.save({"model": {"module.sigmas": torch.ones(3)}}, path)
    with pytest.raises(ValueError, match="import-official"):
        load_checkpoint(path)


def test_foreign_dict_rejected(tmp_path):
    path = tmp_path / "foreign.pt"
    torch.save({"weights": torch.ones(2)}, path)
    with pytest.raises(ValueError, match="not an emgp-md checkpoint"):
        load_checkpoint(path)


def test_wrong_format_version(tmp_path):
    path = tmp_path / "v99.pt"
    torch.save({"format": FORMAT, "format_version": FORMAT_VERSION + 98, "metadata_json": "{}", "state_dict": {}}, path)
    with pytest.raises(ValueError, match=f"format version {FORMAT_VERSION + 98}"):
        load_checkpoint(path)


def test_architecture_mismatch(tmp_path):
    path, _, _ = _save(tmp_path)
    raw = torch.load(path, weights_only=True)
    meta = json.loads(raw["metadata_json"])
    meta["model"]["hidden_nf"] = 32
    raw["metadata_json"] = json.dumps(meta)
    torch.save(raw, path)
    with pytest.raises(ValueError, match="does not match"):
        load_checkpoint(path)
