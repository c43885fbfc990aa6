"""e3nn modules of SE3Set evaluated on feature-major tensors: same parameters, same numbers.

SE3Set works on feature-major tensors ``(irreps.dim, n)``, the transpose of e3nn's ``(n,
irreps.dim)``: an irrep block ``mul × (2l+1)`` is then a contiguous ``(mul, 2l+1, n)`` array whose
last axis runs over atoms, hyperedges or incidences. Every equivariant operation becomes a matrix
product with a long inner dimension or an elementwise product over whole rows, instead of e3nn's
many small strided einsums and slices (whose gradients are zero-filled full-size tensors, once per
slice); force training, which differentiates twice, gains the most.

The subclasses keep e3nn's constructors, parameters and buffers (``state_dict`` keys and
checkpoints are unchanged), keep e3nn's own ``forward`` on ``(n, dim)`` tensors, and add
``forward_fm`` on feature-major tensors:

- :class:`LinearFM` (``o3.Linear``): one matrix product per irrep type and input piece;
- :class:`GateFM` (``e3nn.nn.Gate``) and :class:`ActivationFM` (``e3nn.nn.Activation``);
- the depthwise tensor product: :mod:`emgp_md.models.se3set.tp`.

Blocks can be handed over unconcatenated (:data:`Pieces`, None for blocks that are zero by
construction). :func:`cat` is a concatenation that is cheap to differentiate twice.
"""

from __future__ import annotations

from typing import Any

import torch
from e3nn import o3
from e3nn.nn import Activation, Gate


class _Cat(torch.autograd.Function):
    """``torch.cat`` whose backward pass is one ``split`` (see :func:`cat`)."""

    @staticmethod
    def forward(ctx: Any, dim: int, *tensors: torch.Tensor) -> torch.Tensor:
        ctx.dim, ctx.sizes = dim, [t.shape[dim] for t in tensors]
        return torch.cat(tensors, dim=dim)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        return (None, *grad.split(ctx.sizes, dim=ctx.dim))


def cat(tensors: list[torch.Tensor] | tuple[torch.Tensor, ...], dim: int = 0) -> torch.Tensor:
    """``torch.cat`` (same values and derivatives) that is cheap to differentiate twice.

    The backward pass of ``torch.cat`` cuts the gradient into slices; differentiating through them
    again (forces trained with ``create_graph=True``) zero-fills one full-size tensor per piece. Here
    the backward pass is one ``split``, whose own backward pass is one concatenation.
    """
    if len(tensors) == 1:
        return tensors[0]
    return _Cat.apply(dim % tensors[0].dim(), *tensors)


def split_rows(x: torch.Tensor, sizes: list[int]) -> tuple[torch.Tensor, ...]:
    """``x.split(sizes, dim=0)`` (one concatenation on the backward pass), or ``(x,)`` for one piece."""
    return x.split(sizes, dim=0) if len(sizes) > 1 else (x,)


Pieces = list[torch.Tensor | None]
"""Feature-major blocks ``(mul·(2l+1), n)`` of some irreps, in order; None: a block of zeros."""


