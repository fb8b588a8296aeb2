"""What the two graph baselines share: task nodes, typed edge lists, a homogeneous GNN and a scoring head.

Both graphs hold several node types, but the network is homogeneous (one set of weights for every node and
edge): each node starts from its type's projected features plus a learned node-type embedding, and each
edge carries a one-hot of its kind plus its values (an observed win rate, or a rating).

Two choices make it learn users from ratings (`benchmarks/gnn_layers.py`, docs/baselines.md):

- Edge-conditioned convolution (PyG's `NNConv`, Gilmer et al. 2017, in `LinearEdgeConv`'s leaner form):
  a message is the source state times a matrix computed from the edge, so "won" arrives bound to the LLM
  that won. Where a message is a term of the source plus a term of the edge (`GeneralConv`), winner and
  loser look alike once the neighbours are averaged; attention or a nonlinearity on the sum
  (`TransformerConv`, `GINEConv`) recovers the pairing only in some runs.
- A batch norm per node type after each layer: the differences between users are a few percent of their
  states, and it scales them up to where the head can read them (with a per-node LayerNorm no layer
  learned). Scoring uses statistics fixed on training-like graphs (`recalibrate`), so it is deterministic
  and per record.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.cluster import KMeans
from torch import nn
from torch_geometric.nn import GeneralConv, GINEConv, NNConv, ResGatedGraphConv, TransformerConv
from torch_geometric.nn.norm import HeteroBatchNorm
from torch_geometric.utils import scatter

from gmtrouter.utils.errors import GmtError

CALIBRATION_PASSES = 16


@dataclass
class Tasks:
    """Task nodes: the data's `meta.category` when every query has one, else k-means clusters of queries."""

    names: list[str]
    centroids: np.ndarray  # [T, dim] L2-normalised mean query embedding of each task

    @classmethod
    def fit(cls, query_emb: np.ndarray, categories: Sequence[str | None], clusters: int, seed: int) -> Tasks:
        if len(categories) and all(c is not None for c in categories):
            names = sorted({str(c) for c in categories})
            ids = np.array([names.index(str(c)) for c in categories])
            centroids = np.zeros((len(names), query_emb.shape[1]))
            np.add.at(centroids, ids, query_emb)
        else:
            k = max(1, min(clusters, len(np.unique(query_emb.round(6), axis=0))))
            model = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(query_emb)
            names, centroids = [f"cluster-{i}" for i in range(k)], model.cluster_centers_
        norms = np.linalg.norm(centroids, axis=1, keepdims=True)
        return cls(names, (centroids / np.maximum(norms, 1e-12)).astype(np.float32))

    def assign(self, query_emb: np.ndarray, categories: Sequence[str | None] | None = None) -> np.ndarray:
        """Task id of each query: its category when the task list has it, else the nearest centroid."""
        nearest = np.argmax(query_emb @ self.centroids.T, axis=1) if len(query_emb) else np.zeros(0, np.int64)
        if categories is None:
            return nearest.astype(np.int64)
        index = {name: i for i, name in enumerate(self.names)}
        named = np.array([index.get(str(c), -1) if c is not None else -1 for c in categories], dtype=np.int64)
        return np.where(named >= 0, named, nearest).astype(np.int64)


class EdgeList:
    """Directed edges collected kind by kind; attributes are [one-hot kind, values]."""

    def __init__(self, kinds: Sequence[str], values: int) -> None:
        self.kinds = {kind: i for i, kind in enumerate(kinds)}
        self.values = values
        self.parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    @property
    def dim(self) -> int:
        return len(self.kinds) + self.values

    def add(self, src: np.ndarray, dst: np.ndarray, kind: str, values: np.ndarray | None = None) -> None:
        attr = np.zeros((len(src), self.dim), dtype=np.float32)
        attr[:, self.kinds[kind]] = 1.0
        if values is not None:
            attr[:, len(self.kinds) :] = np.asarray(values, dtype=np.float32).reshape(len(src), -1)
        self.parts.append((np.asarray(src, dtype=np.int64), np.asarray(dst, dtype=np.int64), attr))

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(edge_index [2, E], edge_attr [E, dim])."""
        if not self.parts:
            return torch.zeros(2, 0, dtype=torch.long), torch.zeros(0, self.dim)
        src, dst, attr = (np.concatenate(x) for x in zip(*self.parts, strict=True))
        return torch.from_numpy(np.stack([src, dst])), torch.from_numpy(attr)


class LinearEdgeConv(nn.Module):
    """PyG's `NNConv` (mean aggregation) with a linear edge network, computed without a matrix per edge.

    NNConv's message is x_j Θ(e_ij) with Θ(e) = reshape(W e + c) of shape [in, out]: E·in·out numbers for
    the per-edge matrices. Θ is linear in e, so x_j Θ(e_ij) = Σ_k e_ijk (x_j W_k) + x_j C; each node's x_j W_k
    is computed once ([N, K, out]) and an edge mixes K of them: E·K·out numbers. The parameters carry
    NNConv's names and shapes, and the output is NNConv's (a test holds them equal).
    """

    def __init__(self, in_channels: int, out_channels: int, edge_dim: int) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.edge_dim = in_channels, out_channels, edge_dim
        reference = NNConv(in_channels, out_channels, nn.Linear(edge_dim, in_channels * out_channels), aggr="mean")
        self.nn, self.lin, self.bias = reference.nn, reference.lin, reference.bias  # NNConv's initialisation

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor) -> torch.Tensor:
        src, dst = edge_index
        weight = self.nn.weight.view(self.in_channels, self.out_channels, self.edge_dim)
        per_kind = torch.einsum("ni,iok->nko", x, weight)  # [N, K, out]
        constant = x @ self.nn.bias.view(self.in_channels, self.out_channels)  # [N, out]
        message = torch.einsum("ek,eko->eo", edge_attr, per_kind[src]) + constant[src]  # [E, out]
        out = scatter(message, dst, dim=0, dim_size=len(x), reduce="mean")
        return out + self.lin(x) + self.bias


class NodeLayerNorm(nn.LayerNorm):
    """A per-node LayerNorm with the type-wise norm's call signature (the `norm="layer"` ablation)."""

    def forward(self, x: torch.Tensor, node_type: torch.Tensor) -> torch.Tensor:
        return super().forward(x)


