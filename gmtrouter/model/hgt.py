"""Heterogeneous graph transformer layer (HGT, Hu et al. 2020), numerically equal to PyG's `HGTConv`.

For node type t with input x_t [N_t, F_t], H heads of D = C / H channels, and relation r = (s, name, t):

    k_s, q_t, v_s = x W_k + b_k, x W_q + b_q, x W_v + b_v        # per node type, [N, C] viewed [N, H, D]
    k_r[j, h] = k_s[j, h] @ K_r[h] * p_r[h] / sqrt(D)            # per SOURCE node, K_r: [H, D, D]
    v_r[j, h] = v_s[j, h] @ V_r[h]                               # per source node,  V_r: [H, D, D]
    a[e, h]   = softmax over ALL edges e = (j -> i) into i, of every relation into t, of q_t[i, h] . k_r[j, h]
    m_t[i, h] = sum_e a[e, h] * v_r[j, h]                        # [N_t, H, D] -> [N_t, C]
    o_t       = gelu(m_t) W_o + b_o                              # per node type, [N_t, C]
    y_t       = sigmoid(s_t) * o_t + (1 - sigmoid(s_t)) * x_t    # only when F_t == C; else y_t = o_t

Output holds every node type of x_dict that is the destination of some relation of the metadata, in
metadata order; a type that is the destination of none is absent (as in HGTConv). A destination type whose
relations carry no edges in this call gets y_t from a zero m_t, again as HGTConv does. Unlike HGTConv (which
assumes edge_index_dict lists relations in metadata order), the order of edge_index_dict does not matter.

Speed: the relation matrices act once per source node, and the attention runs on sparse CSR kernels over a
per-graph `HGTPlan` (see csr_attention.py). Build the plan once with `layer.plan(...)` and pass it to every
layer and step that sees the same graph; without a plan, forward builds one per call.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gmtrouter.model.csr_attention import AttentionPattern, build_pattern, pattern_attention
from gmtrouter.model.head_stack import stack_per_head

EdgeType = tuple[str, str, str]
Metadata = tuple[Sequence[str], Sequence[EdgeType]]


@dataclass(frozen=True)
class DstPlan:
    """All relations into one destination type, as one attention pattern over stacked source blocks."""

    relations: tuple[tuple[int, str], ...]  # (relation index, source type), in the order of key blocks
    pattern: AttentionPattern


@dataclass(frozen=True)
class HGTPlan:
    """Graph-dependent index work of an HGT layer, done once for a fixed graph and reused across calls."""

    heads: int
    edge_types: tuple[EdgeType, ...]
    num_nodes: dict[str, int]
    by_dst: dict[str, DstPlan]


def build_plan(
    edge_types: Sequence[EdgeType],
    heads: int,
    edge_index_dict: Mapping[EdgeType, Tensor],
    num_nodes_dict: Mapping[str, int],
) -> HGTPlan:
    """Stack every relation's sources per destination type and build that type's CSR pattern.

    Relations with no edges are left out (they add nothing); a destination whose relations are all empty
    gets an empty pattern.
    """
    index = {tuple(et): i for i, et in enumerate(edge_types)}
    grouped: dict[str, list[tuple[int, EdgeType]]] = {}
    for et, ei in edge_index_dict.items():
        et = tuple(et)
        if et not in index:
            raise ValueError(f"edge type {et} is not in the layer's metadata")
        if ei.dim() != 2 or ei.size(0) != 2:
            raise ValueError(f"edge_index of {et} must have shape [2, E], got {tuple(ei.shape)}")
        grouped.setdefault(et[2], []).append((index[et], et))

    by_dst: dict[str, DstPlan] = {}
    for dst_type, rels in grouped.items():
        rels.sort()
        srcs, dsts, relations, offset = [], [], [], 0
        for r, et in rels:
            ei = edge_index_dict[et]
            if ei.size(1) == 0:
                continue
            srcs.append(ei[0].long() + offset)
            dsts.append(ei[1].long())
            relations.append((r, et[0]))
            offset += _count(num_nodes_dict, et[0])
        empty = torch.zeros(0, dtype=torch.long)
        src = torch.cat(srcs) if srcs else empty
        dst = torch.cat(dsts) if dsts else empty
        pattern = build_pattern(src, dst, offset, _count(num_nodes_dict, dst_type), heads)
        by_dst[dst_type] = DstPlan(tuple(relations), pattern)
    return HGTPlan(heads, tuple(tuple(et) for et in edge_types), dict(num_nodes_dict), by_dst)


def _count(num_nodes_dict: Mapping[str, int], node_type: str) -> int:
    if node_type not in num_nodes_dict:
        raise KeyError(f"no node count (or features) for node type {node_type!r}")
    return int(num_nodes_dict[node_type])


def convert_pyg_state_dict(
    state: Mapping[str, Tensor], node_types: Sequence[str], edge_types: Sequence[EdgeType], heads: int
) -> dict[str, Tensor]:
    """Map an HGTConv state dict to HGTLayer's layout.

    HGTConv computes k, q and v with one Linear per node type (output rows [k | q | v]); here they are three.
    Its relation matrices sit in one HeteroLinear of R * H types, type h * R + r, each a [D, D] matrix
    applied as row vector times matrix; here each relation r has its own [H, D, D]. p_rel is keyed by
    relation index instead of the joined edge type.
    """
    num_rel = len(edge_types)
    out: dict[str, Tensor] = {}
    for t in node_types:
        for name in ("weight", "bias"):
            for i, part in enumerate(state[f"kqv_lin.lins.{t}.{name}"].chunk(3)):
                out[f"{'kqv'[i]}_lin.{t}.{name}"] = part
            out[f"out_lin.{t}.{name}"] = state[f"out_lin.lins.{t}.{name}"]
        out[f"skip.{t}"] = state[f"skip.{t}"]
    for name in ("k_rel", "v_rel"):
        w = state[f"{name}.weight"]
        w = w.view(heads, num_rel, w.size(-2), w.size(-1))
        out.update({f"{name}.{r}": w[:, r] for r in range(num_rel)})
    out.update({f"p_rel.{r}": state[f"p_rel.{'__'.join(et)}"].view(heads) for r, et in enumerate(edge_types)})
    return out


class HGTLayer(nn.Module):
    """One HGT layer; same arguments, outputs and (mapped) parameters as torch_geometric's HGTConv.

    Parameters (relation r indexes the metadata's edge types, C = out_channels = H * D):
      k_lin[t], q_lin[t], v_lin[t]: Linear(F_t, C)
      k_rel[r], v_rel[r]:           [H, D, D]  key / value matrix per head (row vector times matrix)
      p_rel[r]:                     [H]        attention prior per head
      out_lin[t]:                   Linear(C, C)
      skip[t]:                      [1]        gate logit of the residual
    One tensor per type and relation: indexing into stacked parameters would cost, in every backward pass,
    a zero-filled gradient of the whole stack per index.
    """

    def __init__(
        self,
        in_channels: int | Mapping[str, int],
        out_channels: int,
        metadata: Metadata,
        heads: int = 1,
    ) -> None:
        super().__init__()
        node_types, edge_types = metadata
        if out_channels % heads != 0:
            raise ValueError(f"out_channels ({out_channels}) must be divisible by heads ({heads})")
        if not isinstance(in_channels, Mapping):
            in_channels = dict.fromkeys(node_types, in_channels)
        self.node_types = list(node_types)
        self.edge_types = [tuple(et) for et in edge_types]
        self.in_channels = {t: int(in_channels[t]) for t in self.node_types}
        self.out_channels = out_channels
        self.heads = heads
        self._dst_types = {et[2] for et in self.edge_types}

        dim, num_rel = out_channels // heads, len(self.edge_types)
        types = self.node_types
        self.k_lin = nn.ModuleDict({t: nn.Linear(self.in_channels[t], out_channels) for t in types})
        self.q_lin = nn.ModuleDict({t: nn.Linear(self.in_channels[t], out_channels) for t in types})
        self.v_lin = nn.ModuleDict({t: nn.Linear(self.in_channels[t], out_channels) for t in types})
        self.out_lin = nn.ModuleDict({t: nn.Linear(out_channels, out_channels) for t in types})
        self.k_rel = nn.ParameterList([torch.empty(heads, dim, dim) for _ in range(num_rel)])
        self.v_rel = nn.ParameterList([torch.empty(heads, dim, dim) for _ in range(num_rel)])
        self.p_rel = nn.ParameterList([torch.empty(heads) for _ in range(num_rel)])
        self.skip = nn.ParameterDict({t: nn.Parameter(torch.empty(1)) for t in types})
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Same distributions as HGTConv: torch Linear defaults, U(+-1/sqrt(D)) relations, ones elsewhere.

        (HGTConv draws k, q and v as one Linear of fan-in F_t; three Linears of fan-in F_t draw alike.)
        """
        for lins in (self.k_lin, self.q_lin, self.v_lin, self.out_lin):
            for lin in lins.values():
                lin.reset_parameters()
        bound = 1.0 / math.sqrt(self.out_channels // self.heads)
        for w in [*self.k_rel, *self.v_rel]:
            nn.init.uniform_(w, -bound, bound)
        for p in [*self.p_rel, *self.skip.values()]:
            nn.init.ones_(p)

    @classmethod
    def from_pyg(cls, conv: nn.Module) -> HGTLayer:
        """A layer with the same configuration and parameters as a torch_geometric HGTConv."""
        layer = cls(conv.in_channels, conv.out_channels, (conv.node_types, conv.edge_types), conv.heads)
        layer.load_pyg_state_dict(conv.state_dict())
        return layer

    def load_pyg_state_dict(self, state: Mapping[str, Tensor]) -> None:
        """Load parameters saved from an HGTConv with the same metadata, channels and heads."""
        self.load_state_dict(convert_pyg_state_dict(state, self.node_types, self.edge_types, self.heads))

    def plan(self, edge_index_dict: Mapping[EdgeType, Tensor], num_nodes_dict: Mapping[str, int]) -> HGTPlan:
        """Precompute the graph's index work; valid for every layer with this metadata and head count."""
        return build_plan(self.edge_types, self.heads, edge_index_dict, num_nodes_dict)

    def forward(
        self,
        x_dict: Mapping[str, Tensor],
        edge_index_dict: Mapping[EdgeType, Tensor] | None = None,
        plan: HGTPlan | None = None,
    ) -> dict[str, Tensor]:
        """Outputs {type: [N_t, C]} for x_dict {type: [N_t, F_t]} on edges {(s, rel, t): [2, E]}.

        A plan from `self.plan` (or any layer's with the same metadata and heads) stands for the edges;
        when one is given, edge_index_dict is not read.
        """
        if plan is None:
            if edge_index_dict is None:
                raise ValueError("give edge_index_dict or a plan")
            plan = self.plan(edge_index_dict, {t: x.size(0) for t, x in x_dict.items()})
        else:
            self._check_plan(plan, x_dict)

        c = self.out_channels
        needed = set(plan.by_dst) | {s for dp in plan.by_dst.values() for _, s in dp.relations}
        kqv = {t: (self.k_lin[t](x), self.q_lin[t](x), self.v_lin[t](x)) for t, x in x_dict.items() if t in needed}

        out: dict[str, Tensor] = {}
        for t in self.node_types:  # metadata order, as HGTConv
            if t not in x_dict or t not in self._dst_types:
                continue
            x, dp = x_dict[t], plan.by_dst.get(t)
            m = x.new_zeros(x.size(0), c) if dp is None or dp.pattern.nnz == 0 else self._attend(dp, kqv[t][1], kqv)
            o = self.out_lin[t](F.gelu(m))
            if o.size(-1) == x.size(-1):
                gate = torch.sigmoid(self.skip[t])
                o = gate * o + (1 - gate) * x
            out[t] = o
        return out

    def _attend(self, dp: DstPlan, q: Tensor, kqv: Mapping[str, tuple[Tensor, Tensor, Tensor]]) -> Tensor:
        """Aggregated messages [N_t, C] for one destination type with queries q [N_t, C]."""
        heads, dim = self.heads, self.out_channels // self.heads
        # The prior and the 1/sqrt(D) scale fold into the key matrices: [H, D, D] products once per call.
        k_weights = [self.k_rel[r] * (self.p_rel[r] / math.sqrt(dim)).view(heads, 1, 1) for r, _ in dp.relations]
        v_weights = [self.v_rel[r] for r, _ in dp.relations]
        # [sum of source counts, C], one block per relation in plan order (the pattern's column blocks).
        k = stack_per_head([kqv[s][0] for _, s in dp.relations], k_weights)
        v = stack_per_head([kqv[s][2] for _, s in dp.relations], v_weights)
        m = pattern_attention(q.reshape(-1, dim), k.view(-1, dim), v.view(-1, dim), dp.pattern)
        return m.view(q.size(0), self.out_channels)

    @torch.no_grad()
    def _check_plan(self, plan: HGTPlan, x_dict: Mapping[str, Tensor]) -> None:
        if plan.heads != self.heads or plan.edge_types != tuple(self.edge_types):
            raise ValueError("plan was built for another head count or metadata")
        for t, n in plan.num_nodes.items():
            if t in x_dict and x_dict[t].size(0) != n:
                raise ValueError(f"plan expects {n} nodes of type {t!r}, x_dict has {x_dict[t].size(0)}")
