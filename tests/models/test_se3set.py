"""SE3Set backbone: sizes, configuration, physics contracts (float64), hypergraph plumbing through
topologies, batches, checkpoints, the calculator and fine-tuning (pretraining: test_se3set_pretrain.py)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from ase import Atoms
from e3nn import o3

from emgp_md.calculator import EMGPCalculator
from emgp_md.config import FinetuneConfig, ModelConfig, from_dict, to_dict
from emgp_md.data.convert import attach_hypergraph, permute_hypergraph, topology_for_atoms
from emgp_md.data.fragment import PRESETS as FRAGMENT_PRESETS
from emgp_md.data.graph import collate, repeat_topology
from emgp_md.data.hypergraph import rebuild_hypergraph
from emgp_md.data.topology import Topology, topology_from_positions
from emgp_md.models import BACKBONES, build_model, hypergraph_options, needs_hypergraph
from emgp_md.models.base import Backbone
from emgp_md.models.checkpoint import load_checkpoint, make_metadata, save_checkpoint
from emgp_md.models.energy_model import EnergyModel
from emgp_md.models.forces import energy_and_forces
from emgp_md.models.se3set.config import PRESETS, resolve_settings, se3set_model_config
from emgp_md.models.se3set.layers import segment_softmax
from emgp_md.pretrained import reference_atoms
from emgp_md.testing import (
    assert_batch_equals_single,
    assert_e3_invariance,
    assert_forces_match_fd,
    assert_permutation_invariance,
    model_fn,
)


def tiny(seed: int = 0, **overrides: object) -> EnergyModel:
    """Seeded random float32 SE3Set model (preset "tiny") in eval mode."""
    torch.manual_seed(seed)
    return build_model(se3set_model_config("tiny", dict(overrides) or None)).eval()


def with_hypergraph(atoms: Atoms, fragmentation: str = "md17") -> Topology:
    """Distance topology plus the hypergraph frozen from the same geometry."""
    topo = topology_from_positions(atoms.numbers, atoms.positions)
    return attach_hypergraph(topo, atoms.positions, FRAGMENT_PRESETS[fragmentation])


@pytest.fixture(scope="module")
def aspirin() -> Atoms:
    return reference_atoms("aspirin")


# --------------------------------------------------------------------------- sizes and configuration
def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_registered_and_md17_sizes_match_the_authors() -> None:
    """Authors' aspirin model: 6,288,033 parameters, of which 6 × 352 sit in an unused norm (§2.7)."""
    assert "se3set" in BACKBONES and needs_hypergraph(ModelConfig(backbone="se3set"))
    assert not needs_hypergraph(ModelConfig())
    model = build_model(se3set_model_config("md17", {"elements": [1, 6, 8]}))
    bb = model.backbone
    assert _count(model) == 6_288_033 - 6 * 352
    assert _count(model.head) == 263_169 and bb.hidden_nf == 512
    assert (_count(bb.hyperedge_degree), _count(bb.atom_degree), _count(bb.atom_embedding)) == (112_128, 110_976, 512)
    block = bb.blocks[0]
    assert (_count(block.v2e), _count(block.e2v), _count(block.ffn_hyperedge)) == (283_232, 315_104, 166_688)
    assert [_count(b) for b in bb.blocks] == [933_472 - 352] * 5 + [1_132_672 - 352]
    # default vocabulary: all 16 fragmenter elements
    assert _count(build_model(ModelConfig(backbone="se3set"))) == 6_289_249
    assert _count(build_model(ModelConfig(backbone="se3set", se3set_preset="cpu_small"))) == 865_329


