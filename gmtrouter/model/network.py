"""The GMTRouter network: input projections, a stack of heterogeneous graph layers, the preference head."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch_geometric.utils import scatter

from gmtrouter.graph.build import HeteroGraph, TargetBatch, metadata
from gmtrouter.graph.table import RATING_FEATURES
from gmtrouter.model.head import PreferenceHead
from gmtrouter.model.hgt import HGTLayer, HGTPlan
from gmtrouter.model.layers import make_layer

# The network's residual is bounded (in logits): a history unlike any in training can shift a score by at most
# this much, so a user's own Bradley-Terry deviation, which grows with their evidence, always has the last word.
RESIDUAL_BOUND = 2.0


@dataclass(frozen=True)
class NetConfig:
    """Shape of the network; saved with every checkpoint."""

    text_dim: int
    hidden: int = 64
    head_dim: int = 64
    heads: int = 4
    layers: int = 2
    dropout: float = 0.1
    multi_turn: bool = True
    layer: str = "hgt"
    response_text: bool = True
    turn_nodes: bool = True
    norm: str = "batch"
    head_products: bool = True

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


class GMTRouterNet(nn.Module):
    """Encode an interaction graph into node states, then score (user, query, LLM) triples.

    Users and turns start from one learned vector each, so a user is only what their graph says: a user the
    network never saw is encoded the same way as one it trained on. Queries and responses start from their
    text embeddings (the response also carries its rating); LLMs from the embedding of name and description.
    """

    def __init__(self, config: NetConfig, llm_text: torch.Tensor) -> None:
        super().__init__()
        self.config = config
        hidden = config.hidden
        self.register_buffer("llm_text", centred(llm_text.float()))  # [L, E]
        self.query_in = nn.Linear(config.text_dim, hidden)
        self.response_in = nn.Linear(3 * config.text_dim + RATING_FEATURES, hidden)
        self.llm_in = nn.Linear(config.text_dim, hidden)
        # Text embeddings are unit vectors (entries ~ 1/sqrt(E)); normalising the projections gives every
        # node type states of unit scale, so messages are not drowned by the layers' biases.
        self.input_norms = nn.ModuleDict({kind: nn.LayerNorm(hidden) for kind in ("query", "response", "llm")})
        self.user_start = nn.Parameter(torch.zeros(hidden))
        self.turn_start = nn.Parameter(torch.zeros(hidden))
        meta = metadata(config.multi_turn, config.turn_nodes)
        self.convs = nn.ModuleList(make_layer(config.layer, hidden, meta, config.heads) for _ in range(config.layers))
        types = meta[0]
        if config.norm == "batch":  # one BatchNorm per node type and layer
            self.norms = nn.ModuleList(
                nn.ModuleDict({t: nn.BatchNorm1d(hidden) for t in types}) for _ in range(config.layers)
            )
        else:
            self.norms = nn.ModuleList(nn.LayerNorm(hidden) for _ in range(config.layers))
        self.dropout = nn.Dropout(config.dropout)
        self.head = PreferenceHead(hidden, config.head_dim, config.heads, config.dropout, config.head_products)

    def set_llms(self, llm_text: torch.Tensor) -> None:
        """Start the LLM nodes from these text embeddings [L, E] (after an LLM joined)."""
        self.llm_text = centred(llm_text.float())

    def response_features(
        self, response_x: torch.Tensor, response_llm: torch.Tensor, response_group: torch.Tensor
    ) -> torch.Tensor:
        """[N, 3E + RATING_FEATURES]: text, text signed by the rating, the LLM's contrast to its rivals signed by
        the rating, and the rating features.

        The sign s = 2 * (rating normalised within its record) - 1 turns "liked this answer" into a direction in
        embedding space. The contrast e_m - mean(e of the record's LLMs) names whom the LLM beat or lost to:
        in a pairwise vote both turns carry (e_winner - e_loser) / 2, the direction a Bradley-Terry update takes.
        """
        text, rating = response_x[:, :-RATING_FEATURES], response_x[:, -RATING_FEATURES:]
        if not self.config.response_text:
            text = torch.zeros_like(text)
        sign = 2.0 * rating[:, :1] - 1.0
        llm = self.llm_text[response_llm]
        if len(response_group):
            groups = response_group - response_group.min()
            rivals = scatter(llm, groups, dim=0, reduce="mean")[groups]
        else:
            rivals = llm
        return torch.cat([text, text * sign, (llm - rivals) * sign, rating], dim=1)

    def initial_states(self, graph: HeteroGraph, start: dict[str, int] | None = None) -> dict[str, torch.Tensor]:
        """Layer-0 states of every node type (of the nodes numbered from `start[type]` on, if given)."""
        first = start or {}

        def rows(kind: str) -> int:
            return graph.num_nodes[kind] - first.get(kind, 0)

        responses = slice(first.get("response", 0), None)
        states = {
            "user": self.user_start.expand(rows("user"), -1),
            "turn": self.turn_start.expand(rows("turn"), -1),
            "query": self.project_query(graph.query_x[first.get("query", 0) :]),
            "response": self.input_norms["response"](
                self.response_in(
                    self.response_features(
                        graph.response_x[responses], graph.response_llm[responses], graph.response_group[responses]
                    )
                )
            ),
            "llm": self.input_norms["llm"](self.llm_in(self.llm_text))[first.get("llm", 0) :],
        }
        if not self.config.turn_nodes:
            del states["turn"]
        return states

    def project_query(self, query_x: torch.Tensor) -> torch.Tensor:
        """Layer-0 state of a query from its text embedding (also used for queries outside the graph)."""
        return self.input_norms["query"](self.query_in(query_x))

    def layer(
        self, index: int, states: dict[str, torch.Tensor], edge_index: dict, plan: HGTPlan | None = None
    ) -> dict[str, torch.Tensor]:
        """One message-passing layer with its normalisation; types that receive nothing keep their states."""
        conv = self.convs[index]
        updated = conv(states, edge_index, plan=plan) if plan is not None else conv(states, edge_index)
        norm = self.norms[index]
        return {
            kind: (norm[kind] if isinstance(norm, nn.ModuleDict) else norm)(self.dropout(updated[kind]))
            if updated.get(kind) is not None and (updated[kind].shape[0] > 1 or not self.training)
            else states[kind]
            for kind in states
        }

    def encode_layers(self, graph: HeteroGraph) -> list[dict[str, torch.Tensor]]:
        """Node states after every layer, [layer 0 (inputs), ..., last]."""
        layers = [self.initial_states(graph)]
        plan = self.plan(graph.edge_index, layers[0])
        for index in range(len(self.convs)):
            layers.append(self.layer(index, layers[-1], graph.edge_index, plan))
        return layers

    def plan(self, edge_index: dict, states: dict[str, torch.Tensor]) -> HGTPlan | None:
        """The HGT layers' index work for a graph, done once and shared by every layer (None for other layers)."""
        first = self.convs[0] if len(self.convs) else None
        if not isinstance(first, HGTLayer):
            return None
        return first.plan(edge_index, {kind: x.shape[0] for kind, x in states.items()})

    def adds_nothing(self) -> bool:
        """Whether the residual is 0 for every input: the head's last layer is still at its zero start (training
        kept step 0), so routing can skip the network and use the backbone alone, with the same scores."""
        last = self.head.mlp[-1]
        return not (last.weight.any() or last.bias.any())

    def encode(self, graph: HeteroGraph) -> dict[str, torch.Tensor]:
        """Final node states {type: [n, hidden]}."""
        return self.encode_layers(graph)[-1]

    @torch.no_grad()
    def update_layers(
        self, graph: HeteroGraph, layers: list[dict[str, torch.Tensor]], nodes: dict[str, torch.Tensor]
    ) -> list[dict[str, torch.Tensor]]:
        """Cached layers grown to the graph's new size, with `nodes` recomputed layer by layer.

        Every other node keeps its cached state; in the graph's neighbourhood of `nodes` those states are
        what the recomputation reads. This is exact for the recomputed nodes given their neighbours, and
        leaves the neighbours (LLMs, queries other users also asked) as they were: a full `encode_layers`
        refreshes them.
        """
        start = {kind: layers[0][kind].shape[0] for kind in layers[0]}
        fresh = self.initial_states(graph, start)
        grown = [{kind: torch.cat([layers[0][kind], fresh[kind]]) for kind in fresh}]
        for cached in layers[1:]:
            grown.append({kind: torch.cat([cached[kind], fresh[kind]]) for kind in fresh})
        compact, inverse, edges = _neighbourhood(graph, nodes)
        for index in range(len(self.convs)):
            states = {kind: grown[index][kind][compact[kind]] for kind in grown[index]}
            out = self.layer(index, states, edges)
            for kind, ids in nodes.items():
                if len(ids):
                    grown[index + 1][kind][ids] = out[kind][inverse[kind]]
        return grown

    def score(self, states: dict[str, torch.Tensor], batch: TargetBatch) -> torch.Tensor:
        """Scores [B, K] of the batch's candidate LLMs: the backbone's prior plus the head's residual (padding
        slots hold meaningless values)."""
        in_graph = batch.query_node >= 0
        graph_query = states["query"][batch.query_node.clamp(min=0)] if states["query"].shape[0] else None
        residual = self.head(
            states["user"][batch.user],
            self.project_query(batch.query_x),
            graph_query,
            in_graph,
            states["llm"][batch.llm],
        )
        residual = RESIDUAL_BOUND * torch.tanh(residual / RESIDUAL_BOUND)
        return residual if batch.prior is None else batch.prior + residual

    def forward(
        self,
        graph: HeteroGraph,
        batch: TargetBatch,
        prior_of: Callable[[dict[str, torch.Tensor]], torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Scores of the batch: the graph encoded, then `prior_of(states)` (the backbone, which may read the
        node states) as the batch's prior, then the head. One call, so DistributedDataParallel can wrap it."""
        states = self.encode(graph)
        if prior_of is not None:
            batch.prior = prior_of(states)
        return self.score(states, batch)


def _neighbourhood(
    graph: HeteroGraph, nodes: dict[str, torch.Tensor]
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict]:
    """The edges into `nodes`, renumbered over the nodes they touch.

    Returns (graph ids of the compact nodes per type, positions of `nodes` among them, compact edges).
    """
    targets = {kind: torch.zeros(n, dtype=torch.bool) for kind, n in graph.num_nodes.items()}
    for kind, ids in nodes.items():
        targets[kind][ids] = True
    kept, members = {}, {kind: [ids] for kind, ids in nodes.items()}
    for (src, rel, dst), edge in graph.edge_index.items():
        chosen = edge[:, targets[dst][edge[1]]]
        kept[src, rel, dst] = chosen
        members.setdefault(src, []).append(chosen[0])
        members.setdefault(dst, []).append(chosen[1])
    compact = {
        kind: torch.unique(torch.cat(members.get(kind, []) or [torch.zeros(0, dtype=torch.long)]))
        for kind in graph.num_nodes
    }
    edges = {
        (src, rel, dst): torch.stack([torch.searchsorted(compact[src], e[0]), torch.searchsorted(compact[dst], e[1])])
        for (src, rel, dst), e in kept.items()
    }
    inverse = {kind: torch.searchsorted(compact[kind], ids) for kind, ids in nodes.items()}
    return compact, inverse, edges


def centred(vectors: torch.Tensor) -> torch.Tensor:
    """Rows minus their mean, rescaled to unit length.

    Embeddings of LLM names are close to each other (cosine ~0.8 for "gpt3-6b-finetuning" and
    "gpt3-6b-verification"), so the differences that tell LLMs apart would be a small part of every vector.
    """
    if len(vectors) < 2:
        return vectors
    shifted = vectors - vectors.mean(dim=0, keepdim=True)
    return shifted / shifted.norm(dim=1, keepdim=True).clamp_min(1e-6)
