"""Strict typed configuration loading."""

from __future__ import annotations

from pathlib import Path

import pytest

from emgp_md.config import FinetuneConfig, MDConfig, ModelConfig, from_dict, load_yaml, to_dict

REPO = Path(__file__).resolve().parents[1]
WORKFLOW_CONFIGS = sorted((REPO / "workflows" / "configs").glob("*.yaml"))


def test_from_dict_builds_nested():
    cfg = from_dict(FinetuneConfig, {"epochs": 3, "model": {"hidden_nf": 8, "n_layers": 1}})
    assert cfg.epochs == 3
    assert isinstance(cfg.model, ModelConfig) and (cfg.model.hidden_nf, cfg.model.n_layers) == (8, 1)
    assert cfg.model.head == "atomwise"  # defaults kept for keys not given
    assert from_dict(FinetuneConfig, None) == FinetuneConfig()


def test_unknown_top_level_key_named():
    with pytest.raises(ValueError, match="bogus_key"):
        from_dict(FinetuneConfig, {"epochs": 3, "bogus_key": 1})


def test_unknown_nested_model_key_named():
    with pytest.raises(ValueError, match="ModelConfig.*hidden"):
        from_dict(FinetuneConfig, {"model": {"hidden": 64}})


def test_non_mapping_rejected():
    with pytest.raises(ValueError, match="mapping"):
        from_dict(FinetuneConfig, {"model": [1, 2]})


def test_round_trip():
    cfg = FinetuneConfig(data="x.npz", epochs=7, model=ModelConfig(hidden_nf=32))
    assert from_dict(FinetuneConfig, to_dict(cfg)) == cfg
    assert from_dict(MDConfig, to_dict(MDConfig(steps=5))) == MDConfig(steps=5)


def test_load_yaml_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data: a.npz\nepochs: 4\nmodel:\n  hidden_nf: 8\n")
    cfg = load_yaml(FinetuneConfig, path, overrides={"epochs": 9})
    assert (cfg.data, cfg.epochs, cfg.model.hidden_nf) == ("a.npz", 9, 8)
    path.write_text("")
    assert load_yaml(FinetuneConfig, path) == FinetuneConfig()


def test_load_yaml_rejects_unknown_keys(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("data: a.npz\nepoch: 4\n")
    with pytest.raises(ValueError, match="'epoch'"):
        load_yaml(FinetuneConfig, path)
    path.write_text("model:\n  layers: 3\n")
    with pytest.raises(ValueError, match="'layers'"):
        load_yaml(FinetuneConfig, path)


def test_workflow_configs_exist():
    assert WORKFLOW_CONFIGS, "no workflows/configs/*.yaml found"


@pytest.mark.parametrize("path", [p for p in WORKFLOW_CONFIGS if p.name.startswith("finetune")], ids=lambda p: p.name)
def test_workflow_configs_load(path):
    cfg = load_yaml(FinetuneConfig, path)
    assert cfg.data.endswith(".npz")
    assert cfg.epochs > 0 and cfg.n_train > 0 and cfg.n_val > 0
    assert cfg.loss in {"l1", "mse", "mse_then_l1"} and cfg.scheduler in {"plateau", "cosine"}


@pytest.mark.parametrize("path", [p for p in WORKFLOW_CONFIGS if p.name.startswith("pretrain")], ids=lambda p: p.name)
def test_pretrain_configs_load(path):
    from emgp_md.config import PretrainConfig
    from emgp_md.pretrain.objectives import VARIANTS

    cfg = load_yaml(PretrainConfig, path)
    assert cfg.variant in VARIANTS and cfg.model.head == "pooled" and cfg.model.noise_levels == cfg.n_levels
    assert cfg.epochs > 0 and cfg.batch_size > 0 and cfg.efp_weight >= 0 and cfg.inp_weight >= 0


def test_numbers_written_as_strings_are_converted(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data: x.npz\nlr: 5e-4\nepochs: '30'\nmodel:\n  hidden_nf: 16.0\n")
    cfg = load_yaml(FinetuneConfig, path)
    assert cfg.lr == 5e-4 and isinstance(cfg.lr, float)
    assert cfg.epochs == 30 and isinstance(cfg.epochs, int)
    assert cfg.model.hidden_nf == 16 and isinstance(cfg.model.hidden_nf, int)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("lr: fast\n", r"FinetuneConfig.lr: expected .*'fast'"),
        ("epochs: 2.5\n", r"FinetuneConfig.epochs: expected .*2.5"),
        ("model:\n  attention: 'yes'\n", r"ModelConfig.attention: expected .*'yes'"),
        ("split: atoms\n", r"FinetuneConfig.split: 'atoms' is not one of \['frames', 'molecules'\]"),
        ("energy_unit: kcal\n", r"FinetuneConfig.energy_unit: .*unknown energy unit 'kcal'"),
        ("data_format: hdf5\n", r"FinetuneConfig.data_format: 'hdf5' is not one of"),
    ],
)
def test_wrong_types_and_options_are_refused_at_load_naming_the_key(tmp_path, text, message):
    path = tmp_path / "c.yaml"
    path.write_text("data: x.npz\n" + text)
    with pytest.raises(ValueError, match=message):
        load_yaml(FinetuneConfig, path)