def test_configuration_resolution_and_errors() -> None:
    cfg = se3set_model_config("cpu_small", {"n_blocks": 2}, head="pooled", noise_levels=5)
    assert (cfg.hidden_nf, cfg.n_layers, cfg.n_rbf, cfg.n_heads, cfg.cutoff_A) == (128, 2, 32, 4, 9.0)
    assert from_dict(ModelConfig, to_dict(cfg)) == cfg
    assert build_model(cfg).noise_head is not None
    assert resolve_settings("md17") == PRESETS["md17"]
    assert hypergraph_options(cfg) == FRAGMENT_PRESETS["md17"]
    assert hypergraph_options(se3set_model_config("tiny", {"fragmentation": "md22"})).mode == "implicit"
    with pytest.raises(ValueError, match="n_layers=3"):
        build_model(ModelConfig(backbone="se3set", se3set_preset="tiny", n_layers=3))
    with pytest.raises(ValueError, match="se3set_preset"):
        build_model(ModelConfig(backbone="se3set", se3set_preset="huge"))
    with pytest.raises(ValueError, match="n_block"):
        build_model(ModelConfig(backbone="se3set", se3set_overrides={"n_block": 2}))
    with pytest.raises(ValueError, match="irreps_head"):
        resolve_settings("tiny", {"irreps_head": "2x1o"})
    with pytest.raises(ValueError, match="does not use"):
        hypergraph_options(ModelConfig())
    # files of the other backbones do not mention SE3Set (readable by older versions)
    assert "se3set_preset" not in to_dict(ModelConfig(backbone="et"))
    assert to_dict(ModelConfig(backbone="se3set"))["se3set_preset"] == "md17"


def test_segment_softmax_matches_softmax_per_group() -> None:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(9, 2, generator=gen, dtype=torch.float64) * 30
    index = torch.tensor([2, 0, 2, 2, 0, 3, 3, 3, 3])
    out = segment_softmax(logits, index, n_segments=5)  # segments 1 and 4 are empty
    for seg in (0, 2, 3):
        np.testing.assert_allclose(out[index == seg], torch.softmax(logits[index == seg], dim=0), atol=1e-14)


# --------------------------------------------------------------------------- physics contracts
@pytest.mark.parametrize("fragmentation", ["md17", "md22"])
def test_e3_invariance_with_reflections(fragmentation: str, ethanol) -> None:
    """Irreps carry their parity (0e, 1o, 2e), so the energy is invariant under O(3), reflections included."""
    fn = model_fn(tiny(seed=1, fragmentation=fragmentation), with_hypergraph(ethanol, fragmentation))
    _, f = fn(ethanol.positions)
    assert np.abs(f).max() > 1e-3, "forces vanish: the invariance test would be vacuous"
    assert_e3_invariance(fn, ethanol.positions, seed=7, n_trials=4, atol=1e-10)


def test_permutation_invariance(ethanol) -> None:
    model, topo = tiny(seed=2), with_hypergraph(ethanol)

    def fn_of_perm(perm: np.ndarray):
        moved = topology_from_positions(ethanol.numbers[perm], ethanol.positions[perm])
        return model_fn(model, dataclasses.replace(moved, hypergraph=permute_hypergraph(topo.hypergraph, perm)))

    assert_permutation_invariance(fn_of_perm, ethanol.positions, seed=3, atol=1e-10)

    def fn_rebuilt(perm: np.ndarray):  # the fragmenter itself is permutation-equivariant here
        return model_fn(model, with_hypergraph(Atoms(ethanol.numbers[perm], ethanol.positions[perm])))

    assert_permutation_invariance(fn_rebuilt, ethanol.positions, seed=4, atol=1e-10)


def test_forces_match_finite_differences(ethanol, rng) -> None:
    # the equivariant layer norms make random tiny models strongly curved: small step
    pos = ethanol.positions + rng.normal(scale=0.05, size=ethanol.positions.shape)
    fn = model_fn(tiny(seed=4), with_hypergraph(ethanol))
    assert_forces_match_fd(fn, pos, delta_A=1e-6, rtol=1e-5, atol=1e-7)


def test_batch_equals_single(ethanol, benzene) -> None:
    model = tiny(seed=6)
    topos = [with_hypergraph(ethanol), with_hypergraph(benzene)]
    assert_batch_equals_single(model, topos, [ethanol.positions, benzene.positions], atol=1e-12)
    # frames of one molecule: repeat_topology gives the same numbers as collate
    frames = np.stack([ethanol.positions, ethanol.positions + 0.01])
    model64 = model.double()
    e_rep, f_rep = energy_and_forces(model64, repeat_topology(topos[0], torch.as_tensor(frames)))
    e_col, f_col = energy_and_forces(model64, collate([topos[0]] * 2, list(frames), torch.float64))
    torch.testing.assert_close(e_rep, e_col, rtol=0, atol=1e-12)
    torch.testing.assert_close(f_rep, f_col, rtol=0, atol=1e-12)


