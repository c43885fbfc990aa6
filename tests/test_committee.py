"""The committee calculator: mean of its members, their spread as an uncertainty."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import molecule
from conftest import make_small_model

from emgp_md.calculator import EMGPCalculator
from emgp_md.committee import CommitteeCalculator, force_disagreement


def test_committee_mean_and_spread() -> None:
    models = [make_small_model(seed=s, energy_scale=10.0).eval() for s in (1, 2, 3)]
    atoms = molecule("CH3CH2OH")
    atoms.calc = CommitteeCalculator(models, dtype="float64")
    e, f = atoms.get_potential_energy(), atoms.get_forces()
    singles = []
    for m in models:
        a = atoms.copy()
        a.calc = EMGPCalculator(model=m, dtype="float64")
        singles.append((a.get_potential_energy(), a.get_forces()))
    es, fs = np.array([s[0] for s in singles]), np.array([s[1] for s in singles])
    assert e == pytest.approx(es.mean(), abs=1e-10)
    np.testing.assert_allclose(f, fs.mean(axis=0), atol=1e-10)
    res = atoms.calc.results
    assert res["energy_std"] == pytest.approx(es.std(), abs=1e-10)
    np.testing.assert_allclose(res["forces_std"], fs.std(axis=0), atol=1e-10)
    assert res["force_disagreement"] == pytest.approx(force_disagreement(fs).max(), abs=1e-12)
    assert res["force_disagreement"] > 0
    atoms.positions[0] += 0.01  # a new geometry: recomputed, members keep their frozen graphs
    assert atoms.get_potential_energy() != e


def test_identical_members_agree() -> None:
    m = make_small_model(seed=4).eval()
    atoms = molecule("CH3OH")
    atoms.calc = CommitteeCalculator([m, m], dtype="float64")
    atoms.get_potential_energy()
    assert atoms.calc.results["force_disagreement"] == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="at least two"):
        CommitteeCalculator([m])
