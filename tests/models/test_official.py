"""Golden tests against the authors' released 3D-EMGP checkpoint (needs ../shared/data).

The released model was pretrained with the Riemann force target and the noise-level (INP) head,
so a correct reimplementation of featurisation, layers and heads must (docs/method.md §2.9):

- recover the noise level from ``[g(X); g(X̃)]`` (INP argmax within ±2 levels for l = 10..40),
- predict forces aligned with the Riemann target ``s(X̃, X)/σ`` and clearly less with the
  Gaussian target ``(X - X̃)/σ``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import molecule

from emgp_md.data.graph import GraphBatch, repeat_topology
from emgp_md.data.topology import topology_from_positions
from emgp_md.models.forces import energy_and_forces
from emgp_md.pretrain.noise import noise_levels, perturb_gaussian, riemann_score

MOLECULES = ["C6H6", "CH3CH2OH"]


@pytest.fixture(scope="module")
def official(official_checkpoint):
    from emgp_md.models.official import import_official

    model, meta = import_official(official_checkpoint)
    return model.double(), meta


def _clean_batch(name: str, n_draws: int) -> GraphBatch:
    atoms = molecule(name)
    topo = topology_from_positions(atoms.numbers, atoms.positions)
    pos = torch.as_tensor(atoms.positions, dtype=torch.float64)
    return repeat_topology(topo, pos.expand(n_draws, -1, -1).clone())


def _noisy(clean: GraphBatch, sigma: float, gen: torch.Generator) -> torch.Tensor:
    return perturb_gaussian(clean.pos, torch.full((clean.pos.shape[0],), sigma, dtype=torch.float64), gen)


def test_import_metadata_and_architecture(official):
    model, meta = official
    assert meta["units"]["energy"] == "arbitrary"
    assert meta["model"]["hidden_nf"] == 128 and meta["model"]["n_layers"] == 7
    assert meta["model"]["head"] == "pooled" and meta["model"]["noise_levels"] == 50
    np.testing.assert_allclose(meta["sigmas_A"], noise_levels().numpy(), rtol=1e-6)
    assert sum(p.numel() for p in model.backbone.parameters()) == 852_103
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == 941_164 - 50  # the released file's count includes the 50 frozen sigmas


@pytest.mark.parametrize("name", MOLECULES)
def test_inp_head_recovers_noise_level(official, name):
    model, _ = official
    sigmas = noise_levels()
    n_draws = 8
    clean = _clean_batch(name, n_draws)
    gen = torch.Generator().manual_seed(2021)
    with torch.no_grad():
        _, pooled_clean = model.energy_and_pooled(clean)
        for level in range(10, 41, 5):
            noisy = clean.with_pos(_noisy(clean, float(sigmas[level]), gen))
            _, pooled_noisy = model.energy_and_pooled(noisy)
            logits = model.noise_head(pooled_clean, pooled_noisy)
            assert logits.shape == (n_draws, 50)
            predicted = logits.argmax(dim=1).double().mean().item()
            assert abs(predicted - level) <= 2.0, (
                f"{name}: level {level} (σ={float(sigmas[level]):.3f} Å) -> {predicted}"
            )


@pytest.mark.parametrize("name", MOLECULES)
def test_forces_follow_riemann_target(official, name):
    model, _ = official
    n_draws = 8
    clean = _clean_batch(name, n_draws)
    gen = torch.Generator().manual_seed(7)
    levels = [s for s in noise_levels().tolist() if 0.1 <= s <= 2.0]
    assert len(levels) >= 15
    cos_rie, cos_gauss = [], []
    for sigma in levels:
        pos = _noisy(clean, sigma, gen)
        _, forces = energy_and_forces(model, clean.with_pos(pos))
        t_rie = riemann_score(pos, clean.pos, clean.batch, clean.n_graphs) / sigma
        t_gauss = (clean.pos - pos) / sigma
        per_mol = lambda t: t.reshape(n_draws, -1)
        cos_rie.append(torch.cosine_similarity(per_mol(forces), per_mol(t_rie), dim=1).mean().item())
        cos_gauss.append(torch.cosine_similarity(per_mol(forces), per_mol(t_gauss), dim=1).mean().item())
    cos_rie, cos_gauss = np.array(cos_rie), np.array(cos_gauss)
    # Benzene reaches 0.99+ at every level; ethanol (filtered out of the pretraining set) averages
    # ~0.97 with single levels down to ~0.9 over 8 draws, hence an average bound plus a per-level floor.
    assert cos_rie.mean() >= 0.93, f"{name}: mean cosine with the Riemann target {cos_rie.mean():.3f}"
    assert cos_rie.min() >= 0.85, f"{name}: per-level cosines {np.round(cos_rie, 3)}"
    assert cos_rie.mean() - cos_gauss.mean() >= 0.1, f"Riemann {cos_rie.mean():.3f} vs Gaussian {cos_gauss.mean():.3f}"
    assert np.all(cos_rie > cos_gauss)


def test_pretrained_backbone_from_raw_file(official, official_checkpoint):
    """Fine-tuning can start from the authors' raw file: same backbone weights as the import."""
    from emgp_md.training.transfer import pretrained_backbone

    model, _ = official
    weights, cfg = pretrained_backbone(official_checkpoint)
    assert (cfg.hidden_nf, cfg.n_layers) == (128, 7)
    reference = model.backbone.state_dict()
    assert set(weights) == set(reference)
    for key, value in weights.items():
        torch.testing.assert_close(value.double(), reference[key], rtol=0, atol=0)


def test_cli_import_official_round_trip(official_checkpoint, tmp_path, official):
    from emgp_md import EMGPCalculator, load_checkpoint
    from emgp_md.cli import main

    out = tmp_path / "official.pt"
    assert main(["import-official", str(official_checkpoint), str(out)]) == 0
    assert out.is_file()
    loaded, meta = load_checkpoint(out)
    assert meta["units"]["energy"] == "arbitrary"
    assert meta["name"] == "3d-emgp-official"
    reference, _ = official
    for key, value in loaded.state_dict().items():
        torch.testing.assert_close(value.double(), reference.state_dict()[key], rtol=0, atol=0)

    atoms = molecule("CH3CH2OH")
    atoms.calc = EMGPCalculator(model=out)
    energy, forces = atoms.get_potential_energy(), atoms.get_forces()
    assert np.isfinite(energy)
    assert forces.shape == (9, 3) and np.all(np.isfinite(forces))


def test_raw_file_rejected_by_load_checkpoint(official_checkpoint):
    from emgp_md import load_checkpoint

    with pytest.raises(ValueError, match="import-official"):
        load_checkpoint(official_checkpoint)