def _gine(hidden: int, edge_dim: int) -> nn.Module:
    mlp = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, hidden))
    return GINEConv(mlp, train_eps=True, edge_dim=edge_dim, aggr="mean")


LAYERS: dict[str, Callable[[int, int], nn.Module]] = {
    "edge": lambda hidden, edge_dim: LinearEdgeConv(hidden, hidden, edge_dim),
    "transformer": lambda hidden, edge_dim: TransformerConv(hidden, hidden // 4, heads=4, edge_dim=edge_dim),
    "gine": _gine,
    "general": lambda hidden, edge_dim: GeneralConv(hidden, hidden, in_edge_channels=edge_dim, aggr="mean"),
    "gated": lambda hidden, edge_dim: ResGatedGraphConv(hidden, hidden, edge_dim=edge_dim, aggr="mean"),
}
NORMS: dict[str, Callable[[int, int], nn.Module]] = {
    "type-batch": lambda hidden, types: HeteroBatchNorm(hidden, types),
    "layer": lambda hidden, types: NodeLayerNorm(hidden),
}


def check_architecture(layer: str, norm: str) -> None:
    """Refuse an unknown `layer` or `norm` setting, naming the known ones."""
    if layer not in LAYERS:
        raise GmtError(f"unknown layer '{layer}'; choose one of: {', '.join(LAYERS)}")
    if norm not in NORMS:
        raise GmtError(f"unknown norm '{norm}'; choose one of: {', '.join(NORMS)}")


class HomogeneousGNN(nn.Module):
    """h⁰ = W_type x + e_type;  h^{l+1} = Norm(h^l + ReLU(Layer(h^l, edges, edge_attr))).

    Defaults: `LinearEdgeConv` and a batch norm per node type; the others are there for the ablation.
    """

    def __init__(
        self,
        in_dims: Sequence[int],
        edge_dim: int,
        hidden: int,
        layers: int,
        layer: str = "edge",
        norm: str = "type-batch",
    ) -> None:
        super().__init__()
        check_architecture(layer, norm)
        self.project = nn.ModuleDict({str(t): nn.Linear(d, hidden) for t, d in enumerate(in_dims) if d > 0})
        self.node_type = nn.Embedding(len(in_dims), hidden)
        self.convs = nn.ModuleList(LAYERS[layer](hidden, edge_dim) for _ in range(layers))
        self.norms = nn.ModuleList(NORMS[norm](hidden, len(in_dims)) for _ in range(layers))

    def forward(self, features: Sequence[torch.Tensor], edge_index: torch.Tensor, edge_attr: torch.Tensor):
        """`features[t]` is [n_t, in_dims[t]] (width 0 for featureless types); nodes are numbered type by type."""
        blocks = []
        for t, x in enumerate(features):
            h = self.node_type.weight[t].expand(len(x), -1)
            if str(t) in self.project:
                h = h + self.project[str(t)](x)
            blocks.append(h)
        h = torch.cat(blocks)  # [N, hidden]
        node_type = torch.repeat_interleave(torch.arange(len(features)), torch.tensor([len(x) for x in features]))
        for conv, norm in zip(self.convs, self.norms, strict=True):
            h = norm(h + F.relu(conv(h, edge_index, edge_attr)), node_type)
        return h


class ScoreHead(nn.Module):
    """An MLP from the concatenated node states (and their products with the LLM's) to one score."""

    def __init__(self, hidden: int, parts: int, dropout: float) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(parts * hidden, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, 1)
        )

    def forward(self, *states: torch.Tensor) -> torch.Tensor:
        """`states` = (..., llm) all [..., hidden]; features are the states and each non-LLM one times the LLM's."""
        *context, llm = states
        parts = [*context, llm, *(c * llm for c in context)]
        return self.mlp(torch.cat(parts, dim=-1)).squeeze(-1)


def recalibrate(
    module: nn.Module, forward: Callable[[np.random.Generator], object], passes: int = CALIBRATION_PASSES, seed: int = 0
) -> None:
    """Fix every type-wise batch norm's statistics to their average over `passes` training-like graphs.

    `forward(rng)` runs the network on one graph drawn as in training (dropout is off). Training normalises
    with each graph's own statistics; scoring uses these fixed ones, so the scores of a record never depend
    on the other records scored with it. They must come from graphs drawn like the training ones: a full
    history graph has other statistics (no hidden records, every user with all their history).
    """
    norms = [m for m in module.modules() if isinstance(m, HeteroBatchNorm)]
    momenta = [norm.momentum for norm in norms]
    was_training = module.training
    module.eval()
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a plain average over the passes
        norm.train()
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for _ in range(passes):
            forward(rng)
    for norm, momentum in zip(norms, momenta, strict=True):
        norm.momentum = momentum
    module.train(was_training)