class LinearFM(o3.Linear):
    """``o3.Linear`` with :meth:`forward_fm` on feature-major tensors.

    Parameters
    ----------
    *args, **kwargs
        ``o3.Linear``'s arguments.
    pieces : str or o3.Irreps, optional
        Irreps whose blocks :meth:`forward_fm` may receive as a list (:data:`Pieces`): a refinement
        of ``irreps_in`` such as the unsimplified output of a tensor product. Default ``irreps_in``.

    Raises
    ------
    ValueError
        Options outside SE3Set's use (external weights, ``f_in``/``f_out``, a bias on an output
        that no input reaches), or ``pieces`` that do not tile ``irreps_in``.
    """

    def __init__(self, *args: Any, pieces: str | o3.Irreps | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        weighted = [ins for ins in self.instructions if ins.i_in != -1]
        biased = [ins for ins in self.instructions if ins.i_in == -1]
        fed = {ins.i_out for ins in weighted if 0 not in ins.path_shape}
        if not self.internal_weights or kwargs.get("f_in") is not None or any(i.i_out not in fed for i in biased):
            raise ValueError("LinearFM needs internal weights, no f_in/f_out and biases only on fed outputs")
        pieces = o3.Irreps(pieces) if pieces is not None else self.irreps_in
        block_of_piece, remaining, i = [], 0, -1
        for mul, ir in pieces:
            if remaining == 0:
                i += 1
                remaining = self.irreps_in[i].mul if i < len(self.irreps_in) else 0
            if i >= len(self.irreps_in) or ir != self.irreps_in[i].ir or mul > remaining:
                raise ValueError(f"LinearFM pieces {pieces} do not tile irreps_in {self.irreps_in}")
            block_of_piece.append(i)
            remaining -= mul
        if remaining or i != len(self.irreps_in) - 1:
            raise ValueError(f"LinearFM pieces {pieces} do not tile irreps_in {self.irreps_in}")
        self._pieces = pieces
        self._piece_dims = [mul_ir.dim for mul_ir in pieces]
        self._weight_sizes = [ins.path_shape[0] * ins.path_shape[1] for ins in weighted]
        self._bias_sizes = [ins.path_shape[0] for ins in biased]
        self._bias_of = {ins.i_out: k for k, ins in enumerate(biased)}
        # one group per irrep type: (ir dim, input blocks, output blocks, its pieces, [(k, i_in, i_out, path weight)])
        self._groups: list[tuple[int, list[int], list[int], list[int], list[tuple[int, int, int, float]]]] = []
        for ir in dict.fromkeys(self.irreps_out[ins.i_out].ir for ins in weighted if 0 not in ins.path_shape):
            paths = [
                (k, ins.i_in, ins.i_out, ins.path_weight)
                for k, ins in enumerate(weighted)
                if self.irreps_out[ins.i_out].ir == ir and 0 not in ins.path_shape
            ]
            ins_blocks = sorted({p[1] for p in paths})
            group_pieces = [j for i_in in ins_blocks for j, b in enumerate(block_of_piece) if b == i_in]
            self._groups.append((ir.dim, ins_blocks, sorted({p[2] for p in paths}), group_pieces, paths))
        #: piece → (its group, its position among the group's pieces)
        self.slot_of_piece = {j: (g, r) for g, group in enumerate(self._groups) for r, j in enumerate(group[3])}

    def _group_matrix(
        self,
        weights: tuple[torch.Tensor, ...],
        ins_blocks: list[int],
        out_blocks: list[int],
        paths: list[tuple[int, int, int, float]],
    ) -> torch.Tensor:
        """(Σ mul_in, Σ mul_out) weight matrix of one irrep type, path weights included."""
        if len(paths) == 1:
            k, i_in, i_out, pw = paths[0]
            return weights[k].view(self.irreps_in[i_in].mul, self.irreps_out[i_out].mul) * pw
        by_pair = {(i_in, i_out): (k, pw) for k, i_in, i_out, pw in paths}
        rows = []
        for i_in in ins_blocks:
            u = self.irreps_in[i_in].mul
            row = []
            for i_out in out_blocks:
                w = self.irreps_out[i_out].mul
                k, pw = by_pair.get((i_in, i_out), (-1, 0.0))
                row.append(weights[k].view(u, w) * pw if k >= 0 else weights[0].new_zeros(u, w))
            rows.append(torch.cat(row, dim=1))
        return torch.cat(rows, dim=0)

    def piece_rows(self) -> list[tuple[torch.Tensor, ...]]:
        """Per group, the rows ``(mul_piece, Σ mul_out)`` of its weight matrix that act on each of its pieces."""
        ws = split_rows(self.weight, self._weight_sizes)
        return [
            split_rows(self._group_matrix(ws, ins_blocks, out_blocks, paths), [self._pieces[j].mul for j in pieces])
            for _, ins_blocks, out_blocks, pieces, paths in self._groups
        ]

    def finish(
        self,
        sums: list[torch.Tensor | None],
        like: torch.Tensor,
        blocks: bool = False,
        bias_scale: torch.Tensor | None = None,
    ) -> torch.Tensor | Pieces:
        """Outputs from the weighted sums of every group, ``(Σ mul_out, d·n)`` or None (no input).

        ``like`` (any, n) gives the number of columns, dtype and device; see :meth:`forward_fm`.
        """
        n = like.shape[1]
        bs = [
            b.view(-1, 1) if bias_scale is None else b.view(-1, 1) * bias_scale
            for b in split_rows(self.bias, self._bias_sizes)
        ]
        outs: Pieces = [None] * len(self.irreps_out)
        for (_, _, out_blocks, _, _), y in zip(self._groups, sums):
            muls = [self.irreps_out[i].mul for i in out_blocks]
            pieces = split_rows(y, muls) if y is not None else [None] * len(out_blocks)
            for i_out, piece in zip(out_blocks, pieces):
                bias = bs[self._bias_of[i_out]] if i_out in self._bias_of else None
                if piece is None:  # zero inputs: the bias alone
                    outs[i_out] = bias.expand(-1, n) if bias is not None else None
                else:
                    outs[i_out] = piece.reshape(-1, n) if bias is None else piece.reshape(-1, n) + bias
        if blocks:
            return outs
        return cat([o if o is not None else like.new_zeros(mul_ir.dim, n) for o, mul_ir in zip(outs, self.irreps_out)])

    def forward_fm(
        self, x: torch.Tensor | Pieces, blocks: bool = False, bias_scale: torch.Tensor | None = None
    ) -> torch.Tensor | Pieces:
        """Linear map of feature-major features.

        Parameters
        ----------
        x : (irreps_in.dim, n), or :data:`Pieces` of the ``pieces`` irreps (not all None)
        blocks : bool
            Return :data:`Pieces` of ``irreps_out`` (None for outputs no input reaches).
        bias_scale : (n,), optional
            Multiplies the bias of every column: the map of a sum of ``bias_scale[j]`` inputs is the
            sum of their maps.

        Returns
        -------
        (irreps_out.dim, n), or :data:`Pieces` when ``blocks``
        """
        xs = split_rows(x, self._piece_dims) if isinstance(x, torch.Tensor) else x
        like = next(p for p in xs if p is not None)
        sums: list[torch.Tensor | None] = []
        for (_, _, _, pieces, _), rows in zip(self._groups, self.piece_rows()):
            y = None  # (Σ mul_out, d·n): Σ over the pieces of (matrix rows)ᵀ @ piece
            for j, rows_j in zip(pieces, rows):
                if xs[j] is not None:
                    term = rows_j.t() @ xs[j].reshape(rows_j.shape[0], -1)
                    y = term if y is None else y + term
            sums.append(y)
        return self.finish(sums, like, blocks, bias_scale)


class GateFM(Gate):
    """e3nn ``Gate`` (takes its arguments) with :meth:`forward_fm`: split, activations, products.

    Raises
    ------
    ValueError
        If the input is not laid out as ``scalars | gates | gated`` or there are no gates.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._dims = [self.irreps_scalars.dim, self.irreps_gates.dim, self.irreps_gated.dim]
        with torch.no_grad():
            probe = torch.arange(self.irreps_in.dim, dtype=torch.float64)[None]
            in_order = torch.equal(torch.cat(self.sc(probe), dim=-1), probe)
        if not in_order or self._dims[1] == 0:
            raise ValueError(f"GateFM needs inputs ordered scalars | gates | gated, got {self.irreps_in}")
        self._gated_dims = [mul_ir.dim for mul_ir in self.irreps_gated]

    def forward_fm(self, x: torch.Tensor | Pieces, blocks: bool = False) -> torch.Tensor | Pieces:
        """Gate of feature-major features.

        Parameters
        ----------
        x : (irreps_in.dim, n), or :data:`Pieces` (no None) of ``irreps_in``
        blocks : bool
            Return :data:`Pieces`: the scalars, then every gated block.

        Returns
        -------
        (irreps_out.dim, n), or :data:`Pieces` when ``blocks``
        """
        ds, dg, _ = self._dims
        if not isinstance(x, torch.Tensor) and [p.shape[0] for p in x] == [ds + dg, *self._gated_dims]:
            scalars, gates = x[0].split([ds, dg], dim=0)  # the linear map's 0e block holds both
            gated = x[1:]
        else:
            scalars, gates, rest = (x if isinstance(x, torch.Tensor) else cat(x)).split(self._dims, dim=0)
            gated = split_rows(rest, self._gated_dims)
        n = scalars.shape[1]
        gates = split_rows(_activate(self.act_gates, gates), [mul for mul, _ in self.irreps_gated])
        out = [_activate(self.act_scalars, scalars)]
        for (mul, ir), block, gate in zip(self.irreps_gated, gated, gates):
            out.append((block.reshape(mul, ir.dim, n) * gate.unsqueeze(1)).view(-1, n))
        return out if blocks else cat(out)


class ActivationFM(Activation):
    """e3nn ``Activation`` (takes its arguments) with :meth:`forward_fm` on feature-major tensors."""

    def forward_fm(self, x: torch.Tensor | Pieces, blocks: bool = False) -> torch.Tensor | Pieces:
        """``x`` (irreps_in.dim, n) or :data:`Pieces` (no None) → (irreps_out.dim, n), or ``[it]`` when ``blocks``."""
        out = _activate(self, x if isinstance(x, torch.Tensor) else cat(x))
        return [out] if blocks else out


def _activate(module: Activation, x: torch.Tensor) -> torch.Tensor:
    """``module`` applied to feature-major ``x``; a single activation is applied directly (no slice)."""
    if len(module.paths) == 1 and module.paths[0][2] is not None:
        return module.paths[0][2](x)
    return module(x, dim=0)
