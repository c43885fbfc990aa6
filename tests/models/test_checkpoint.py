"""Checkpoint files: round trip, atomic writes, clear errors."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch
from conftest import make_small_model, topo_of

from emgp_md.atomic import atomic_torch_save, atomic_write_text, remove_stale_temp_files
from emgp_md.config import ModelConfig
from emgp_md.data.graph import collate
from emgp_md.errors import ModelIntegrityError
from emgp_md.models.checkpoint import (
    FORMAT,
    FORMAT_VERSION,
    content_hash,
    load_checkpoint,
    make_metadata,
    read_checkpoint,
    safe_torch_load,
    save_checkpoint,
    write_checkpoint,
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


def test_atomic_torch_save_leaves_no_temp_files(tmp_path):
    path = tmp_path / "obj.pt"
    atomic_torch_save({"x": torch.arange(3)}, path)
    atomic_torch_save({"x": torch.arange(4)}, path)  # overwrite
    assert [p.name for p in tmp_path.iterdir()] == ["obj.pt"]
    assert torch.equal(torch.load(path, weights_only=True)["x"], torch.arange(4))


def test_atomic_torch_save_failure_keeps_old_file(tmp_path):
    path = tmp_path / "obj.pt"
    atomic_torch_save({"x": torch.arange(3)}, path)
    with pytest.raises((pickle.PicklingError, AttributeError), match="pickle"):
        atomic_torch_save({"x": lambda: None}, path)  # unpicklable
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
    write_checkpoint(path, raw["state_dict"], meta)  # consistent hash: only the architecture is wrong
    with pytest.raises(ValueError, match="does not match its declared architecture"):
        load_checkpoint(path)


# --------------------------------------------------------------------------- integrity
def _rewrite_raw(path, **changes):
    """Re-save the raw file dict of ``path`` with ``changes`` (its content hash left as it was)."""
    raw = torch.load(path, weights_only=True)
    raw.update(changes)
    torch.save(raw, path)
    return raw


def test_checkpoint_records_content_hash(tmp_path):
    path, _, _ = _save(tmp_path)
    raw = torch.load(path, weights_only=True)
    assert raw["format_version"] == FORMAT_VERSION == 2
    assert raw["content_sha256"] == content_hash(raw["state_dict"], raw["metadata_json"])
    assert "content_sha256" not in json.loads(raw["metadata_json"])


def test_content_hash_sees_every_byte():
    state = {"a": torch.zeros(3), "b": torch.ones(2, 2)}
    ref = content_hash(state, "{}")
    assert content_hash(dict(reversed(state.items())), "{}") == ref  # key order of the dict is irrelevant
    assert content_hash(state, '{"x": 1}') != ref
    assert content_hash({**state, "a": torch.tensor([0.0, 0.0, 1e-30])}, "{}") != ref
    assert content_hash({**state, "b": torch.ones(4)}, "{}") != ref  # same bytes, other shape
    assert content_hash({**state, "b": torch.ones(2, 2, dtype=torch.float64)}, "{}") != ref
    assert content_hash({"a": torch.zeros(3), "c": torch.ones(2, 2)}, "{}") != ref


def test_flipped_bytes_are_refused(tmp_path):
    """64 bytes flipped mid-file load silently with torch; the content hash refuses them."""
    path, _, _ = _save(tmp_path)
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid : mid + 64] = bytes(b ^ 0xFF for b in data[mid : mid + 64])
    path.write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError, match=r"m\.pt.*(corrupt or was modified|corrupt or not a torch file)"):
        load_checkpoint(path)


def test_edited_weight_is_refused(tmp_path):
    path, _, _ = _save(tmp_path)
    raw = torch.load(path, weights_only=True)
    key = min(raw["state_dict"])
    raw["state_dict"][key].view(-1)[0] += 1.0
    torch.save(raw, path)
    with pytest.raises(ModelIntegrityError, match=r"corrupt or was modified: its content hashes to [0-9a-f]{64}"):
        read_checkpoint(path)


def test_edited_metadata_is_refused(tmp_path):
    path, _, _ = _save(tmp_path)
    raw = torch.load(path, weights_only=True)
    _rewrite_raw(path, metadata_json=raw["metadata_json"].replace("kcal/mol", "eV"))
    with pytest.raises(ModelIntegrityError, match="corrupt or was modified"):
        read_checkpoint(path)


def test_version2_without_hash_is_refused(tmp_path):
    path, _, _ = _save(tmp_path)
    raw = torch.load(path, weights_only=True)
    del raw["content_sha256"]
    torch.save(raw, path)
    with pytest.raises(ModelIntegrityError, match="no content hash"):
        read_checkpoint(path)


def test_version1_without_hash_loads_with_warning(tmp_path, caplog):
    path, model, _ = _save(tmp_path)
    raw = torch.load(path, weights_only=True)
    del raw["content_sha256"]
    raw["format_version"] = 1
    torch.save(raw, path)
    with caplog.at_level("WARNING", logger="emgp_md.models.checkpoint"):
        loaded, _ = load_checkpoint(path)
    assert "no content hash" in caplog.text and "m.pt" in caplog.text
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weight_is_refused_naming_the_tensor(tmp_path, bad):
    model = make_small_model(seed=3)
    key = min(k for k, v in model.state_dict().items() if v.is_floating_point() and v.numel() > 1)
    with torch.no_grad():
        model.state_dict()[key].view(-1)[1] = bad
    path = tmp_path / "nan.pt"
    save_checkpoint(path, model, make_metadata(CFG, [1, 6, 8], "kcal/mol"))  # written (with a warning), not loadable
    with pytest.raises(ModelIntegrityError, match=rf"nan\.pt.*non-finite.*{key}"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m.pop("model"), "no 'model' key"),
        (lambda m: m.pop("species"), "no 'species' key"),
        (lambda m: m.update(species="CHO"), "'species' is a str"),
        (lambda m: m.update(species=[1, "C"]), "atomic numbers"),
        (lambda m: m.update(units={"length": "Angstrom"}), "'energy' unit"),
        (lambda m: m.update(normalisation={"energy_scale": "1", "energy_shift": 0.0}), "'energy_scale'"),
        (lambda m: m.update(normalisation={"energy_scale": 1.0}), "'energy_shift'"),
        (lambda m: m.update(topology=[1, 2]), "'topology'"),
        (lambda m: m["model"].update(hidden_nff=3), "not a valid model configuration.*hidden_nff"),
    ],
)
def test_bad_metadata_names_file_and_key(tmp_path, edit, message):
    path, _, _ = _save(tmp_path, filename="badmeta.pt")
    raw = torch.load(path, weights_only=True)
    meta = json.loads(raw["metadata_json"])
    edit(meta)
    write_checkpoint(path, raw["state_dict"], meta)
    with pytest.raises(ModelIntegrityError, match=rf"badmeta\.pt.*{message}"):
        load_checkpoint(path)


def test_metadata_not_an_object(tmp_path):
    path, _, _ = _save(tmp_path, filename="list.pt")
    raw = torch.load(path, weights_only=True)
    write_checkpoint(path, raw["state_dict"], [1, 2])  # type: ignore[arg-type]
    with pytest.raises(ModelIntegrityError, match=r"list\.pt.*not a JSON object"):
        read_checkpoint(path)


def test_unsafe_pickle_refused_without_weights_only_hint(tmp_path):
    import argparse

    path = tmp_path / "pickled.pt"
    torch.save({"format": FORMAT, "args": argparse.Namespace(a=1)}, path)
    with pytest.raises(ModelIntegrityError, match="pickled.pt") as info:
        load_checkpoint(path)
    text = str(info.value)
    assert "argparse.Namespace" in text  # torch's diagnosis is kept
    for hint in ("weights_only", "safe_globals", "trust"):
        assert hint not in text, text
    with pytest.raises(ModelIntegrityError) as info:
        safe_torch_load(path, what="training state")
    assert str(info.value).startswith("training state") and "weights_only" not in str(info.value)


def test_remove_stale_temp_files(tmp_path):
    (tmp_path / ".state.pt.abc123.tmp").write_bytes(b"half")
    (tmp_path / ".config.json.x.tmp").write_text("{")
    (tmp_path / "state.pt").write_bytes(b"keep")
    (tmp_path / "notes.tmp").write_text("not ours: no leading dot")
    removed = remove_stale_temp_files(tmp_path)
    assert sorted(p.name for p in removed) == [".config.json.x.tmp", ".state.pt.abc123.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.tmp", "state.pt"]


def test_atomic_write_text(tmp_path):
    path = tmp_path / "sub" / "config.json"
    atomic_write_text(path, "{}")
    atomic_write_text(path, '{"a": 1}')
    assert path.read_text() == '{"a": 1}' and [p.name for p in path.parent.iterdir()] == ["config.json"]


def test_moved_atomic_helpers_warn() -> None:
    import emgp_md.models.checkpoint as checkpoint_mod

    with pytest.warns(FutureWarning, match="emgp_md.atomic"):
        assert checkpoint_mod.atomic_write_text is atomic_write_text
    with pytest.warns(FutureWarning, match="emgp_md.atomic.atomic_torch_save"):
        assert checkpoint_mod.atomic_save is atomic_torch_save
    with pytest.raises(AttributeError):
        checkpoint_mod.no_such_name  # noqa: B018