def test_smooth_where_an_incidence_leaves_the_envelope(ethanol) -> None:
    cutoff_A, eps = 2.0, 1e-7
    topo = with_hypergraph(ethanol)
    fn = model_fn(tiny(seed=8, cutoff_A=cutoff_A), topo)
    hg = topo.hypergraph
    anchor = hg.e2v_index[1][hg.v2e_index[1]]
    pairs = {(int(i), int(j)) for i, j in zip(anchor, hg.v2e_index[0]) if i != j}
    d = np.linalg.norm(ethanol.positions[:, None] - ethanol.positions[None], axis=-1)
    i, j = min(pairs, key=lambda p: abs(d[p] - cutoff_A))
    direction = (ethanol.positions[j] - ethanol.positions[i]) / d[i, j]

    def at(dist_A: float) -> tuple[float, np.ndarray]:
        pos = ethanol.positions.copy()
        pos[j] = pos[i] + dist_A * direction
        return fn(pos)

    (e_in, f_in), (e_out, f_out) = at(cutoff_A - eps), at(cutoff_A + eps)
    assert abs(at(cutoff_A - 0.3)[0] - e_in) > 1e-6, "the geometry change is invisible: test would be vacuous"
    scale = max(np.abs(f_in).max(), 1e-3)
    assert abs(e_out - e_in) < 10 * eps * scale
    np.testing.assert_allclose(f_out, f_in, atol=1e-5 * scale, rtol=0)


def test_coinciding_atoms_give_finite_forces(ethanol) -> None:
    pos = ethanol.positions.copy()
    pos[1] = pos[0]
    e, f = model_fn(tiny(seed=10), with_hypergraph(ethanol))(pos)
    assert np.isfinite(e) and np.isfinite(f).all()


def test_clear_errors(ethanol) -> None:
    model = tiny()
    with pytest.raises(ValueError, match="needs a hypergraph"):
        model(collate([topology_from_positions(ethanol.numbers, ethanol.positions)], [ethanol.positions]))
    g = collate([with_hypergraph(ethanol)], [ethanol.positions])
    assert isinstance(model.backbone, Backbone) and model.backbone.needs_hypergraph
    assert model.backbone(g).shape == (len(ethanol), model.backbone.hidden_nf)
    with pytest.raises(ValueError, match="first at atom 0"):
        model.backbone(dataclasses.replace(g, z=torch.full_like(g.z, 26)))
    with pytest.raises(ValueError, match=r"atomic numbers \[8\]"):
        tiny(elements=[1, 6])(g)
    with pytest.raises(ValueError, match="do not match"):
        dataclasses.replace(
            topology_from_positions(ethanol.numbers[::-1], ethanol.positions),
            hypergraph=with_hypergraph(ethanol).hypergraph,
        )


# --------------------------------------------------------------------------- checkpoints, calculator, training
def test_checkpoint_round_trip_with_hypergraph(ethanol, tmp_path) -> None:
    cfg = se3set_model_config("tiny")
    torch.manual_seed(5)
    model = build_model(cfg, energy_scale=2.0, energy_shift=-7.0).eval()
    topo = with_hypergraph(ethanol)
    path = tmp_path / "se3set.pt"
    save_checkpoint(path, model, make_metadata(cfg, [1, 6, 8], "kcal/mol", topology=topo.to_dict()))
    loaded, meta = load_checkpoint(path)
    assert from_dict(ModelConfig, meta["model"]) == cfg
    restored = Topology.from_dict(meta["topology"])
    assert restored.hypergraph == topo.hypergraph and np.array_equal(restored.bonds, topo.bonds)
    assert Topology.from_dict(topology_from_positions(ethanol.numbers, ethanol.positions).to_dict()).hypergraph is None
    e0, f0 = model_fn(model, topo)(ethanol.positions)
    e1, f1 = model_fn(loaded, restored)(ethanol.positions)
    assert e1 == e0
    np.testing.assert_array_equal(f1, f0)
    # float32 weights loaded into float64: the Wigner-3j constants are recomputed at full precision
    assert_e3_invariance(model_fn(loaded, restored), ethanol.positions, seed=2, n_trials=2, atol=1e-10)
    double = loaded.double()
    double.load_state_dict(model.state_dict())  # float32 values, including e3nn's constants
    w3j = {name: buf for name, buf in double.named_buffers() if "_w3j_" in name}
    assert w3j and all(buf.dtype == torch.float64 for buf in w3j.values())
    for name, buf in w3j.items():
        l1, l2, l3 = (int(v) for v in name.rsplit("_w3j_", 1)[1].split("_"))
        assert torch.equal(buf, o3.wigner_3j(l1, l2, l3, dtype=torch.float64)), name


