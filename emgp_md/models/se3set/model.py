"""SE3Set: equivariant hypergraph transformer (Wu et al., arXiv 2405.16511, TMLR 2025).

Written from docs/method.md §S2 (Wu et al., arXiv 2405.16511) and the authors' ``se3set/model`` ("an Equiformer version of
AllSet's SetGNN"). Atoms ``i`` and anchored hyperedges ``ε = (F, i)`` of a frozen
:class:`~emgp_md.data.hypergraph.Hypergraph` carry features of irreps ``V`` (MD17:
128x0e+64x1o+32x2e); every block passes messages atom → hyperedge (V2E, with geometry) and
hyperedge → atom (E2V). The only geometric inputs are, for every incidence ``j → ε`` with
``j`` ≠ anchor ``i``, the spherical harmonics ``Y(r̂_ij)`` (l ≤ l_max of V, parities 0e, 1o, 2e)
and an exp-normal radial basis of ``|r_j − r_i|`` with a cosine envelope.

Forward pass (:meth:`SE3Set.forward`)::

    x_i = Lin(onehot Z_i)                      h_ε = Lin'(onehot Z_anchor(ε))
    h_ε += (1/√d̄_E) Σ_{j→ε} Proj(DTP(c, Y(r̂_ij); MLP(φ(r_ij))));   ĥ = LN(h)
    x_i += (1/√d̄_V) Σ_{ε anchored at i} Proj(DTP(c', ĥ_ε));          x̂ = LN(x)
    n_blocks × SE3SetBlock (the last maps atoms to feature_nf × 0e)
    output: x̂ of the last block, (n_atoms, feature_nf) invariant

The output feeds the package's energy heads (the authors' head ``Lin–SiLU–Lin`` then a sum scaled
by ``1/√N̄`` is :class:`~emgp_md.models.heads.AtomwiseEnergyHead`, with the constant absorbed in the
energy normalisation); forces are ``−∂E/∂r`` by autograd.

Every irrep has its true parity, so the energy is invariant under rotations, translations **and
reflections** (E(3)). Distances use a safe norm and the unit vector of coinciding atoms is zero,
so forces stay finite. With a frozen hypergraph the energy is a smooth function of the positions.
Deviations from the authors' code: e3nn path normalisation instead of Equiformer's weight
rescaling; no dropout; the unused ``norm_he`` of every block is left out (352 parameters each in
the MD17 model); the one-hot covers :attr:`SE3SetSettings.elements` (all fragmenter elements by
default) instead of a data set's elements.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from e3nn import o3
from torch import nn

from emgp_md.data.fragment import PRESETS as FRAGMENT_PRESETS
from emgp_md.data.fragment import FragmentOptions
from emgp_md.models.radial import safe_norm
from emgp_md.models.se3set.attention import SE3SetBlock
from emgp_md.models.se3set.config import SE3SetSettings
from emgp_md.models.se3set.layers import DegreeEmbedding, EquivariantLayerNorm, ExpNormalBasis, refresh_wigner_3j_
from emgp_md.models.se3set.ops import LinearFM

if TYPE_CHECKING:
    from emgp_md.data.graph import GraphBatch


class SE3Set(nn.Module):
    """The SE3Set backbone; outputs invariant atom features of width ``settings.feature_nf``.

    Parameters
    ----------
    settings : SE3SetSettings, optional
        Architecture; default: the authors' MD17 template.

    Attributes
    ----------
    needs_hypergraph : bool
        True: the backbone reads ``graph.hypergraph`` (see :class:`~emgp_md.models.base.Backbone`).
    hidden_nf : int
        Output width.
    fragment_options : FragmentOptions
        Fragmenter settings for building the hypergraph of a new molecule for this model.
    """

    needs_hypergraph = True

    def __init__(self, settings: SE3SetSettings | None = None) -> None:
        super().__init__()
        s = settings or SE3SetSettings()
        self.settings = s
        self.hidden_nf = s.feature_nf
        self.fragment_options: FragmentOptions = FRAGMENT_PRESETS[s.fragmentation]
        irreps = o3.Irreps(s.irreps_node)
        self.irreps_sh = o3.Irreps.spherical_harmonics(irreps.lmax)
        type_index = torch.full((max(s.elements) + 1,), -1, dtype=torch.long)
        type_index[list(s.elements)] = torch.arange(len(s.elements))
        self.register_buffer("type_index", type_index, persistent=False)
        onehot = o3.Irreps(f"{len(s.elements)}x0e")
        radial_sizes = [s.n_rbf, *s.radial_hidden]
        self.atom_embedding = LinearFM(onehot, irreps, biases=True)
        self.hyperedge_embedding = LinearFM(onehot, irreps, biases=True)
        self.rbf = ExpNormalBasis(s.cutoff_A, s.n_rbf)
        self.hyperedge_degree = DegreeEmbedding(irreps, self.irreps_sh, s.avg_hyperedge_degree, radial_sizes)
        self.norm_hyperedge = EquivariantLayerNorm(irreps)
        self.atom_degree = DegreeEmbedding(irreps, irreps, s.avg_node_degree)
        self.norm_atom = EquivariantLayerNorm(irreps)
        features = o3.Irreps(f"{s.feature_nf}x0e")
        self.blocks = nn.ModuleList(
            SE3SetBlock(
                irreps,
                self.irreps_sh,
                o3.Irreps(s.irreps_head),
                s.n_heads,
                o3.Irreps(s.irreps_mlp_mid),
                features if k == s.n_blocks - 1 else irreps,
                radial_sizes,
            )
            for k in range(s.n_blocks)
        )
        self.register_load_state_dict_post_hook(self._refresh_after_load)

    def _apply(self, fn: Any, recurse: bool = True) -> SE3Set:
        """``.to()``, ``.double()``, ...; then the Wigner-3j constants are recomputed in the new dtype."""
        super()._apply(fn, recurse)
        refresh_wigner_3j_(self)
        return self

    @staticmethod
    def _refresh_after_load(module: nn.Module, incompatible_keys: Any) -> None:
        """Checkpoints store the constants in float32: restore full precision after loading."""
        refresh_wigner_3j_(module)

    def _onehot(self, z: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """(n_atoms, n_elements) one-hot of the atom types; names unsupported elements."""
        inside = z < self.type_index.shape[0]
        types = torch.where(inside, self.type_index[z.clamp(max=self.type_index.shape[0] - 1)], -1)
        if bool((types < 0).any()):
            bad = sorted(set(z[types < 0].tolist()))
            raise ValueError(f"SE3Set embeds elements {list(self.settings.elements)}, got atomic numbers {bad}")
        return F.one_hot(types, len(self.settings.elements)).to(dtype)

    def forward(self, graph: GraphBatch) -> torch.Tensor:
        """Invariant atom features (the :class:`~emgp_md.models.base.Backbone` protocol, hypergraph kind).

        Reads ``graph.z`` (n_atoms,) long, ``graph.pos`` (n_atoms, 3) Å and ``graph.hypergraph``:
        the collated hypergraph(s) of the batch, ``e2v_index`` (2, n_anchored) ``[ε, anchor]`` and
        ``v2e_index`` (2, n_incidences) ``[source atom, ε]``, global indices. The pair edges of
        the graph are not used.

        Returns
        -------
        h : (n_atoms, feature_nf)
            Normalised invariant features of the last block.

        Raises
        ------
        ValueError
            No hypergraph, or one whose atoms do not match ``z``, or an element outside
            ``settings.elements``.
        """
        z, pos, hypergraph = graph.z, graph.pos, graph.hypergraph
        if hypergraph is None:
            raise ValueError(
                "the SE3Set backbone needs a hypergraph, but the graph has none: build the topology with "
                "emgp_md.data.convert.attach_hypergraph (or topology_for_atoms(..., hypergraph_options=...)) "
                "so that every molecule of the batch carries one"
            )
        hg_z = hypergraph.z.to(z.device)
        if hg_z.shape != z.shape or not torch.equal(hg_z, z):
            where = "" if hg_z.shape != z.shape else f", first at atom {int(torch.nonzero(hg_z != z)[0, 0])}"
            raise ValueError(
                f"the hypergraph's atoms ({hg_z.shape[0]}) do not match the graph's atoms "
                f"({z.shape[0]}){where}: build the hypergraph from the same molecule"
            )
        e2v, v2e = hypergraph.e2v_index, hypergraph.v2e_index
        n_atoms, n_anchored = z.shape[0], e2v.shape[1]
        anchor = torch.empty(n_anchored, dtype=torch.long, device=z.device)
        anchor[e2v[0]] = e2v[1]
        src, eps = v2e[0], v2e[1]
        keep = src != anchor.index_select(0, eps)  # the authors' remove_self_loops
        src, eps = src[keep], eps[keep]
        vec = pos.index_select(0, src) - pos.index_select(0, anchor.index_select(0, eps))  # r_j - r_i
        dist = safe_norm(vec)
        unit = vec / torch.where(dist > 0, dist, torch.ones_like(dist)).unsqueeze(1)
        # equivariant features are feature-major, (irreps.dim, n): see se3set.ops
        sh = o3.spherical_harmonics(self.irreps_sh, unit, normalize=False, normalization="component").t().contiguous()
        basis = self.rbf(dist)

        onehot = self._onehot(z, pos.dtype).t().contiguous()
        x = self.atom_embedding.forward_fm(onehot)
        h = self.hyperedge_embedding.forward_fm(onehot).index_select(1, anchor)
        h = h + self.hyperedge_degree(sh, eps, n_anchored, basis)
        h_hat = self.norm_hyperedge(h)
        x = x + self.atom_degree(h_hat, anchor, n_atoms)
        x_hat = self.norm_atom(x)
        for block in self.blocks:
            x, x_hat, h, h_hat = block(x, x_hat, h, h_hat, (src, eps), anchor, sh, basis)
        return x_hat.t().contiguous()
