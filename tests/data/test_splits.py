"""Seeded splits by frame and by molecule (issue #14)."""

from __future__ import annotations

import numpy as np
import pytest

from emgp_md.data.frames import Dataset, Frames
from emgp_md.data.splits import molecule_keys, split_frames, split_molecules


def _group(z: list[int], n: int, offset: float) -> Frames:
    a = len(z)
    return Frames(
        z=np.array(z),
        coords=np.zeros((n, a, 3)) + np.arange(a)[None, :, None],
        energies=np.arange(n) + offset,
        forces=np.zeros((n, a, 3)),
        source="t",
        energy_unit="eV",
    )


def _dataset() -> Dataset:
    # molecules by atom order: A (two groups: same atom order, other bonds), B, C, D
    groups = [_group([8, 1, 1], 4, 0), _group([6, 1, 1, 1, 1], 3, 10), _group([8, 1, 1], 2, 20)]
    groups += [_group([7, 1, 1, 1], 5, 30), _group([6, 8], 1, 40)]
    return Dataset(groups, "eV", "t")


def test_split_frames_is_disjoint_and_seeded():
    data = _dataset()
    tr, va, te = split_frames(data, None, 3, 4, seed=1)
    assert (len(tr), len(va), len(te)) == (len(data) - 7, 3, 4)
    all_e = np.concatenate([tr.energies(), va.energies(), te.energies()])
    assert sorted(all_e) == sorted(data.energies())
    again = split_frames(data, None, 3, 4, seed=1)
    np.testing.assert_array_equal(again[1].energies(), va.energies())
    assert split_frames(data, 5, 2)[2] is None


def test_split_molecules_keeps_each_molecule_on_one_side():
    data = _dataset()
    for seed in range(6):
        tr, va, te = split_molecules(data, 1, 1, seed)
        sides = [set(molecule_keys(s)) for s in (tr, va, te)]
        assert not (sides[0] & sides[1] or sides[0] & sides[2] or sides[1] & sides[2])
        assert len(sides[1]) == 1 and len(sides[2]) == 1 and len(sides[0]) == 2
        assert len(tr) + len(va) + len(te) == len(data)


def test_split_molecules_refuses_when_nothing_is_left_to_train():
    with pytest.raises(ValueError, match="4 distinct molecules"):
        split_molecules(_dataset(), 2, 2, 0)
