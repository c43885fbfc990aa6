"""Equivariant building blocks of the SE3Set network (docs/method.md §S2.5), torch + e3nn only.

The primitives are those of Equiformer (Liao & Smidt, ICLR 2023), which SE3Set copies:

- :func:`scatter_sum`, :func:`segment_softmax` – message aggregation and attention normalisation
  over index groups with plain torch ops (no torch-scatter / torch-geometric);
- :class:`ExpNormalBasis` – fixed exp-normal radial basis times a cosine envelope;
- :class:`RadialMLP` – ``Lin–LN–SiLU–…–Lin`` + learned offset: distance → tensor-product weights;
- :class:`EquivariantLayerNorm` – Equiformer's ``EquivariantLayerNormV2``;
- :func:`depthwise_tensor_product` – the "uvu" tensor product of every input irrep with every
  attribute irrep, outputs sorted with even parity first;
- :func:`gate_activation` – SiLU on scalars, sigmoid gates on ``l > 0`` (e3nn ``Gate``);
- :class:`FeedForward` – linear → gate → linear;
- :class:`DegreeEmbedding` – ``(1/√d̄) Σ Proj(DTP(c, attr; w))`` over incoming incidences.

Equivariant linear maps are e3nn's ``o3.Linear`` (bias on ``0e`` outputs only), and tensor-product
paths use e3nn's ``element`` path normalisation instead of Equiformer's weight rescaling, which
gives the same scale at initialisation.

Equivariant features are **feature-major**, ``(irreps.dim, n)`` (the transpose of e3nn's layout),
and the e3nn modules are evaluated by their ``forward_fm`` (:mod:`emgp_md.models.se3set.ops`).
Radial bases and the radial networks stay item-major, ``(n, n_rbf)``.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Sequence

import torch
from e3nn import o3
from e3nn.math import normalize2mom
from torch import nn

from emgp_md.models.radial import cosine_cutoff
from emgp_md.models.se3set.ops import ActivationFM, GateFM, LinearFM, cat
from emgp_md.models.se3set.tp import DepthwiseTensorProduct

SCALAR = o3.Irrep("0e")


def scatter_sum(src: torch.Tensor, index: torch.Tensor, n_segments: int, dim: int = 0) -> torch.Tensor:
    """Sum the items of ``src`` along ``dim`` (n_items there) into ``n_segments`` by ``index`` (n_items,) long."""
    shape = list(src.shape)
    shape[dim] = n_segments
    return src.new_zeros(shape).index_add_(dim, index, src)


def segment_softmax(logits: torch.Tensor, index: torch.Tensor, n_segments: int, dim: int = 0) -> torch.Tensor:
    """Softmax of ``logits`` over the items (along ``dim``, e.g. (n_items, n_heads) with ``dim=0``)
    that share an ``index`` (n_items,).

    The per-segment maximum is subtracted (detached: the softmax does not depend on it) for
    numerical stability; empty segments are allowed.
    """
    shape = [1] * logits.dim()
    shape[dim] = -1
    expanded = index.view(shape).expand_as(logits)
    shape = list(logits.shape)
    shape[dim] = n_segments
    peak = logits.new_full(shape, -math.inf)
    peak = peak.scatter_reduce(dim, expanded, logits.detach(), reduce="amax", include_self=True)
    weights = torch.exp(logits - peak.index_select(dim, index))
    return weights / scatter_sum(weights, index, n_segments, dim).index_select(dim, index)


class SmoothLeakyReLU(nn.Module):
    """``((1 + a)/2) x + ((1 − a)/2) x (2σ(x) − 1)``: a smooth leaky ReLU (Equiformer, a = 0.2)."""

    def __init__(self, negative_slope: float = 0.2) -> None:
        super().__init__()
        self.alpha = float(negative_slope)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * (1 + self.alpha) * x + 0.5 * (1 - self.alpha) * x * (2 * torch.sigmoid(x) - 1)


class ExpNormalBasis(nn.Module):
    """Fixed ``C(d) exp(−β (exp(−α d) − μ_k)²)``, ``α = 5/r_c`` (TorchMD-Net ``ExpNormalSmearing``,
    ``trainable=False``, as in the SE3Set MD17 template), zero with zero slope from ``d = r_c`` on.

    Parameters
    ----------
    cutoff_A : float
        Envelope radius ``r_c``, Å.
    n_rbf : int
        Number of basis functions.
    """

    def __init__(self, cutoff_A: float, n_rbf: int) -> None:
        super().__init__()
        if not cutoff_A > 0 or n_rbf < 1:
            raise ValueError(f"ExpNormalBasis needs cutoff_A > 0 and n_rbf >= 1, got {cutoff_A} and {n_rbf}")
        self.cutoff_A = float(cutoff_A)
        self.alpha = 5.0 / self.cutoff_A
        start = math.exp(-self.cutoff_A)
        self.register_buffer("means", torch.linspace(start, 1.0, n_rbf), persistent=False)
        self.register_buffer("betas", torch.full((n_rbf,), (2.0 / n_rbf * (1.0 - start)) ** -2), persistent=False)

    def forward(self, dist_A: torch.Tensor) -> torch.Tensor:
        """``dist_A`` (n_edges,) Å → (n_edges, n_rbf)."""
        d = dist_A.unsqueeze(-1)
        return cosine_cutoff(d, self.cutoff_A) * torch.exp(-self.betas * (torch.exp(-self.alpha * d) - self.means) ** 2)


class RadialMLP(nn.Module):
    """``Lin–LayerNorm–SiLU`` per hidden layer, then ``Lin`` (no bias) plus a learned offset
    (Equiformer ``RadialProfile``).

    Parameters
    ----------
    sizes : sequence of int
        ``[n_in, hidden..., n_out]``, at least two entries.
    """

    def __init__(self, sizes: Sequence[int]) -> None:
        super().__init__()
        sizes = [int(s) for s in sizes]
        if len(sizes) < 2:
            raise ValueError(f"RadialMLP needs at least input and output sizes, got {sizes}")
        layers: list[nn.Module] = []
        for n_in, n_out in itertools.pairwise(sizes[:-1]):  # the last layer is built below
            layers += [nn.Linear(n_in, n_out), nn.LayerNorm(n_out), nn.SiLU()]
        layers.append(nn.Linear(sizes[-2], sizes[-1], bias=False))
        self.net = nn.Sequential(*layers)
        bound = 1.0 / math.sqrt(sizes[-2])
        self.offset = nn.Parameter(torch.empty(sizes[-1]).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(n_edges, n_in) → (n_edges, n_out)."""
        return self.net(x) + self.offset

    def forward_fm(self, x: torch.Tensor) -> torch.Tensor:
        """(n_edges, n_in) → feature-major (n_out, n_edges): the last layer writes the transpose."""
        hidden = x
        for layer in self.net[:-1]:
            hidden = layer(hidden)
        return torch.addmm(self.offset.unsqueeze(1), self.net[-1].weight, hidden.t())


