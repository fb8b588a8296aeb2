"""`graphrouter`: GraphRouter (Feng et al., ICLR 2025, arXiv 2410.03834) on preference data, without users.

One graph of task, query and LLM nodes. Query nodes start from their text embedding, task nodes from the
mean embedding of their queries (`meta.category` as the task, or a k-means cluster when absent), LLM nodes
from their name and description. Edges: query-task, query-LLM carrying the observed outcome of that LLM on
that query over all users (tie-as-half win rate, and n/(n+1) as confidence), and each query's `neighbors`
most similar queries. The GNN's states of a query and an LLM give the score of that query-LLM edge.

Training hides outcomes: each step some records (`target_rate`) and some whole queries (`cold_query_rate`)
leave the edge statistics and are predicted, so the network learns both to read a query's observed edges
and to route a query it has never seen, which joins the graph through its task and nearest queries.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch

from gmtrouter.baselines.base import BaselineRouter, QueryEncoding, RecordTable, pairs_auc, tune
from gmtrouter.baselines.gnn import EdgeList, HomogeneousGNN, ScoreHead, Tasks, recalibrate
from gmtrouter.baselines.training import pairwise_loss, train_early_stopping
from gmtrouter.model.gmtrouter import llm_text
from gmtrouter.text.base import DEFAULT_ENCODER

EDGE_KINDS = ("task->query", "query->task", "query->llm", "llm->query", "query->query")
EDGE_VALUES = 3  # win rate, confidence, similarity


def outcome_counts(table: RecordTable, pairs: np.ndarray, n_llms: int) -> tuple[np.ndarray, np.ndarray]:
    """([queries, LLMs] tie-as-half wins, comparisons) over the pairs selected by the boolean mask `pairs`."""
    shape = (len(table.queries), n_llms)
    wins, played = np.zeros(shape), np.zeros(shape)
    query, first, second = table.pair_query[pairs], table.pair_first[pairs], table.pair_second[pairs]
    target = table.pair_target[pairs]
    np.add.at(wins, (query, first), target)
    np.add.at(wins, (query, second), 1.0 - target)
    np.add.at(played, (query, first), 1.0)
    np.add.at(played, (query, second), 1.0)
    return wins, played


def nearest(query_emb: np.ndarray, index_emb: np.ndarray, k: int, exclude_self: bool) -> tuple[np.ndarray, np.ndarray]:
    """([n, k] indices into `index_emb`, [n, k] cosine similarities) of each query's k nearest."""
    similarity = query_emb @ index_emb.T
    if exclude_self:
        np.fill_diagonal(similarity, -np.inf)
    k = min(k, index_emb.shape[0] - int(exclude_self))
    if k <= 0:
        return np.zeros((len(query_emb), 0), np.int64), np.zeros((len(query_emb), 0))
    top = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
    return top, np.take_along_axis(similarity, top, axis=1)


class GraphRouterNet(torch.nn.Module):
    """The homogeneous GNN over [tasks | queries | LLMs] and the query-LLM edge head."""

    def __init__(
        self, text_dim: int, hidden: int, layers: int, dropout: float, layer: str = "edge", norm: str = "type-batch"
    ) -> None:
        super().__init__()
        edge_dim = len(EDGE_KINDS) + EDGE_VALUES
        self.gnn = HomogeneousGNN([text_dim, text_dim, text_dim], edge_dim, hidden, layers, layer, norm)
        self.head = ScoreHead(hidden, 3, dropout)

    def forward(self, graph: dict[str, Any], query_nodes: torch.Tensor) -> torch.Tensor:
        """[len(query_nodes), LLMs] scores of every LLM for the given query nodes (indices into the query block)."""
        h = self.gnn(**graph)
        n_tasks, n_queries = len(graph["features"][0]), len(graph["features"][1])
        q = h[n_tasks + query_nodes]  # [n, hidden]
        m = h[n_tasks + n_queries :]  # [LLMs, hidden]
        return self.head(q[:, None, :].expand(-1, len(m), -1), m[None, :, :].expand(len(q), -1, -1))


