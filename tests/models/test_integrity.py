"""Model integrity: shipped-file hashes, damaged checkpoints through the CLI, one calculator per thread."""

from __future__ import annotations

import json
import shutil
import threading

import pytest
import torch
from ase.build import molecule

import emgp_md
from emgp_md import EMGPCalculator
from emgp_md import pretrained as pretrained_pkg
from emgp_md.cli import main
from emgp_md.errors import ModelIntegrityError
from emgp_md.models.checkpoint import FORMAT_VERSION, content_hash, load_checkpoint


def _flip_middle(path, n_bytes: int = 64) -> None:
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid : mid + n_bytes] = bytes(b ^ 0xFF for b in data[mid : mid + n_bytes])
    path.write_bytes(bytes(data))


# --------------------------------------------------------------------------- shipped models
def test_every_shipped_model_matches_its_index_hash_and_content_hash():
    models = emgp_md.available_models()
    if not models:
        pytest.skip("no shipped models")
    for name, entry in models.items():
        path = pretrained_pkg.model_path(name)  # verifies the file's SHA-256
        assert entry["sha256"] == pretrained_pkg.file_sha256(path)
        raw = torch.load(path, weights_only=True)
        assert raw["format_version"] == FORMAT_VERSION, name
        assert raw["content_sha256"] == content_hash(raw["state_dict"], raw["metadata_json"]), name


@pytest.fixture
def copied_shipped(tmp_path, monkeypatch):
    """The shipped ethanol model and index in a temporary package-data folder."""
    if "ethanol" not in emgp_md.available_models():
        pytest.skip("no shipped ethanol model")
    folder = tmp_path / "pkg"
    folder.mkdir()
    index = {"ethanol": emgp_md.available_models()["ethanol"]}
    shutil.copy(pretrained_pkg.model_path("ethanol"), folder / "ethanol.pt")
    (folder / "index.json").write_text(json.dumps(index))
    monkeypatch.setattr(pretrained_pkg, "_folder", lambda: folder)
    return folder


def test_damaged_shipped_model_is_refused_with_hashes_and_way_out(copied_shipped):
    expected = emgp_md.available_models()["ethanol"]["sha256"]
    _flip_middle(copied_shipped / "ethanol.pt")
    actual = pretrained_pkg.file_sha256(copied_shipped / "ethanol.pt")
    with pytest.raises(ModelIntegrityError) as info:
        EMGPCalculator("ethanol")
    text = str(info.value)
    assert "ethanol.pt" in text and expected in text and actual in text and "Reinstall the emgp-md package" in text
    atoms = molecule("CH3CH2OH")
    atoms.calc = EMGPCalculator()  # picked by formula: the same check
    with pytest.raises(ModelIntegrityError, match="Reinstall"):
        atoms.get_potential_energy()


def test_shipped_model_without_recorded_hash_is_refused(copied_shipped):
    index = json.loads((copied_shipped / "index.json").read_text())
    del index["ethanol"]["sha256"]
    (copied_shipped / "index.json").write_text(json.dumps(index))
    with pytest.raises(ModelIntegrityError, match="records no sha256 for ethanol.pt"):
        pretrained_pkg.model_path("ethanol")


def test_rehash_adds_content_hash_to_legacy_files_bit_for_bit(copied_shipped):
    from emgp_md.reproduce.shipping import rehash_shipped

    path = copied_shipped / "ethanol.pt"
    raw = torch.load(path, weights_only=True)
    del raw["content_sha256"]
    raw["format_version"] = 1
    torch.save(raw, path)
    hashes = rehash_shipped(copied_shipped)
    assert hashes["ethanol"] == pretrained_pkg.file_sha256(path)
    new = torch.load(path, weights_only=True)
    assert new["format_version"] == FORMAT_VERSION and new["metadata_json"] == raw["metadata_json"]
    for key, value in raw["state_dict"].items():
        assert new["state_dict"][key].numpy().tobytes() == value.numpy().tobytes(), key
    assert rehash_shipped(copied_shipped) == hashes  # idempotent
    pretrained_pkg.model_path("ethanol")


# --------------------------------------------------------------------------- the CLI on damaged files
def _evaluate(path, data, caplog) -> tuple[int, str]:
    with caplog.at_level("ERROR"):
        rc = main(["evaluate", str(path), str(data)])
    return rc, caplog.text


def test_evaluate_refuses_flipped_bytes(small_checkpoint, tiny_rmd17, caplog):
    _flip_middle(small_checkpoint)
    rc, text = _evaluate(small_checkpoint, tiny_rmd17, caplog)
    assert rc != 0
    assert "tiny.pt" in text and ("corrupt or was modified" in text or "corrupt or not a torch file" in text)
    assert "weights_only" not in text


def test_evaluate_refuses_nan_weight(tmp_path, tiny_rmd17, caplog):
    from conftest import make_small_model

    from emgp_md.config import ModelConfig
    from emgp_md.models.checkpoint import make_metadata, save_checkpoint

    model = make_small_model(seed=5)
    key = next(k for k, v in model.state_dict().items() if v.is_floating_point())
    with torch.no_grad():
        model.state_dict()[key].view(-1)[0] = float("nan")
    path = tmp_path / "nan.pt"
    save_checkpoint(path, model, make_metadata(ModelConfig(hidden_nf=16, n_layers=2), [1, 6, 8], "kcal/mol"))
    with pytest.raises(ModelIntegrityError, match=key):
        load_checkpoint(path)
    rc, text = _evaluate(path, tiny_rmd17, caplog)
    assert rc != 0 and "nan.pt" in text and "non-finite" in text and key in text


# --------------------------------------------------------------------------- threads
def test_one_calculator_refuses_a_second_thread(small_checkpoint, monkeypatch):
    """While one thread computes, a second thread using the same calculator gets a RuntimeError."""
    import emgp_md.calculator as calculator_mod

    inside, release = threading.Event(), threading.Event()
    original = calculator_mod.energy_and_forces

    def slowed(*args, **kwargs):
        inside.set()
        assert release.wait(30)
        return original(*args, **kwargs)

    monkeypatch.setattr(calculator_mod, "energy_and_forces", slowed)
    calc = EMGPCalculator(model=small_checkpoint)
    first, second = molecule("CH3CH2OH"), molecule("CH3CH2OH")
    second.positions[0] += 0.05
    results: dict[str, object] = {}

    def run_first() -> None:
        results["first"] = calc.get_potential_energy(first)

    thread = threading.Thread(target=run_first)
    thread.start()
    assert inside.wait(30)
    with pytest.raises(RuntimeError, match="one EMGPCalculator per thread"):
        calc.get_potential_energy(second)
    release.set()
    thread.join(30)
    assert isinstance(results["first"], float)
    inside.clear()
    release.set()
    assert isinstance(calc.get_potential_energy(second), float)  # free again once the first call is done


def test_separate_calculators_run_in_parallel_threads(small_checkpoint):
    calcs = [EMGPCalculator(model=small_checkpoint) for _ in range(2)]
    energies: list[float] = [0.0, 0.0]

    def work(i: int) -> None:
        atoms = molecule("CH3CH2OH")
        atoms.calc = calcs[i]
        energies[i] = atoms.get_potential_energy()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert energies[0] == pytest.approx(energies[1])
