"""Feature-major SE3Set operations against e3nn's own modules: values, first and second derivatives,
unconcatenated pieces, zero blocks, the path-by-path ``linear_of_product`` and the per-dtype constants."""

from __future__ import annotations

import pytest
import torch
from e3nn import o3

from emgp_md.models.se3set.layers import depthwise_tensor_product, gate_activation, refresh_wigner_3j_
from emgp_md.models.se3set.ops import LinearFM, cat
from emgp_md.models.se3set.tp import DepthwiseTensorProduct, linear_of_product

V = o3.Irreps("6x0e+4x1o+3x2e")
SH = o3.Irreps.spherical_harmonics(2)


def _randomize_(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype))
    module = module.double()
    refresh_wigner_3j_(module)  # e3nn's own forward at full precision, for the comparisons
    return module


def _inputs(*dims: int, n: int = 7, seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(n, d, generator=gen, dtype=torch.float64) for d in dims]


def test_cat_has_the_derivatives_of_torch_cat() -> None:
    a, b = (torch.randn(3, 4, dtype=torch.float64, requires_grad=True) for _ in range(2))
    c = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    assert torch.equal(cat([a, c, b]), torch.cat([a, c, b]))
    assert torch.autograd.gradgradcheck(lambda *t: cat(list(t)) ** 3, (a, c, b))
    assert torch.autograd.gradgradcheck(lambda *t: cat(list(t), dim=1) ** 3, (a, b))


@pytest.mark.parametrize(
    ("irreps_in", "irreps_out", "pieces"),
    [
        ("6x0e+4x1o+3x2e", "5x0e+2x1o+4x2e", None),
        ("8x0e+3x0e+4x1o", "5x0e+2x0e+4x1o+2x2e", "5x0e+3x0e+3x0e+1x1o+3x1o"),  # unreached 2e, refined pieces
        ("1x0e", "6x0e+4x1o+3x2e", None),
    ],
)
def test_linear_matches_e3nn(irreps_in: str, irreps_out: str, pieces: str | None) -> None:
    lin = _randomize_(LinearFM(irreps_in, irreps_out, biases=True, pieces=pieces), seed=1)
    (x,) = _inputs(o3.Irreps(irreps_in).dim)
    expected = lin(x)  # e3nn's own forward, item-major
    torch.testing.assert_close(lin.forward_fm(x.t().contiguous()).t(), expected, rtol=0, atol=1e-12)
    chunks = list(x.t().split([mul_ir.dim for mul_ir in o3.Irreps(pieces or irreps_in)], dim=0))
    out = lin.forward_fm(chunks, blocks=True)
    assert len(out) == len(lin.irreps_out)
    torch.testing.assert_close(
        torch.cat(
            [
                o if o is not None else torch.zeros(mul_ir.dim, x.shape[0], dtype=x.dtype)
                for o, mul_ir in zip(out, lin.irreps_out)
            ]
        ).t(),
        expected,
        rtol=0,
        atol=1e-12,
    )


def test_linear_bias_scale_and_zero_pieces() -> None:
    lin = _randomize_(LinearFM(V, V, biases=True), seed=2)
    (x,) = _inputs(V.dim, n=5)
    # the map of a sum of 5 inputs is the sum of the 5 maps
    summed = lin.forward_fm(x.sum(0, keepdim=True).t(), bias_scale=torch.full((1,), 5.0, dtype=x.dtype))
    torch.testing.assert_close(summed.t(), lin(x).sum(0, keepdim=True), rtol=0, atol=1e-12)
    # None pieces are zeros; all-None groups keep their bias
    pieces = list(x.t().split([mul_ir.dim for mul_ir in V], dim=0))
    zeroed = x.clone()
    zeroed[:, V.slices()[0]] = 0
    out = lin.forward_fm([None, *pieces[1:]])
    torch.testing.assert_close(out.t(), lin(zeroed), rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="do not tile"):
        LinearFM(V, V, pieces="6x0e+4x1o+2x2e")


@pytest.mark.parametrize(("irreps_attr", "shared"), [(SH, False), (SH, True), (V, True)])
def test_depthwise_tensor_product_matches_e3nn(irreps_attr: o3.Irreps, shared: bool) -> None:
    tp = _randomize_(depthwise_tensor_product(V, irreps_attr, V, internal_weights=shared), seed=3)
    assert isinstance(tp, DepthwiseTensorProduct)
    x, y, w = _inputs(V.dim, irreps_attr.dim, tp.weight_numel)
    weight = None if shared else w
    expected = tp(x, y, weight)
    fm = tp.forward_fm(x.t(), y.t().contiguous(), None if shared else w.t().contiguous())
    torch.testing.assert_close(fm.t(), expected, rtol=0, atol=1e-12)
    # one column of x is broadcast; None blocks contribute nothing
    x0 = x[:1].clone()
    x0[:, V.slices()[1]] = 0
    broadcast = tp.forward_fm(
        [x0.t()[V.slices()[0]], None, x0.t()[V.slices()[2]]], y.t().contiguous(), None if shared else w.t().contiguous()
    )
    torch.testing.assert_close(broadcast.t(), tp(x0.expand(x.shape[0], -1), y, weight), rtol=0, atol=1e-12)