def test_calculator_on_aspirin(aspirin, tmp_path) -> None:
    cfg = se3set_model_config("cpu_small")
    torch.manual_seed(0)
    model = build_model(cfg, energy_scale=3.0, energy_shift=-100.0).eval()
    topo = topology_for_atoms(aspirin, None, hypergraph_options=hypergraph_options(cfg))
    assert topo.hypergraph.n_anchored == 55 and topo.hypergraph.n_incidences == 823
    path = tmp_path / "aspirin_se3set.pt"
    save_checkpoint(path, model, make_metadata(cfg, [1, 6, 8], "kcal/mol", topology=topo.to_dict()))
    atoms = aspirin.copy()
    atoms.calc = EMGPCalculator(model=path)
    e, f = atoms.get_potential_energy(), atoms.get_forces()
    assert np.isfinite(e) and f.shape == (21, 3) and np.isfinite(f).all() and np.abs(f).max() > 0
    assert atoms.calc._topology.hypergraph == topo.hypergraph  # the stored, frozen hypergraph
    # the authors' per-frame hypergraph gives the same numbers on the reference geometry
    per_frame = aspirin.copy()
    per_frame.calc = EMGPCalculator(model=path, per_frame_hypergraph=True)
    np.testing.assert_allclose(per_frame.get_forces(), f, rtol=0, atol=1e-5)
    # without a stored topology the hypergraph is built from the current geometry
    bare = tmp_path / "bare.pt"
    save_checkpoint(bare, model, make_metadata(cfg, [1, 6, 8], "kcal/mol"))
    atoms.calc = EMGPCalculator(model=bare)
    assert atoms.get_potential_energy() == pytest.approx(e, abs=1e-4)


def test_per_frame_hypergraph_changes_with_geometry(aspirin) -> None:
    """The per-frame option re-fragments: pulling a fragment 1.5 Å off its neighbour removes their
    overlap, so the incidences (and the energy) jump (non-smooth in MD)."""
    hg = with_hypergraph(aspirin).hypergraph
    kernel = hg.kernel_of_atom
    a, b = next((i, j) for i, j in hg.bonds if kernel[i] != kernel[j] and np.sum(kernel == kernel[i]) <= 4)
    pos = aspirin.positions.copy()
    pull = (pos[a] - pos[b]) / np.linalg.norm(pos[a] - pos[b])
    pos[kernel == kernel[a]] += 1.5 * pull
    assert rebuild_hypergraph(hg, aspirin.positions) == hg
    assert rebuild_hypergraph(hg, pos).n_incidences != hg.n_incidences


def test_finetune_one_epoch(tmp_path, tiny_rmd17) -> None:
    from emgp_md.training.finetune import finetune

    cfg = FinetuneConfig(
        data=str(tiny_rmd17),
        test_data=str(tiny_rmd17),
        n_train=16,
        n_val=4,
        epochs=1,
        batch_size=8,
        lr=1e-3,
        seed=7,
        model=se3set_model_config("tiny"),
    )
    result = finetune(cfg, tmp_path / "ft")
    assert result["finished"] and result["epochs"] == 1
    for split in ("val", "test"):
        assert math.isfinite(result[split]["force_mae_kcal_mol_A"]) and math.isfinite(result[split]["energy_mae_meV"])
    _model, meta = load_checkpoint(tmp_path / "ft" / "model.pt")
    assert meta["model"]["backbone"] == "se3set" and meta["model"]["se3set_preset"] == "tiny"
    topo = Topology.from_dict(meta["topology"])
    assert topo.hypergraph is not None and topo.hypergraph.n_atoms == 9
