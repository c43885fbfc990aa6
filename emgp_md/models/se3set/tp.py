"""SE3Set's depthwise tensor product on feature-major tensors, alone or followed by linear maps.

:class:`DepthwiseTensorProduct` is an ``o3.TensorProduct`` (same constructor, parameters, buffers
and ``forward``) with :meth:`~DepthwiseTensorProduct.forward_fm` on feature-major tensors
``(irreps.dim, n)`` (see :mod:`emgp_md.models.se3set.ops`). :func:`linear_of_product` evaluates
``L(TP(x, y))`` for linear maps ``L`` path by path, in whichever order is cheaper: a path from an
input block with ``d₁ = 2l₁+1`` components to an output with ``d₃`` components either builds the
product (``u·d₃`` rows) and maps it, or maps the weighted input first (``u·d₁`` rows) and contracts
the result with the attribute — the same number, fewer operations when ``d₁ < d₃``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from e3nn import o3

from emgp_md.models.se3set.ops import LinearFM, Pieces, cat, split_rows


def _contract(x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """``Σ_a x[:, a] z[:, a]``: ``x`` (m, d₁, n), ``z`` (1 or m, d₁, d₃, n) → (m, d₃, n)."""
    out = x[:, 0:1] * z[:, 0]
    for a in range(1, x.shape[1]):
        out = out + x[:, a : a + 1] * z[:, a]
    return out


class DepthwiseTensorProduct(o3.TensorProduct):
    """``o3.TensorProduct`` with one weighted ``"uvu"`` path per output block, plus :meth:`forward_fm`.

    Path ``p`` from input block ``x_i`` (mul ``u``, components ``a``) and attribute block ``y_j``
    (mul ``v``, components ``b``) gives ``out_p[u,k] = Σ_v w_p[u,v] Σ_ab C_p[a,b,k] x_i[u,a] y_j[v,b]``
    (``C_p``: Wigner-3j times path weight). With attribute multiplicities 1 (spherical harmonics)
    ``z = C y`` is one matrix product for all paths of ``x_i`` and ``out_p = Σ_a (w_p x_i)[:, a] z[a]``;
    otherwise (shared weights only) the weights first mix the attribute channels. Takes
    ``o3.TensorProduct``'s arguments.

    Raises
    ------
    ValueError
        Other path layouts, or per-item weights with attribute multiplicities > 1.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        ins = self.instructions
        self.unit_attr = all(mul == 1 for mul, _ in self.irreps_in2)
        if (
            not all(i.connection_mode == "uvu" and i.has_weight for i in ins)
            or sorted(i.i_out for i in ins) != list(range(len(self.irreps_out)))
            or not (self.unit_attr or self.shared_weights)
        ):
            raise ValueError(
                "DepthwiseTensorProduct needs one weighted uvu path per output block and "
                "attribute multiplicities 1 unless the weights are shared"
            )
        self._weight_sizes = [i.path_shape[0] * i.path_shape[1] for i in ins]
        self._in1_dims = [mul_ir.dim for mul_ir in self.irreps_in1]
        self._in2_dims = [mul_ir.dim for mul_ir in self.irreps_in2]
        # groups of paths: (i_in1, i_in2 or -1 for all attributes at once, instruction indices)
        self._groups: list[tuple[int, int, list[int]]] = []
        for i1 in range(len(self.irreps_in1)):
            for i2 in [-1] if self.unit_attr else range(len(self.irreps_in2)):
                ks = [k for k, i in enumerate(ins) if i.i_in1 == i1 and i2 in (-1, i.i_in2)]
                if ks:
                    self._groups.append((i1, i2, ks))
        self._constants64 = [self._group_constants(i2, ks) for _, i2, ks in self._groups]
        self._cache: dict[tuple[torch.dtype, torch.device], list[list[torch.Tensor]]] = {}

    def _cg(self, k: int) -> torch.Tensor:
        """float64 (d₁, d₂, d₃) Wigner-3j of path ``k`` times its path weight."""
        i = self.instructions[k]
        ls = (self.irreps_in1[i.i_in1].ir.l, self.irreps_in2[i.i_in2].ir.l, self.irreps_out[i.i_out].ir.l)
        return o3.wigner_3j(*ls, dtype=torch.float64) * i.path_weight

    def _group_constants(self, i2: int, ks: list[int]) -> list[torch.Tensor]:
        """``[(d₁·K, D₂)]`` mapping all attributes to every path's ``z`` (``i2 = -1``), else one
        ``(d₁·d₃, d₂)`` per path."""
        if i2 >= 0:
            return [cg.permute(0, 2, 1).reshape(-1, cg.shape[1]) for cg in map(self._cg, ks)]
        blocks = []
        for k in ks:
            cg, start = self._cg(k), self.irreps_in2[: self.instructions[k].i_in2].dim
            full = torch.zeros(cg.shape[0], self.irreps_in2.dim, cg.shape[2], dtype=torch.float64)
            full[:, start : start + cg.shape[1]] = cg
            blocks.append(full)
        const = torch.cat(blocks, dim=2)  # (d1, D2, K)
        return [const.permute(0, 2, 1).reshape(-1, self.irreps_in2.dim)]

    def _constants(self, like: torch.Tensor) -> list[list[torch.Tensor]]:
        key = (like.dtype, like.device)
        if key not in self._cache:
            self._cache[key] = [[c.to(like.device, like.dtype) for c in cs] for cs in self._constants64]
        return self._cache[key]

    def _out_dim(self, k: int) -> int:
        return self.irreps_out[self.instructions[k].i_out].ir.dim

    def unit_paths(
        self, x: torch.Tensor | Pieces, y: torch.Tensor, weight: torch.Tensor | None
    ) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        """Attribute multiplicities 1: ``(k, w_k x_i (u, d₁, n), z_k (1, d₁, d₃, n))`` for every path
        ``k`` whose input block is not None; ``out_k = Σ_a (w_k x_i)[:, a] z_k[0, a]``."""
        n = y.shape[1]
        xs = split_rows(x, self._in1_dims) if isinstance(x, torch.Tensor) else x
        ws = split_rows(weight if weight is not None else self.weight, self._weight_sizes)
        for (i1, _, ks), consts in zip(self._groups, self._constants(y)):
            if xs[i1] is None:
                continue
            u, d1 = self.irreps_in1[i1].mul, self.irreps_in1[i1].ir.dim
            x1 = xs[i1].reshape(u, d1, -1)
            z = (consts[0] @ y).view(1, d1, -1, n)  # (1, d1, K, n)
            for k, zk in zip(ks, z.split([self._out_dim(k) for k in ks], dim=2) if len(ks) > 1 else (z,)):
                yield k, x1 * ws[k].view(u, 1, n if weight is not None else 1), zk

    def forward_fm(
        self, x: torch.Tensor | Pieces, y: torch.Tensor, weight: torch.Tensor | None = None, blocks: bool = False
    ) -> torch.Tensor | Pieces:
        """Tensor product of feature-major inputs.

        Parameters
        ----------
        x : (irreps_in1.dim, n or 1), or :data:`Pieces` of ``irreps_in1``
            With one column it is broadcast over the items; paths of None blocks are skipped.
        y : (irreps_in2.dim, n)
        weight : (weight_numel, n) or None
            Per-item weights; None: the internal (shared) weights.
        blocks : bool
            Return :data:`Pieces` of ``irreps_out`` instead of their concatenation.

        Returns
        -------
        (irreps_out.dim, n), or :data:`Pieces` when ``blocks``
        """
        n = y.shape[1]
        outs: Pieces = [None] * len(self.irreps_out)
        if self.unit_attr:
            for k, xw, zk in self.unit_paths(x, y, weight):
                outs[self.instructions[k].i_out] = _contract(xw, zk).reshape(-1, n)
        else:
            xs = split_rows(x, self._in1_dims) if isinstance(x, torch.Tensor) else x
            ws, ys = split_rows(self.weight, self._weight_sizes), split_rows(y, self._in2_dims)
            for (i1, i2, ks), consts in zip(self._groups, self._constants(y)):
                if xs[i1] is None:
                    continue
                u, d1 = self.irreps_in1[i1].mul, self.irreps_in1[i1].ir.dim
                v, d2 = self.irreps_in2[i2].mul, self.irreps_in2[i2].ir.dim
                x1 = xs[i1].reshape(u, d1, -1)
                mixing = torch.cat([ws[k].view(u, v) for k in ks], dim=0)  # (P·u, v)
                yw = (mixing @ ys[i2].reshape(v, d2 * n)).view(len(ks), u, d2, n)  # W_k y_j, all paths
                for k, const, ywk in zip(ks, consts, yw.unbind(0)):
                    g = torch.matmul(const, ywk).view(u, d1, self._out_dim(k), n)  # Σ_b C[a,b,:] (W y)[u,b]
                    outs[self.instructions[k].i_out] = _contract(x1, g).reshape(-1, n)
        if blocks:
            return outs
        like = next(o for o in outs if o is not None)
        return cat([o if o is not None else like.new_zeros(mul_ir.dim, n) for o, mul_ir in zip(outs, self.irreps_out)])