@pytest.mark.parametrize("shared", [False, True])
def test_second_derivatives_match_e3nn(shared: bool) -> None:
    """Force training differentiates twice: compare Hessian-vector products with e3nn's."""
    tp = _randomize_(depthwise_tensor_product(V, SH, V, internal_weights=shared), seed=4)
    lin = _randomize_(LinearFM(tp.irreps_out.simplify(), V, biases=True, pieces=tp.irreps_out), seed=5)
    x, y, w, r = _inputs(V.dim, SH.dim, tp.weight_numel, V.dim, n=4)

    def grads(fm: bool) -> list[torch.Tensor]:
        tp.zero_grad(set_to_none=True)
        lin.zero_grad(set_to_none=True)
        xs, ys, ws = (t.clone().requires_grad_(True) for t in (x, y, w))
        weight = None if shared else ws
        if fm:
            out = linear_of_product(tp, [lin], xs.t(), ys.t(), None if shared else ws.t())[0].t()
        else:
            out = lin(tp(xs, ys, weight))
        inputs = [xs, ys] if shared else [xs, ys, ws]
        first = torch.autograd.grad((out * r).sum(), inputs, create_graph=True)
        sum(g.pow(2).sum() for g in first).backward()
        return [t.grad for t in inputs] + [p.grad for p in (*tp.parameters(), *lin.parameters())]

    for got, expected in zip(grads(True), grads(False)):
        torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


def test_linear_of_product_matches_map_of_product() -> None:
    tp = _randomize_(depthwise_tensor_product(V, SH, V, internal_weights=False), seed=6)
    out_irreps = [o3.Irreps("3x0e"), o3.Irreps("2x0e+9x1o+1x2e"), o3.Irreps("7x0e+1x1o+8x2e")]  # both orders
    linears = [
        _randomize_(LinearFM(tp.irreps_out.simplify(), irreps, biases=True, pieces=tp.irreps_out), seed=7 + k)
        for k, irreps in enumerate(out_irreps)
    ]
    x, y, w = (t.t().contiguous() for t in _inputs(V.dim, SH.dim, tp.weight_numel))
    product = tp.forward_fm(x, y, w, blocks=True)
    for got, lin in zip(linear_of_product(tp, linears, x, y, w), linears):
        torch.testing.assert_close(got, lin.forward_fm(product), rtol=0, atol=1e-12)


def test_gate_matches_e3nn() -> None:
    gate = gate_activation(V)
    (x,) = _inputs(gate.irreps_in.dim)
    expected = gate(x)
    torch.testing.assert_close(gate.forward_fm(x.t()).t(), expected, rtol=0, atol=1e-14)
    # blocks of the preceding linear map (scalars and gates in one 0e block) in, blocks out
    blocks = list(x.t().split([mul_ir.dim for mul_ir in gate.irreps_in], dim=0))
    assert len(blocks) == 3
    out = gate.forward_fm(blocks, blocks=True)
    assert [o.shape[0] for o in out] == [mul_ir.dim for mul_ir in gate.irreps_out]
    torch.testing.assert_close(torch.cat(out).t(), expected, rtol=0, atol=1e-14)
    scalars = gate_activation(o3.Irreps("5x0e"))
    torch.testing.assert_close(scalars.forward_fm(x[:, :5].t()).t(), scalars(x[:, :5]), rtol=0, atol=1e-14)
    torch.testing.assert_close(scalars.forward_fm([x[:, :5].t()], blocks=True)[0].t(), scalars(x[:, :5]))


def test_state_dict_keys_and_dtype_constants() -> None:
    """Same parameters and buffers as e3nn's modules; the Clebsch–Gordan constants follow the dtype."""
    torch.manual_seed(0)
    tp = depthwise_tensor_product(V, SH, V, internal_weights=True)
    plain = o3.TensorProduct(
        tp.irreps_in1,
        tp.irreps_in2,
        tp.irreps_out,
        [(i.i_in1, i.i_in2, i.i_out, i.connection_mode, i.has_weight) for i in tp.instructions],
        internal_weights=True,
        shared_weights=True,
    )
    assert tp.state_dict().keys() == plain.state_dict().keys()
    assert LinearFM(V, V).state_dict().keys() == o3.Linear(V, V).state_dict().keys()
    x, y = _inputs(V.dim, SH.dim)
    single = tp.forward_fm(x.t().float(), y.t().contiguous().float())
    assert single.dtype == torch.float32
    tp = tp.double()
    refresh_wigner_3j_(tp)
    torch.testing.assert_close(tp.forward_fm(x.t(), y.t().contiguous()).t(), tp(x, y), rtol=0, atol=1e-13)
    torch.testing.assert_close(single.double(), tp.forward_fm(x.t(), y.t().contiguous()), rtol=1e-5, atol=1e-5)
