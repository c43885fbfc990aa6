"""Atom features, hop-typed frozen topology, batching."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from rdkit import Chem

from emgp_md.data.features import N_NODE_FEATURES, atom_features, feature_table, validate_atomic_numbers
from emgp_md.data.graph import collate, repeat_topology
from emgp_md.data.topology import (
    Topology,
    bonds_from_distances,
    topology_from_bonds,
    topology_from_positions,
    topology_from_rdkit,
)


# --------------------------------------------------------------------------- features
def test_feature_vector_layout():
    z = torch.arange(1, 100)
    feats = atom_features(z)
    assert feats.shape == (99, 300) == (99, N_NODE_FEATURES)
    assert feats.dtype == torch.float64
    for row, zi in zip(feats, z.tolist()):
        expected = np.zeros(300)
        expected[3 * zi : 3 * zi + 3] = [1.0, zi / 100, (zi / 100) ** 2]
        np.testing.assert_allclose(row.numpy(), expected, rtol=0, atol=1e-15)


def test_feature_table_dtype_and_rows():
    t32 = feature_table(torch.float32)
    assert t32.dtype == torch.float32 and t32.shape == (100, 300)
    torch.testing.assert_close(t32.double()[6], atom_features(torch.tensor([6]))[0], rtol=0, atol=1e-7)


@pytest.mark.parametrize("bad", [0, 100, -1])
def test_validate_atomic_numbers_range(bad):
    with pytest.raises(ValueError, match=str(bad)):
        validate_atomic_numbers(np.array([1, bad, 6]))


def test_validate_atomic_numbers_allowed_names_element():
    with pytest.raises(ValueError, match="Cl"):
        validate_atomic_numbers(np.array([1, 17]), allowed={1, 6, 8})
    validate_atomic_numbers(np.array([1, 6, 8]), allowed={1, 6, 8})  # no error


# --------------------------------------------------------------------------- hop types
def _ethanol_roles(atoms):
    """Indices by chemical role, found from the distance bond graph (not hard-coded)."""
    bonds = bonds_from_distances(atoms.positions)
    nbrs = {i: set() for i in range(len(atoms))}
    for i, j in bonds:
        nbrs[i].add(j)
        nbrs[j].add(i)
    z = atoms.numbers
    o = int(np.nonzero(z == 8)[0][0])
    c_o = next(j for j in nbrs[o] if z[j] == 6)  # carbon bonded to O
    c_m = next(j for j in nbrs[c_o] if z[j] == 6)  # methyl carbon
    h_o = next(j for j in nbrs[o] if z[j] == 1)
    h_co = [j for j in nbrs[c_o] if z[j] == 1]
    h_m = [j for j in nbrs[c_m] if z[j] == 1]
    return bonds, {"o": o, "c_o": c_o, "c_m": c_m, "h_o": h_o, "h_co": h_co, "h_m": h_m}


def test_hop_types_ethanol(ethanol):
    bonds, r = _ethanol_roles(ethanol)
    assert len(bonds) == 8  # 9 atoms, a tree
    assert len(r["h_co"]) == 2 and len(r["h_m"]) == 3
    topo = topology_from_positions(ethanol.numbers, ethanol.positions)
    hop = np.full((9, 9), -1)
    hop[topo.edge_index[0], topo.edge_index[1]] = topo.edge_type
    assert (hop == hop.T).all()
    assert hop[r["c_o"], r["c_m"]] == 1  # C-C
    assert hop[r["o"], r["c_o"]] == 1  # C-O
    assert hop[r["o"], r["h_o"]] == 1  # O-H
    assert hop[r["o"], r["c_m"]] == 2  # O-C-C
    assert all(hop[r["o"], h] == 2 for h in r["h_co"])  # O-C-H
    assert all(hop[a, b] == 2 for a in r["h_m"] for b in r["h_m"] if a != b)  # H-C-H
    assert all(hop[a, b] == 3 for a in r["h_m"] for b in r["h_co"])  # H-C-C-H
    assert all(hop[r["o"], h] == 3 for h in r["h_m"])  # O-C-C-H
    assert all(hop[r["h_o"], h] == 0 for h in r["h_m"])  # H-O-C-C-H: 4 bonds -> type 0
    # every bonded pair is type 1, every type-1 pair is bonded
    bonded = {tuple(b) for b in bonds.tolist()}
    ones = {(int(i), int(j)) for i, j in zip(*np.nonzero(hop == 1)) if i < j}
    assert ones == bonded


def test_disconnected_atoms_are_type_zero():
    z = np.array([6, 6, 1])
    topo = topology_from_bonds(z, np.array([[0, 1]]))
    types = {(int(i), int(j)): int(t) for (i, j), t in zip(topo.edge_index.T, topo.edge_type)}
    assert types[(0, 1)] == 1 and types[(0, 2)] == 0 and types[(2, 1)] == 0


def test_bond_index_out_of_range_rejected():
    with pytest.raises(ValueError, match="bond indices"):
        topology_from_bonds(np.array([6, 6]), np.array([[0, 2]]))


def test_rdkit_topology_matches_distances_for_ethanol(ethanol):
    mol = Chem.AddHs(Chem.MolFromSmiles("CCO"))
    t_rd = topology_from_rdkit(mol)
    t_d = topology_from_positions(ethanol.numbers, ethanol.positions)
    assert t_rd.n_atoms == t_d.n_atoms == 9
    assert len(t_rd.bonds) == len(t_d.bonds) == 8
    assert sorted(t_rd.z.tolist()) == sorted(t_d.z.tolist())
    # same graph up to atom order: same histogram of hop types
    np.testing.assert_array_equal(np.bincount(t_rd.edge_type, minlength=4), np.bincount(t_d.edge_type, minlength=4))


@pytest.mark.parametrize("n", [1, 2, 5, 12])
def test_fully_connected_edge_count(n, rng):
    topo = topology_from_positions(np.full(n, 6), rng.normal(scale=3.0, size=(n, 3)))
    assert topo.edge_index.shape == (2, n * (n - 1))
    assert topo.edge_type.shape == (n * (n - 1),)
    assert not np.any(topo.edge_index[0] == topo.edge_index[1])
    assert len({tuple(e) for e in topo.edge_index.T.tolist()}) == n * (n - 1)  # no duplicates


def test_to_dict_round_trip(benzene):
    import json

    topo = topology_from_positions(benzene.numbers, benzene.positions)
    back = Topology.from_dict(json.loads(json.dumps(topo.to_dict())))
    for name in ("z", "bonds", "edge_index", "edge_type"):
        np.testing.assert_array_equal(getattr(back, name), getattr(topo, name))
    assert len(topo.bonds) == 12  # 6 C-C + 6 C-H


# --------------------------------------------------------------------------- batching
def test_collate_offsets(ethanol, benzene):
    t1 = topology_from_positions(ethanol.numbers, ethanol.positions)
    t2 = topology_from_positions(benzene.numbers, benzene.positions)
    g = collate([t1, t2], [ethanol.positions, benzene.positions], torch.float64)
    n1, e1 = t1.n_atoms, t1.edge_index.shape[1]
    assert g.n_graphs == 2 and g.pos.dtype == torch.float64
    assert g.pos.shape == (n1 + t2.n_atoms, 3)
    np.testing.assert_array_equal(g.edge_index[:, :e1].numpy(), t1.edge_index)
    np.testing.assert_array_equal(g.edge_index[:, e1:].numpy(), t2.edge_index + n1)
    np.testing.assert_array_equal(g.batch.numpy(), [0] * n1 + [1] * t2.n_atoms)
    np.testing.assert_array_equal(g.n_atoms_per_graph.numpy(), [n1, t2.n_atoms])
    np.testing.assert_array_equal(g.edge_type.numpy(), np.concatenate([t1.edge_type, t2.edge_type]))
    # every edge stays within its molecule
    assert torch.equal(g.batch[g.edge_index[0]], g.batch[g.edge_index[1]])


def test_collate_shape_errors(ethanol):
    t = topology_from_positions(ethanol.numbers, ethanol.positions)
    with pytest.raises(ValueError, match="expected"):
        collate([t], [ethanol.positions[:5]])
    with pytest.raises(ValueError, match="topologies"):
        collate([t, t], [ethanol.positions])


def test_repeat_topology_equals_collate(ethanol, rng):
    t = topology_from_positions(ethanol.numbers, ethanol.positions)
    frames = ethanol.positions[None] + rng.normal(scale=0.05, size=(3, 9, 3))
    a = repeat_topology(t, torch.as_tensor(frames, dtype=torch.float64))
    b = collate([t] * 3, list(frames), torch.float64)
    for name in ("z", "pos", "edge_index", "edge_type", "batch"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert a.n_graphs == b.n_graphs == 3
    with pytest.raises(ValueError, match="atoms"):
        repeat_topology(t, torch.zeros(2, 5, 3, dtype=torch.float64))


def test_with_pos_keeps_graph_and_checks_shape(ethanol):
    t = topology_from_positions(ethanol.numbers, ethanol.positions)
    g = collate([t], [ethanol.positions], torch.float64)
    g2 = g.with_pos(g.pos * 2)
    assert g2.edge_index is g.edge_index and torch.equal(g2.pos, g.pos * 2)
    with pytest.raises(ValueError, match="do not fit"):
        g.with_pos(torch.zeros(3, 3, dtype=torch.float64))