def linear_of_product(
    tp: DepthwiseTensorProduct,
    linears: Sequence[LinearFM],
    x: torch.Tensor | Pieces,
    y: torch.Tensor,
    weight: torch.Tensor | None = None,
    blocks: bool = False,
) -> list[torch.Tensor | Pieces]:
    """``[L.forward_fm(tp.forward_fm(x, y, weight, blocks=True), blocks) for L in linears]``, path by path.

    Every ``L`` must take ``tp.irreps_out`` as its ``pieces``. For attribute multiplicities 1, path
    ``k`` (input mul ``u``, ``d₁`` → ``d₃`` components) reaches the ``W`` outputs of ``L`` either as
    ``Rᵀ (Σ_a (w x)[:, a] z[a])`` (product first: ``u·d₁·d₃ + u·W·d₃`` multiplications per item) or as
    ``Σ_a (Rᵀ (w x))[:, a] z[a]`` (map first: ``u·W·d₁ + W·d₁·d₃``), whichever is cheaper; ``R``
    are the rows of ``L``'s weight matrix acting on the path.

    Returns
    -------
    list of (L.irreps_out.dim, n), or of :data:`Pieces` of ``L.irreps_out`` when ``blocks``
    """
    if not tp.unit_attr:
        products = tp.forward_fm(x, y, weight, blocks=True)
        return [lin.forward_fm(products, blocks) for lin in linears]
    n = y.shape[1]
    rows = [lin.piece_rows() for lin in linears]
    sums: list[list[torch.Tensor | None]] = [[None] * len(r) for r in rows]
    for k, xw, zk in tp.unit_paths(x, y, weight):
        u, d1, d3 = xw.shape[0], xw.shape[1], zk.shape[2]
        product = None
        for li, lin in enumerate(linears):
            if tp.instructions[k].i_out not in lin.slot_of_piece:
                continue
            g, r = lin.slot_of_piece[tp.instructions[k].i_out]
            r_k = rows[li][g][r]  # (u, W)
            w_out = r_k.shape[1]
            if u * w_out * d1 + w_out * d1 * d3 < u * d1 * d3 + u * w_out * d3:  # map first
                mapped = (r_k.t() @ xw.reshape(u, d1 * n)).view(w_out, d1, n)
                term = _contract(mapped, zk).reshape(w_out, d3 * n)
            else:
                product = _contract(xw, zk) if product is None else product
                term = r_k.t() @ product.reshape(u, d3 * n)
            sums[li][g] = term if sums[li][g] is None else sums[li][g] + term
    return [lin.finish(s, y, blocks) for lin, s in zip(linears, sums)]
