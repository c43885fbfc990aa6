"""Equivariant building blocks of the SE3Set network (method-se3set.md §2.5), torch + e3nn only.

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
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import torch
from e3nn import o3
from e3nn.math import normalize2mom
from e3nn.nn import Activation, Gate
from torch import nn

from emgp_md.models.radial import cosine_cutoff

SCALAR = o3.Irrep("0e")


def scatter_sum(src: torch.Tensor, index: torch.Tensor, n_segments: int) -> torch.Tensor:
    """Sum rows of ``src`` (n_items, ...) into ``n_segments`` rows by ``index`` (n_items,) long."""
    out = torch.zeros(n_segments, *src.shape[1:], dtype=src.dtype, device=src.device)
    return out.index_add_(0, index, src)


def segment_softmax(logits: torch.Tensor, index: torch.Tensor, n_segments: int) -> torch.Tensor:
    """Softmax of ``logits`` (n_items, n_heads) over the items that share an ``index`` (n_items,).

    The per-segment maximum is subtracted (detached: the softmax does not depend on it) for
    numerical stability; empty segments are allowed.
    """
    expanded = index.unsqueeze(1).expand_as(logits)
    peak = torch.full((n_segments, logits.shape[1]), -math.inf, dtype=logits.dtype, device=logits.device)
    peak = peak.scatter_reduce(0, expanded, logits.detach(), reduce="amax", include_self=True)
    weights = torch.exp(logits - peak.index_select(0, index))
    return weights / scatter_sum(weights, index, n_segments).index_select(0, index)


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
        for n_in, n_out in zip(sizes[:-2], sizes[1:-1]):
            layers += [nn.Linear(n_in, n_out), nn.LayerNorm(n_out), nn.SiLU()]
        layers.append(nn.Linear(sizes[-2], sizes[-1], bias=False))
        self.net = nn.Sequential(*layers)
        bound = 1.0 / math.sqrt(sizes[-2])
        self.offset = nn.Parameter(torch.empty(sizes[-1]).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(n_edges, n_in) → (n_edges, n_out)."""
        return self.net(x) + self.offset


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
        """(n, irreps.dim) → (n, irreps.dim)."""
        out, i_w, i_b = [], 0, 0
        for (mul, ir), sl in zip(self.irreps, self.irreps.slices()):
            field = x[:, sl].reshape(-1, mul, ir.dim)
            if ir == SCALAR:
                field = field - field.mean(dim=1, keepdim=True)
            scale = (field.pow(2).mean(dim=(1, 2), keepdim=True) + self.eps).rsqrt()
            field = field * scale * self.weight[i_w : i_w + mul].view(1, mul, 1)
            i_w += mul
            if ir == SCALAR:
                field = field + self.bias[i_b : i_b + mul].view(1, mul, 1)
                i_b += mul
            out.append(field.reshape(-1, mul * ir.dim))
        return torch.cat(out, dim=1)


def sort_even_first(irreps: o3.Irreps) -> tuple[o3.Irreps, list[int]]:
    """Irreps sorted by ``l``, even parity first (stable); returns them and ``new_position[old]``."""
    order = sorted(range(len(irreps)), key=lambda i: (irreps[i].ir.l, -irreps[i].ir.p, i))
    new_position = [0] * len(order)
    for new, old in enumerate(order):
        new_position[old] = new
    return o3.Irreps([irreps[i] for i in order]), new_position


def depthwise_tensor_product(irreps_in: o3.Irreps, irreps_attr: o3.Irreps, irreps_filter: o3.Irreps,
                             internal_weights: bool) -> o3.TensorProduct:
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
    return o3.TensorProduct(
        irreps_in, irreps_attr, sorted_out,
        [(i, j, new_position[k], "uvu", True) for i, j, k in instructions],
        internal_weights=internal_weights, shared_weights=internal_weights,
    )


def gate_activation(irreps: o3.Irreps) -> nn.Module:
    """SiLU on the ``0e`` channels and sigmoid gates on the others (Equiformer ``irreps2gate``).

    The returned module has ``irreps_in`` (scalars + gates + gated, what the preceding linear map
    must produce) and ``irreps_out`` (= ``irreps``, scalars first).
    """
    scalars = o3.Irreps([(mul, ir) for mul, ir in irreps if ir == SCALAR]).simplify()
    gated = o3.Irreps([(mul, ir) for mul, ir in irreps if ir != SCALAR]).simplify()
    if gated.dim == 0:
        return Activation(scalars, [nn.SiLU()])
    gates = o3.Irreps([(mul, SCALAR) for mul, _ in gated]).simplify()
    return Gate(scalars, [nn.SiLU()], gates, [torch.sigmoid], gated)


class FeedForward(nn.Module):
    """``Lin(irreps_in → gate input) → gate(irreps_mid) → Lin(irreps_mid → irreps_out)``, biases on ``0e``."""

    def __init__(self, irreps_in: o3.Irreps, irreps_mid: o3.Irreps, irreps_out: o3.Irreps) -> None:
        super().__init__()
        self.gate = gate_activation(o3.Irreps(irreps_mid))
        self.lin_in = o3.Linear(irreps_in, self.gate.irreps_in, biases=True)
        self.lin_out = o3.Linear(self.gate.irreps_out, irreps_out, biases=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin_out(self.gate(self.lin_in(x)))


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

    def __init__(self, irreps: o3.Irreps, irreps_attr: o3.Irreps, avg_degree: float,
                 radial_sizes: Sequence[int] | None = None) -> None:
        super().__init__()
        self.const = o3.Linear("1x0e", irreps, biases=True)
        self.dtp = depthwise_tensor_product(irreps, irreps_attr, irreps, internal_weights=radial_sizes is None)
        self.radial = RadialMLP([*radial_sizes, self.dtp.weight_numel]) if radial_sizes else None
        self.proj = o3.Linear(self.dtp.irreps_out.simplify(), irreps, biases=True)
        self.inv_sqrt_degree = 1.0 / math.sqrt(avg_degree)

    def forward(self, attr: torch.Tensor, dst_index: torch.Tensor, n_dst: int,
                basis: torch.Tensor | None = None) -> torch.Tensor:
        """``attr`` (n_edges, irreps_attr.dim), ``dst_index`` (n_edges,), ``basis`` (n_edges, n_rbf)
        → (n_dst, irreps.dim)."""
        const = self.const(torch.ones(1, 1, dtype=attr.dtype, device=attr.device)).expand(attr.shape[0], -1)
        weight = self.radial(basis) if self.radial is not None else None
        out = self.proj(self.dtp(const, attr, weight))
        return scatter_sum(out, dst_index, n_dst) * self.inv_sqrt_degree


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