class EquivariantLayerNorm(nn.Module):
    """Equiformer's ``EquivariantLayerNormV2`` per irrep type.

    For each block ``mul × (2l+1)``: scalars (``0e``) are centred over the channels; every block is
    divided by ``sqrt(mean over channels and components of x² + eps)``, scaled per channel and, for
    scalars, shifted. Rotations act inside the components, so the result is equivariant.

    Parameters
    ----------
    irreps : str or o3.Irreps
    eps : float
    """

    def __init__(self, irreps: str | o3.Irreps, eps: float = 1e-5) -> None:
        super().__init__()
        self.irreps = o3.Irreps(irreps)
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(self.irreps.num_irreps))
        self.bias = nn.Parameter(torch.zeros(sum(mul for mul, ir in self.irreps if ir == SCALAR)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Feature-major (irreps.dim, n) → (irreps.dim, n)."""
        n = x.shape[1]
        fields = x.split([mul_ir.dim for mul_ir in self.irreps], dim=0)
        weights = self.weight.split([mul for mul, _ in self.irreps])
        biases = iter(self.bias.split([mul for mul, ir in self.irreps if ir == SCALAR]))
        out = []
        for (mul, ir), field, weight in zip(self.irreps, fields, weights):
            field = field.view(mul, ir.dim, n)
            if ir == SCALAR:
                field = field - field.mean(dim=0, keepdim=True)
            scale = (field.pow(2).mean(dim=(0, 1), keepdim=True) + self.eps).rsqrt()
            field = field * scale * weight.view(mul, 1, 1)
            if ir == SCALAR:
                field = field + next(biases).view(mul, 1, 1)
            out.append(field.view(mul * ir.dim, n))
        return cat(out)


def sort_even_first(irreps: o3.Irreps) -> tuple[o3.Irreps, list[int]]:
    """Irreps sorted by ``l``, even parity first (stable); returns them and ``new_position[old]``."""
    order = sorted(range(len(irreps)), key=lambda i: (irreps[i].ir.l, -irreps[i].ir.p, i))
    new_position = [0] * len(order)
    for new, old in enumerate(order):
        new_position[old] = new
    return o3.Irreps([irreps[i] for i in order]), new_position


def depthwise_tensor_product(
    irreps_in: o3.Irreps, irreps_attr: o3.Irreps, irreps_filter: o3.Irreps, internal_weights: bool
) -> DepthwiseTensorProduct:
    """Equiformer's depthwise tensor product (one "uvu" path per allowed output).

    Every pair (input irrep ``mul × l1``, attribute irrep ``l2``) gives one output block
    ``mul × l3`` for every ``l3`` in ``l1 ⊗ l2`` that occurs in ``irreps_filter`` (``0e`` always).
    The outputs are sorted with even parity first; ``irreps_out.simplify()`` describes the same
    memory layout. Weights per path: ``mul_in × mul_attr``.

    Parameters
    ----------
    irreps_in, irreps_attr, irreps_filter : o3.Irreps
    internal_weights : bool
        Learned weights shared by all items, or per-item weights passed at call time (the radial
        network's output, shape ``(n_items, weight_numel)``).
    """
    irreps_out, instructions = [], []
    for i, (mul, ir_in) in enumerate(irreps_in):
        for j, (_, ir_attr) in enumerate(irreps_attr):
            for ir_out in ir_in * ir_attr:
                if ir_out in irreps_filter or ir_out == SCALAR:
                    instructions.append((i, j, len(irreps_out)))
                    irreps_out.append((mul, ir_out))
    sorted_out, new_position = sort_even_first(o3.Irreps(irreps_out))
    return DepthwiseTensorProduct(
        irreps_in,
        irreps_attr,
        sorted_out,
        [(i, j, new_position[k], "uvu", True) for i, j, k in instructions],
        internal_weights=internal_weights,
        shared_weights=internal_weights,
    )


def gate_activation(irreps: o3.Irreps) -> nn.Module:
    """SiLU on the ``0e`` channels and sigmoid gates on the others (Equiformer ``irreps2gate``).

    The returned module has ``irreps_in`` (scalars + gates + gated, what the preceding linear map
    must produce), ``irreps_out`` (= ``irreps``, scalars first) and ``forward_fm``.
    """
    scalars = o3.Irreps([(mul, ir) for mul, ir in irreps if ir == SCALAR]).simplify()
    gated = o3.Irreps([(mul, ir) for mul, ir in irreps if ir != SCALAR]).simplify()
    if gated.dim == 0:
        return ActivationFM(scalars, [nn.SiLU()])
    gates = o3.Irreps([(mul, SCALAR) for mul, _ in gated]).simplify()
    return GateFM(scalars, [nn.SiLU()], gates, [torch.sigmoid], gated)


class FeedForward(nn.Module):
    """``Lin(irreps_in → gate input) → gate(irreps_mid) → Lin(irreps_mid → irreps_out)``, biases on ``0e``."""

    def __init__(self, irreps_in: o3.Irreps, irreps_mid: o3.Irreps, irreps_out: o3.Irreps) -> None:
        super().__init__()
        self.gate = gate_activation(o3.Irreps(irreps_mid))
        self.lin_in = LinearFM(irreps_in, self.gate.irreps_in, biases=True)
        self.lin_out = LinearFM(self.gate.irreps_out, irreps_out, biases=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Feature-major (irreps_in.dim, n) → (irreps_out.dim, n); blocks pass between the layers unconcatenated."""
        return self.lin_out.forward_fm(self.gate.forward_fm(self.lin_in.forward_fm(x, blocks=True), blocks=True))


class DegreeEmbedding(nn.Module):
    """SE3Set's degree embedding: ``(1/√d̄) Σ_{e → dst} Proj(DTP(c, attr_e; w_e))``.

    ``c`` is a learned constant (an equivariant linear map of the number 1, so scalars only); the
    tensor-product weights ``w_e`` come from a radial network of the edge's basis values when
    ``radial_sizes`` is given, else they are learned and shared.

    Parameters
    ----------
    irreps : o3.Irreps
        Output irreps (node or hyperedge features).
    irreps_attr : o3.Irreps
        Edge attribute: spherical harmonics (hyperedges) or hyperedge features (atoms).
    avg_degree : float
        ``d̄``: average number of incoming items per destination.
    radial_sizes : sequence of int, optional
        ``[n_rbf, hidden...]`` of the radial network.
    """

    def __init__(
        self, irreps: o3.Irreps, irreps_attr: o3.Irreps, avg_degree: float, radial_sizes: Sequence[int] | None = None
    ) -> None:
        super().__init__()
        self.const = LinearFM("1x0e", irreps, biases=True)
        self.dtp = depthwise_tensor_product(irreps, irreps_attr, irreps, internal_weights=radial_sizes is None)
        self.radial = RadialMLP([*radial_sizes, self.dtp.weight_numel]) if radial_sizes else None
        self.proj = LinearFM(self.dtp.irreps_out.simplify(), irreps, biases=True, pieces=self.dtp.irreps_out)
        self.inv_sqrt_degree = 1.0 / math.sqrt(avg_degree)

    def forward(
        self, attr: torch.Tensor, dst_index: torch.Tensor, n_dst: int, basis: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``attr`` (irreps_attr.dim, n_edges) feature-major, ``dst_index`` (n_edges,), ``basis``
        (n_edges, n_rbf) → (irreps.dim, n_dst) feature-major."""
        # c: scalars only (no path reaches l > 0), broadcast over the edges; zero blocks are skipped
        const = self.const.forward_fm(attr.new_ones(1, 1), blocks=True)
        weight = self.radial.forward_fm(basis) if self.radial is not None else None
        products = self.dtp.forward_fm(const, attr, weight, blocks=True)
        # Proj is affine: Σ_e Proj(p_e) = Proj_without_bias(Σ_e p_e) + degree · bias, on n_dst columns
        summed = [scatter_sum(p, dst_index, n_dst, dim=1) if p is not None else None for p in products]
        degree = torch.bincount(dst_index, minlength=n_dst).to(attr.dtype)
        return self.proj.forward_fm(summed, bias_scale=degree) * self.inv_sqrt_degree


_WIGNER_3J = re.compile(r"_w3j_(\d+)_(\d+)_(\d+)$")


def refresh_wigner_3j_(module: nn.Module) -> None:
    """Recompute the Wigner-3j buffers of e3nn tensor products in their current dtype, in place.

    e3nn computes them in the default dtype when a tensor product is built; after ``.double()``
    they would keep float32 precision, which limits equivariance to ~1e-7 even in float64.
    """
    with torch.no_grad():
        for name, buf in module.named_buffers():
            match = _WIGNER_3J.search(name)
            if match is not None and buf.is_floating_point():
                l1, l2, l3 = (int(v) for v in match.groups())
                buf.copy_(o3.wigner_3j(l1, l2, l3, dtype=torch.float64).to(buf.dtype))


def make_alpha_activation() -> nn.Module:
    """SmoothLeakyReLU(0.2) normalised to unit second moment (Equiformer ``Activation``)."""
    return normalize2mom(SmoothLeakyReLU(0.2))
