"""HGTLayer against torch_geometric's HGTConv: same parameters must give the same outputs and gradients."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor
from torch_geometric.nn import HGTConv

from gmtrouter.model.csr_attention import build_pattern, pattern_attention
from gmtrouter.model.head_stack import stack_per_head
from gmtrouter.model.hgt import HGTLayer, convert_pyg_state_dict

NODE_COUNTS = {"user": 7, "llm": 3, "query": 9, "response": 31, "turn": 31}
TARGETS = ("user", "query", "response", "llm")
EDGE_TYPES = [
    *[("turn", "to", t) for t in TARGETS],
    ("turn", "prev", "turn"),
    *[(t, "to", "turn") for t in TARGETS],
    ("turn", "next", "turn"),
]
TOL = 1e-4


def interaction_graph(seed: int = 0) -> dict[tuple[str, str, str], Tensor]:
    """Every turn links to a random user, llm and query, its own response and (mostly) the turn before."""
    g = torch.Generator().manual_seed(seed)
    turns = torch.arange(NODE_COUNTS["turn"])
    ends = {t: torch.randint(0, NODE_COUNTS[t], (turns.numel(),), generator=g) for t in ("user", "llm", "query")}
    ends["response"] = turns.clone()
    follows = turns[1:][torch.rand(turns.numel() - 1, generator=g) < 0.7]
    edges = {("turn", "to", t): torch.stack([turns, ends[t]]) for t in TARGETS}
    edges[("turn", "prev", "turn")] = torch.stack([follows - 1, follows])
    edges.update({(t, "to", "turn"): torch.stack([ends[t], turns]) for t in TARGETS})
    edges[("turn", "next", "turn")] = torch.stack([follows, follows - 1])
    # A repeated edge: both HGTConv and HGTLayer count it twice in the softmax.
    edges[("user", "to", "turn")] = torch.cat([edges[("user", "to", "turn")], torch.tensor([[0], [0]])], 1)
    return edges


def features(in_channels: dict[str, int], seed: int = 1) -> dict[str, Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {t: torch.randn(n, in_channels[t], generator=g) for t, n in NODE_COUNTS.items()}


def pyg_conv(in_channels: dict[str, int], out: int, heads: int, edge_types: list) -> HGTConv:
    torch.manual_seed(0)
    conv = HGTConv(in_channels, out, (list(NODE_COUNTS), edge_types), heads=heads)
    with torch.no_grad():  # HGTConv starts p_rel and skip at one; random values exercise their mapping
        for p in [*conv.p_rel.values(), *conv.skip.values()]:
            p.uniform_(-1.5, 1.5)
    return conv


def run(module: torch.nn.Module, x: dict[str, Tensor], edges: dict) -> tuple[dict, list[Tensor]]:
    """Outputs, and gradients of a fixed scalar with respect to the inputs."""
    xs = {t: v.clone().requires_grad_() for t, v in x.items()}
    out = module(xs, edges)
    loss = sum((o * torch.linspace(-1, 1, o.numel()).view_as(o)).sum() + (o**2).sum() for o in out.values())
    loss.backward()
    return out, [xs[t].grad if xs[t].grad is not None else torch.zeros_like(xs[t]) for t in NODE_COUNTS]


def assert_same(conv: HGTConv, layer: HGTLayer, x: dict[str, Tensor], edges: dict) -> None:
    ref, ref_grads = run(conv, x, edges)
    out, grads = run(layer, x, edges)
    assert list(out) == list(ref)
    for t in ref:
        torch.testing.assert_close(out[t], ref[t], atol=TOL, rtol=TOL)
    for g, rg in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, rg, atol=TOL, rtol=TOL)
    # Parameter gradients, mapped like the parameters themselves.
    ref_param_grads = {k: (p.grad if p.grad is not None else torch.zeros_like(p)) for k, p in conv.named_parameters()}
    mapped = convert_pyg_state_dict(ref_param_grads, layer.node_types, layer.edge_types, layer.heads)
    for k, p in layer.named_parameters():
        g = p.grad if p.grad is not None else torch.zeros_like(p)
        torch.testing.assert_close(g, mapped[k], atol=TOL, rtol=TOL, msg=f"gradient of {k}")


@pytest.mark.parametrize("heads", [1, 4])
@pytest.mark.parametrize("dims", ["same", "mixed"])
def test_matches_hgtconv(heads: int, dims: str) -> None:
    out = 16
    # "mixed": some types enter with other widths, so their residual gate is skipped as in HGTConv.
    in_channels = {t: out if dims == "same" or t in ("turn", "llm") else 12 + i for i, t in enumerate(NODE_COUNTS)}
    conv = pyg_conv(in_channels, out, heads, EDGE_TYPES)
    layer = HGTLayer.from_pyg(conv)
    assert_same(conv, layer, features(in_channels), interaction_graph())


def test_type_without_incoming_relation_and_empty_relations() -> None:
    # No relation ends at "llm"; "prev" has no edges; "next" is missing from the call; every relation into
    # "query" is empty, so "query" is computed from a zero aggregate, as HGTConv does.
    edge_types = [et for et in EDGE_TYPES if et[2] != "llm"]
    edges = {et: ei for et, ei in interaction_graph().items() if et in edge_types and et[1] != "next"}
    edges[("turn", "prev", "turn")] = torch.zeros(2, 0, dtype=torch.long)
    edges[("turn", "to", "query")] = torch.zeros(2, 0, dtype=torch.long)
    in_channels = dict.fromkeys(NODE_COUNTS, 8)
    conv = pyg_conv(in_channels, 8, 2, edge_types)
    layer = HGTLayer.from_pyg(conv)
    x = dict(reversed(list(features(in_channels).items())))  # outputs still come in metadata order
    assert_same(conv, layer, x, edges)
    out = layer(x, edges)
    assert list(out) == ["user", "query", "response", "turn"]


def test_no_edges_at_all() -> None:
    in_channels = dict.fromkeys(NODE_COUNTS, 8)
    layer = HGTLayer(in_channels, 8, (list(NODE_COUNTS), EDGE_TYPES), heads=2)
    x = features(in_channels)
    out = layer(x, {})
    for t, o in out.items():  # zero aggregate: out_lin bias, gated with the input
        gate = torch.sigmoid(layer.skip[t])
        expected = gate * layer.out_lin[t].bias.expand_as(o) + (1 - gate) * x[t]
        torch.testing.assert_close(o, expected)


def test_plan_reused_and_order_free() -> None:
    in_channels = dict.fromkeys(NODE_COUNTS, 16)
    edges = interaction_graph()
    x = features(in_channels)
    layers = [HGTLayer(in_channels, 16, (list(NODE_COUNTS), EDGE_TYPES), heads=4) for _ in range(2)]
    plan = layers[0].plan(edges, {t: v.size(0) for t, v in x.items()})
    shuffled = dict(reversed(list(edges.items())))
    for layer in layers:
        direct = layer(x, edges)
        for t, o in layer(x, plan=plan).items():
            torch.testing.assert_close(o, direct[t])
        for t, o in layer(x, shuffled).items():
            torch.testing.assert_close(o, direct[t], atol=1e-6, rtol=1e-5)


def test_bad_inputs_are_refused() -> None:
    in_channels = dict.fromkeys(NODE_COUNTS, 8)
    layer = HGTLayer(in_channels, 8, (list(NODE_COUNTS), EDGE_TYPES), heads=2)
    x = features(in_channels)
    plan = layer.plan(interaction_graph(), {t: v.size(0) for t, v in x.items()})
    with pytest.raises(ValueError, match="nodes of type"):
        layer({**x, "turn": x["turn"][:-1]}, plan=plan)
    with pytest.raises(ValueError, match="not in the layer's metadata"):
        layer(x, {("user", "likes", "llm"): torch.zeros(2, 0, dtype=torch.long)})
    with pytest.raises(ValueError, match="out of range"):
        layer(x, {("turn", "to", "llm"): torch.tensor([[0], [NODE_COUNTS["llm"]]])})
    with pytest.raises(ValueError, match="divisible"):
        HGTLayer(8, 10, (list(NODE_COUNTS), EDGE_TYPES), heads=4)
    with pytest.raises(ValueError, match="another head count"):
        HGTLayer(in_channels, 8, (list(NODE_COUNTS), EDGE_TYPES), heads=4)(x, plan=plan)


def dense_attention(q: Tensor, k: Tensor, v: Tensor, src: Tensor, dst: Tensor, heads: int) -> Tensor:
    """Reference: dense softmax per head, edges counted with multiplicity; rows without edges give 0."""
    n_dst, n_src, dim = q.size(0) // heads, k.size(0) // heads, q.size(1)
    counts = torch.zeros(n_dst, n_src, dtype=q.dtype).index_put_((dst, src), torch.ones_like(src, dtype=q.dtype), True)
    qh, kh, vh = (t.view(-1, heads, dim).transpose(0, 1) for t in (q, k, v))
    scores = qh @ kh.transpose(1, 2)  # [H, n_dst, n_src]
    weights = torch.exp(scores - scores.amax(-1, keepdim=True)) * counts
    weights = weights / weights.sum(-1, keepdim=True).clamp_min(1e-300)
    return (weights @ vh).transpose(0, 1).reshape(-1, dim)


def test_pattern_attention_against_dense_and_gradcheck() -> None:
    g = torch.Generator().manual_seed(3)
    heads, dim, n_src, n_dst = 2, 2, 4, 4
    src = torch.tensor([0, 3, 3, 1, 1, 2, 2, 0])
    dst = torch.tensor([2, 0, 0, 2, 1, 0, 2, 1])  # destination 3 has no edges; (3 -> 0) appears twice
    pattern = build_pattern(src, dst, n_src, n_dst, heads)
    q, k, v = (torch.randn(n * heads, dim, generator=g, dtype=torch.float64) for n in (n_dst, n_src, n_src))
    out = pattern_attention(q, k, v, pattern)
    torch.testing.assert_close(out, dense_attention(q, k, v, src, dst, heads))
    assert torch.all(out.view(n_dst, heads, dim)[3] == 0)
    inputs = tuple(t.clone().requires_grad_() for t in (q, k, v))
    assert torch.autograd.gradcheck(lambda a, b, c: pattern_attention(a, b, c, pattern), inputs)


def test_stack_per_head_against_block_diagonal_and_gradcheck() -> None:
    g = torch.Generator().manual_seed(4)
    heads, dim = 3, 2
    a, b = (torch.randn(n, heads * dim, generator=g, dtype=torch.float64) for n in (4, 5))
    w1, w2, w3 = (torch.randn(heads, dim, dim, generator=g, dtype=torch.float64) for _ in range(3))
    xs, ws = [a, b, a], [w1, w2, w3]  # `a` feeds two blocks, like a turn's keys for "prev" and "next"
    expected = torch.cat([x @ torch.block_diag(*w.unbind(0)) for x, w in zip(xs, ws, strict=True)])
    torch.testing.assert_close(stack_per_head(xs, ws), expected)
    inputs = tuple(t.clone().requires_grad_() for t in (a, b, w1, w2, w3))
    assert torch.autograd.gradcheck(lambda a, b, w1, w2, w3: stack_per_head([a, b, a], [w1, w2, w3]), inputs)