class GraphRouter(QueryEncoding, BaselineRouter):
    """GraphRouter: query-LLM edge prediction on a task-query-LLM graph of observed outcomes."""

    name = "graphrouter"
    GRID: ClassVar[dict[str, list[Any]]] = {"hidden": [64, 32], "dropout": [0.1, 0.3]}

    def __init__(
        self,
        encoder: str = DEFAULT_ENCODER,
        grid: dict[str, Any] | None = None,
        layers: int = 2,
        layer: str = "edge",
        norm: str = "type-batch",
        neighbors: int = 5,
        tasks: int = 8,
        lr: float = 3e-3,
        weight_decay: float = 1e-4,
        steps: int = 300,
        eval_every: int = 10,
        patience: int = 6,
        target_rate: float = 0.2,
        cold_query_rate: float = 0.1,
        llm_descriptions: dict[str, str] | None = None,
        valid_frac: float = 0.1,
        seed: int = 0,
    ) -> None:
        self.encoder = encoder
        self.grid = grid
        self.layers = layers
        self.layer = layer
        self.norm = norm
        self.neighbors = neighbors
        self.tasks = tasks
        self.lr = lr
        self.weight_decay = weight_decay
        self.steps = steps
        self.eval_every = eval_every
        self.patience = patience
        self.target_rate = target_rate
        self.cold_query_rate = cold_query_rate
        self.llm_descriptions = llm_descriptions
        self.valid_frac = valid_frac
        self.seed = seed

    # ------------------------------------------------------------------------------------------ graph

    def graph(
        self,
        wins: np.ndarray,
        played: np.ndarray,
        new_emb: np.ndarray | None = None,
        new_categories: Sequence[str | None] | None = None,
    ) -> dict[str, Any]:
        """The graph of the fitted queries with outcome statistics (wins, played) plus new query nodes.

        A new query's task is its category when the router knows it, else the task of the nearest centroid.
        """
        new_emb = np.zeros((0, self.query_emb_.shape[1]), np.float32) if new_emb is None else new_emb
        n_old, n_tasks, n_llms = len(self.query_emb_), len(self.tasks_.names), len(self.llms_)
        query_emb = np.concatenate([self.query_emb_, new_emb]).astype(np.float32)
        task = np.concatenate([self.query_task_, self.tasks_.assign(new_emb, new_categories)])
        query_node = n_tasks + np.arange(len(query_emb))
        llm_node = n_tasks + len(query_emb) + np.arange(n_llms)
        edges = EdgeList(EDGE_KINDS, EDGE_VALUES)
        edges.add(task, query_node, "task->query")
        edges.add(query_node, task, "query->task")

        q, m = np.nonzero(played > 0)
        rate, confidence = wins[q, m] / played[q, m], played[q, m] / (played[q, m] + 1.0)
        values = np.stack([rate, confidence, np.zeros_like(rate)], axis=1)
        edges.add(query_node[q], llm_node[m], "query->llm", values)
        edges.add(llm_node[m], query_node[q], "llm->query", values)

        # each query listens to its nearest fitted queries (new queries never speak to the fitted graph)
        old_nb, old_sim = self.neighbors_, self.neighbor_sim_
        new_nb, new_sim = nearest(new_emb, self.query_emb_, self.neighbors, exclude_self=False)
        dst = np.concatenate(
            [np.repeat(np.arange(n_old), old_nb.shape[1]), np.repeat(np.arange(len(new_emb)) + n_old, new_nb.shape[1])]
        )
        src = np.concatenate([old_nb.ravel(), new_nb.ravel()])
        sim = np.concatenate([old_sim.ravel(), new_sim.ravel()])
        similarity = np.stack([np.zeros_like(sim), np.zeros_like(sim), sim], axis=1)
        edges.add(query_node[src], query_node[dst], "query->query", similarity)

        edge_index, edge_attr = edges.tensors()
        features = [
            torch.from_numpy(self.tasks_.centroids),
            torch.from_numpy(query_emb),
            torch.from_numpy(self.llm_emb_),
        ]
        return {"features": features, "edge_index": edge_index, "edge_attr": edge_attr}

    def build_net(self, params: dict[str, Any]) -> GraphRouterNet:
        hidden, dropout = int(params["hidden"]), float(params["dropout"])
        return GraphRouterNet(self.text_dim_, hidden, self.layers, dropout, self.layer, self.norm)

    # ------------------------------------------------------------------------------------------ fitting

    def _prepare(self, table: RecordTable) -> None:
        """Query nodes, tasks, neighbours and LLM features of the fitted graph."""
        self.text_dim_ = self.text_encoder().dim
        self.query_texts_ = table.queries
        self.query_emb_ = self.encode(table.queries)
        first_record = np.unique(table.rec_query, return_index=True)[1]
        categories = [table.rec_category[i] for i in first_record]
        self.tasks_ = Tasks.fit(self.query_emb_, categories, self.tasks, self.seed)
        self.query_task_ = self.tasks_.assign(self.query_emb_, categories)
        self.neighbors_, self.neighbor_sim_ = nearest(
            self.query_emb_, self.query_emb_, self.neighbors, exclude_self=True
        )
        descriptions = self.llm_descriptions or {}
        self.llm_emb_ = self.encode([llm_text(m, descriptions.get(m, "")) for m in self.llms_])

    def _fit(self, train, valid, grid):
        n_fit, n_llms = len(train), len(self.llms_)
        table = RecordTable.build(train + valid, self.llms_)
        self._prepare(table)
        fit_pair = table.pair_record < n_fit
        valid_ids = np.arange(n_fit, table.num_records)
        valid_table = RecordTable.build(valid, self.llms_)

        def sample(rng: np.random.Generator, n_records: int) -> tuple[dict[str, Any], np.ndarray]:
            """A training graph over the first `n_records` records: the outcome edges of the records left
            shown, and a mask of the pairs of the hidden ones (some records, and every record of cold queries)."""
            in_scope = table.pair_record < n_records
            queries = np.unique(table.rec_query[:n_records])
            cold = np.zeros(len(table.queries), dtype=bool)
            cold[queries[rng.random(len(queries)) < self.cold_query_rate]] = True
            hidden = (rng.random(table.num_records) < self.target_rate) | cold[table.rec_query]
            shown = in_scope & ~hidden[table.pair_record]
            return self.graph(*outcome_counts(table, shown, n_llms)), in_scope & hidden[table.pair_record]

        def step_loss(net: GraphRouterNet, rng: np.random.Generator) -> torch.Tensor:
            graph, asked = sample(rng, n_fit)
            query = np.unique(table.pair_query[asked])
            scores = net(graph, torch.from_numpy(query))  # [asked queries, LLMs]
            row = torch.from_numpy(np.searchsorted(query, table.pair_query[asked]))
            first, second = torch.from_numpy(table.pair_first[asked]), torch.from_numpy(table.pair_second[asked])
            target = torch.from_numpy(table.pair_target[asked]).float()
            return pairwise_loss(scores[row, first] - scores[row, second], target)

        def calibrate(net: GraphRouterNet, n_records: int) -> None:
            """Batch-norm statistics from training-like graphs over the first `n_records` records."""
            recalibrate(net, lambda rng: net.gnn(**sample(rng, n_records)[0]))

        valid_graph = self.graph(*outcome_counts(table, fit_pair, n_llms))

        def run(params: dict[str, Any]) -> tuple[float, tuple[GraphRouterNet, dict[str, int]]]:
            torch.manual_seed(self.seed)
            net = self.build_net(params)

            def validate() -> float:
                calibrate(net, n_fit)
                scores = net(valid_graph, torch.from_numpy(table.rec_query[valid_ids]))
                return pairs_auc(valid_table, scores.numpy())

            best, log = train_early_stopping(
                net,
                lambda rng: step_loss(net, rng),
                validate if valid else None,
                lr=self.lr,
                weight_decay=self.weight_decay,
                steps=self.steps,
                eval_every=self.eval_every,
                patience=self.patience,
                seed=self.seed,
            )
            return (best if best is not None else 0.5), (net, log)

        params, (self.net_, log), best, trials = tune(grid, run, bool(valid))
        self.wins_, self.played_ = outcome_counts(table, np.ones(len(table.pair_target), dtype=bool), n_llms)
        calibrate(self.net_, table.num_records)
        return {**params, "steps": log["best_step"]}, best, trials

    # ------------------------------------------------------------------------------------------ scoring

    def llm_scores(self, users, queries, categories=None) -> np.ndarray:
        if len(queries) == 0:
            return np.zeros((0, len(self.llms_)))
        known = {q: i for i, q in enumerate(self.query_texts_)}
        category = dict(zip(queries, categories or [None] * len(queries), strict=True))
        new_texts = sorted({q for q in queries if q not in known})
        new_index = {q: len(known) + i for i, q in enumerate(new_texts)}
        new_emb = self.encode(new_texts) if new_texts else None
        graph = self.graph(self.wins_, self.played_, new_emb, [category[q] for q in new_texts])
        nodes = torch.tensor([known.get(q, new_index.get(q, -1)) for q in queries])
        with torch.no_grad():
            return self.net_(graph, nodes).numpy().astype(np.float64)

    def _fitted(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        fitted = {"text_dim": self.text_dim_, "queries": self.query_texts_, "tasks": self.tasks_.names}
        tensors = {
            "query_emb": torch.from_numpy(np.ascontiguousarray(self.query_emb_)),
            "query_task": torch.from_numpy(self.query_task_),
            "task_centroids": torch.from_numpy(self.tasks_.centroids),
            "neighbors": torch.from_numpy(self.neighbors_),
            "neighbor_sim": torch.from_numpy(np.ascontiguousarray(self.neighbor_sim_)),
            "llm_emb": torch.from_numpy(np.ascontiguousarray(self.llm_emb_)),
            "wins": torch.from_numpy(self.wins_),
            "played": torch.from_numpy(self.played_),
            **{f"net.{k}": v for k, v in self.net_.state_dict().items()},
        }
        return fitted, tensors

    def _restore(self, fitted: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        self.text_dim_ = int(fitted["text_dim"])
        self.query_texts_ = list(fitted["queries"])
        self.tasks_ = Tasks(list(fitted["tasks"]), tensors["task_centroids"].numpy())
        self.query_emb_ = tensors["query_emb"].numpy()
        self.query_task_ = tensors["query_task"].numpy()
        self.neighbors_ = tensors["neighbors"].numpy()
        self.neighbor_sim_ = tensors["neighbor_sim"].numpy()
        self.llm_emb_ = tensors["llm_emb"].numpy()
        self.wins_, self.played_ = tensors["wins"].numpy(), tensors["played"].numpy()
        params = self.params_
        self.net_ = self.build_net(params)
        self.net_.load_state_dict({k.removeprefix("net."): v for k, v in tensors.items() if k.startswith("net.")})
        self.net_.eval()
