"""rMD17 loaders on the tiny fixtures of tests/fixtures (per-split and official archive layouts)."""

from __future__ import annotations

import numpy as np
import pytest

from emgp_md.data.rmd17 import (
    load_archive_split,
    load_frames,
    read_split_indices,
    split_path,
    train_val_split,
)


@pytest.fixture(scope="module")
def raw(tiny_rmd17):
    with np.load(tiny_rmd17) as d:
        return {k: d[k] for k in d.files}


def test_per_split_layout(tests_data, raw):
    path = split_path("ethanol", "train", 1, root=tests_data / "rmd17")
    assert path.name == "rmd17_ethanol_train_01.npz"
    frames = load_frames(path)
    assert len(frames) == 24
    assert frames.z.dtype == np.int64 and frames.z.tolist() == [6, 6, 8, 1, 1, 1, 1, 1, 1]
    assert frames.coords.shape == (24, 9, 3) and frames.forces.shape == (24, 9, 3)
    assert frames.coords.dtype == frames.energies.dtype == frames.forces.dtype == np.float64
    np.testing.assert_array_equal(frames.coords, raw["coords"])
    np.testing.assert_array_equal(frames.energies, raw["energies"])
    np.testing.assert_array_equal(frames.forces, raw["forces"])
    assert str(path) in frames.source


def test_md17_label_set_picks_old_labels(tiny_rmd17, raw):
    frames = load_frames(tiny_rmd17, label_set="md17")
    np.testing.assert_array_equal(frames.energies, raw["old_energies"])
    np.testing.assert_array_equal(frames.forces, raw["old_forces"])
    np.testing.assert_array_equal(frames.coords, raw["coords"])
    assert not np.allclose(frames.energies, raw["energies"])  # the two label sets differ
    with pytest.raises(ValueError, match="label_set"):
        load_frames(tiny_rmd17, label_set="ccsd")


def test_indices_and_subset(tiny_rmd17, raw):
    frames = load_frames(tiny_rmd17, indices=np.array([5, 2, 20]))
    np.testing.assert_array_equal(frames.energies, raw["energies"][[5, 2, 20]])
    np.testing.assert_array_equal(frames.coords, raw["coords"][[5, 2, 20]])
    assert "[3 frames]" in frames.source


def test_archive_layout(tests_data):
    root = tests_data / "rmd17_archive"
    train_idx = read_split_indices(root / "splits" / "index_train_01.csv")
    assert train_idx.tolist() == [7, 0, 3, 11, 5]
    frames = load_archive_split(root, "ethanol", "train", 1)
    with np.load(root / "npz_data" / "rmd17_ethanol.npz") as d:
        np.testing.assert_array_equal(frames.coords, d["coords"][train_idx])
        np.testing.assert_array_equal(frames.energies, d["energies"][train_idx])
        test = load_archive_split(root, "ethanol", "test", 1, label_set="md17")
        np.testing.assert_array_equal(test.forces, d["old_forces"][[1, 2, 9]])
    assert len(frames) == 5 and len(test) == 3


def test_read_split_indices_header_and_commas(tmp_path):
    path = tmp_path / "idx.csv"
    path.write_text("index\n4,\n 10\n\n0\n")
    assert read_split_indices(path).tolist() == [4, 10, 0]


def test_bad_paths(tmp_path, tests_data):
    with pytest.raises(FileNotFoundError, match="nothing.npz"):
        load_frames(tmp_path / "nothing.npz")
    with pytest.raises(FileNotFoundError):
        load_archive_split(tests_data / "rmd17_archive", "aspirin")
    with pytest.raises(ValueError, match="unknown rMD17 molecule"):
        split_path("caffeine")


def test_missing_keys(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, R=np.zeros((2, 3, 3)))
    with pytest.raises(ValueError, match="nuclear_charges"):
        load_frames(path)


def test_train_val_split_disjoint_and_seeded():
    train, val = train_val_split(100, 60, 30, seed=1)
    assert len(train) == 60 and len(val) == 30
    assert not set(train) & set(val)
    assert np.all(np.diff(train) > 0) and np.all(np.diff(val) > 0)
    assert train.min() >= 0 and max(train.max(), val.max()) < 100
    t2, v2 = train_val_split(100, 60, 30, seed=1)
    np.testing.assert_array_equal(train, t2)
    np.testing.assert_array_equal(val, v2)
    t3, _ = train_val_split(100, 60, 30, seed=2)
    assert not np.array_equal(train, t3)


def test_train_val_split_too_many():
    with pytest.raises(ValueError, match="do not fit"):
        train_val_split(10, 8, 3, seed=0)
