"""`personalizedrouter`: PersonalizedRouter (Dai et al. 2025, arXiv 2511.16883) on preference records.

A heterogeneous graph of user, task, query and LLM nodes, encoded by a homogeneous message-passing network
(node-type embeddings as features, `gnn.HomogeneousGNN`). Each shown interaction is one query node (its
text embedding), linked to its user, to its task (`meta.category`, or a k-means cluster), and to every LLM
that answered it by an edge carrying the rating (normalised within the record, and on the data's scale).
User nodes have no features of their own: a user is what their interaction edges say, so a user unseen
at fit time is encoded from their history with no retraining, and a user with none is the population.

A record being scored adds a query node that listens to its user and task, and never speaks back, so the
scores of one record cannot depend on the others scored with it; its LLM edges are exactly what is asked.
The head scores (user, query, LLM) from the three node states. Training samples, per step, a few shown
interactions of each user and asks about others (GMTRouter's user-conditioned sampling), so the network
learns to predict from a small history, as at test time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from gmtrouter.baselines.base import BaselineContext, BaselineRouter, QueryEncoding, RecordTable, pairs_auc, tune
from gmtrouter.baselines.gnn import EdgeList, HomogeneousGNN, ScoreHead, Tasks, recalibrate
from gmtrouter.baselines.training import pairwise_loss, train_early_stopping
from gmtrouter.data.schema import Interaction
from gmtrouter.graph.sample import SamplingConfig, sample_step
from gmtrouter.graph.table import rating_features
from gmtrouter.model.gmtrouter import llm_text
from gmtrouter.text.base import DEFAULT_ENCODER

EDGE_KINDS = ("user->query", "query->user", "task->query", "query->task", "query->llm", "llm->query")
EDGE_VALUES = 2  # rating normalised within its record, rating on the data's scale


@dataclass
class Interactions:
    """Records as graph material: who asked, the query embedding and task, and every response's rating."""

    user: np.ndarray  # [R] user id (into the graph's user list)
    query_emb: np.ndarray  # [R, dim]
    task: np.ndarray  # [R]
    resp_record: np.ndarray  # [N] position of the response's record in this object
    resp_llm: np.ndarray  # [N]
    resp_feat: np.ndarray  # [N, EDGE_VALUES]

    def select(self, ids: np.ndarray, offsets: np.ndarray) -> Interactions:
        """The records `ids` (with their responses, given each record's response `offsets`)."""
        counts = offsets[ids + 1] - offsets[ids]
        within = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        responses = np.repeat(offsets[ids], counts) + within
        return Interactions(
            self.user[ids],
            self.query_emb[ids],
            self.task[ids],
            np.repeat(np.arange(len(ids)), counts),
            self.resp_llm[responses],
            self.resp_feat[responses],
        )


class PersonalizedRouterNet(torch.nn.Module):
    """The homogeneous GNN over [users | tasks | queries | LLMs] and the (user, query, LLM) head."""

    def __init__(
        self, text_dim: int, hidden: int, layers: int, dropout: float, layer: str = "edge", norm: str = "type-batch"
    ) -> None:
        super().__init__()
        edge_dim = len(EDGE_KINDS) + EDGE_VALUES
        self.gnn = HomogeneousGNN([0, text_dim, text_dim, text_dim], edge_dim, hidden, layers, layer, norm)
        self.head = ScoreHead(hidden, 5, dropout)

    def forward(self, graph: dict[str, Any]) -> torch.Tensor:
        """[targets, LLMs] scores of every LLM for each target query node."""
        h = self.gnn(graph["features"], graph["edge_index"], graph["edge_attr"])
        q, u = h[graph["target_node"]], h[graph["target_user"]]  # [n, hidden]
        m = h[graph["llm_node"]]  # [LLMs, hidden]
        n, k = len(q), len(m)
        return self.head(q[:, None].expand(-1, k, -1), u[:, None].expand(-1, k, -1), m[None].expand(n, -1, -1))


class PersonalizedRouter(QueryEncoding, BaselineRouter):
    """PersonalizedRouter: a user-task-query-LLM interaction graph, homogeneous GNN, per-user scores."""

    name = "personalizedrouter"
    GRID: ClassVar[dict[str, list[Any]]] = {"hidden": [64, 32], "dropout": [0.1, 0.3]}

    def __init__(
        self,
        encoder: str = DEFAULT_ENCODER,
        grid: dict[str, Any] | None = None,
        layers: int = 2,
        layer: str = "edge",
        norm: str = "type-batch",
        tasks: int = 8,
        lr: float = 3e-3,
        weight_decay: float = 1e-4,
        steps: int = 300,
        eval_every: int = 10,
        patience: int = 6,
        max_visible: int = 16,
        targets_per_step: int = 256,
        cold_user_rate: float = 0.1,
        llm_descriptions: dict[str, str] | None = None,
        valid_frac: float = 0.1,
        seed: int = 0,
    ) -> None:
        self.encoder = encoder
        self.grid = grid
        self.layers = layers
        self.layer = layer
        self.norm = norm
        self.tasks = tasks
        self.lr = lr
        self.weight_decay = weight_decay
        self.steps = steps
        self.eval_every = eval_every
        self.patience = patience
        self.max_visible = max_visible
        self.targets_per_step = targets_per_step
        self.cold_user_rate = cold_user_rate
        self.llm_descriptions = llm_descriptions
        self.valid_frac = valid_frac
        self.seed = seed

    # ------------------------------------------------------------------------------------------ graph

    def interactions(self, records: Sequence[Interaction], users: dict[str, int]) -> tuple[Interactions, np.ndarray]:
        """(graph material of `records` with user ids from `users`, the records' response offsets)."""
        table = RecordTable.build(records, self.llms_)
        query_emb = self.encode(table.queries)
        first = np.unique(table.rec_query, return_index=True)[1]
        task = self.tasks_.assign(query_emb, [table.rec_category[i] for i in first])
        feat = rating_features(records, *self.rating_range_) if records else np.zeros((0, EDGE_VALUES), np.float32)
        user = np.array([users[table.users[u]] for u in table.rec_user], dtype=np.int64)
        resp_record = np.repeat(np.arange(table.num_records), np.diff(table.offsets))
        part = Interactions(user, query_emb[table.rec_query], task[table.rec_query], resp_record, table.resp_llm, feat)
        return part, table.offsets

    def graph(
        self,
        n_users: int,
        shown: Interactions,
        target_user: np.ndarray,
        target_emb: np.ndarray,
        target_task: np.ndarray,
    ) -> dict[str, Any]:
        """The homogeneous graph of `shown` interactions plus one listening query node per target."""
        n_tasks, n_shown, n_target = len(self.tasks_.names), len(shown.user), len(target_user)
        task_base, query_base = n_users, n_users + n_tasks
        llm_base = query_base + n_shown + n_target
        shown_q = query_base + np.arange(n_shown)
        target_q = query_base + n_shown + np.arange(n_target)
        edges = EdgeList(EDGE_KINDS, EDGE_VALUES)
        edges.add(shown.user, shown_q, "user->query")
        edges.add(shown_q, shown.user, "query->user")
        edges.add(task_base + shown.task, shown_q, "task->query")
        edges.add(shown_q, task_base + shown.task, "query->task")
        answered, llm = shown_q[shown.resp_record], llm_base + shown.resp_llm
        edges.add(answered, llm, "query->llm", shown.resp_feat)
        edges.add(llm, answered, "llm->query", shown.resp_feat)
        edges.add(target_user, target_q, "user->query")
        edges.add(task_base + target_task, target_q, "task->query")
        edge_index, edge_attr = edges.tensors()
        features = [
            torch.zeros(n_users, 0),
            torch.from_numpy(self.tasks_.centroids),
            torch.from_numpy(np.concatenate([shown.query_emb, target_emb]).astype(np.float32)),
            torch.from_numpy(self.llm_emb_),
        ]
        return {
            "features": features,
            "edge_index": edge_index,
            "edge_attr": edge_attr,
            "target_node": torch.from_numpy(target_q),
            "target_user": torch.from_numpy(np.asarray(target_user, dtype=np.int64)),
            "llm_node": torch.from_numpy(llm_base + np.arange(len(self.llms_))),
        }

    def build_net(self, params: dict[str, Any]) -> PersonalizedRouterNet:
        hidden, dropout = int(params["hidden"]), float(params["dropout"])
        return PersonalizedRouterNet(self.text_dim_, hidden, self.layers, dropout, self.layer, self.norm)

    # ------------------------------------------------------------------------------------------ fitting

    def _fit(self, train, valid, grid):
        n_fit = len(train)
        records = train + valid
        table = RecordTable.build(records, self.llms_)
        ratings = [x for r in train for x in r.ratings]
        self.rating_range_ = (float(min(ratings)), float(max(ratings)))
        self.text_dim_ = self.text_encoder().dim
        query_emb = self.encode(table.queries)
        first = np.unique(table.rec_query, return_index=True)[1]
        self.tasks_ = Tasks.fit(query_emb, [table.rec_category[i] for i in first], self.tasks, self.seed)
        descriptions = self.llm_descriptions or {}
        self.llm_emb_ = self.encode([llm_text(m, descriptions.get(m, "")) for m in self.llms_])

        users = {u: i for i, u in enumerate(table.users)}
        everything, offsets = self.interactions(records, users)
        n_users = len(users)
        sampling = SamplingConfig(self.max_visible, self.targets_per_step, self.cold_user_rate)
        row_of = np.full(table.num_records, -1, dtype=np.int64)

        def scored(net: PersonalizedRouterNet, shown_ids: np.ndarray, target_ids: np.ndarray) -> torch.Tensor:
            shown = everything.select(shown_ids, offsets)
            return net(
                self.graph(
                    n_users,
                    shown,
                    everything.user[target_ids],
                    everything.query_emb[target_ids],
                    everything.task[target_ids],
                )
            )

        def step_loss(net: PersonalizedRouterNet, rng: np.random.Generator) -> torch.Tensor:
            visible, hidden = sample_step(table.rec_user[:n_fit], sampling, rng)
            scores = scored(net, visible, hidden)
            row_of[:] = -1
            row_of[hidden] = np.arange(len(hidden))
            asked = row_of[table.pair_record] >= 0
            row = torch.from_numpy(row_of[table.pair_record[asked]])
            first, second = torch.from_numpy(table.pair_first[asked]), torch.from_numpy(table.pair_second[asked])
            target = torch.from_numpy(table.pair_target[asked]).float()
            return pairwise_loss(scores[row, first] - scores[row, second], target)

        def calibrate(net: PersonalizedRouterNet, n_records: int) -> None:
            """Batch-norm statistics from training-like graphs over the first `n_records` records."""
            recalibrate(net, lambda rng: scored(net, *sample_step(table.rec_user[:n_records], sampling, rng)))

        fit_ids, valid_ids = np.arange(n_fit), np.arange(n_fit, len(records))
        valid_table = RecordTable.build(valid, self.llms_)

        def validate(net: PersonalizedRouterNet) -> float:
            calibrate(net, n_fit)
            return pairs_auc(valid_table, scored(net, fit_ids, valid_ids).numpy())

        def run(params: dict[str, Any]) -> tuple[float, tuple[PersonalizedRouterNet, dict[str, int]]]:
            torch.manual_seed(self.seed)
            net = self.build_net(params)
            best, log = train_early_stopping(
                net,
                lambda rng: step_loss(net, rng),
                (lambda: validate(net)) if valid else None,
                lr=self.lr,
                weight_decay=self.weight_decay,
                steps=self.steps,
                eval_every=self.eval_every,
                patience=self.patience,
                seed=self.seed,
            )
            return (best if best is not None else 0.5), (net, log)

        params, (self.net_, log), best, trials = tune(grid, run, bool(valid))
        calibrate(self.net_, len(records))
        return {**params, "steps": log["best_step"]}, best, trials

    def llm_scores(self, users, queries, categories=None) -> np.ndarray:
        """Scores from the network with no history at all: every user is the population."""
        return self.context([]).llm_scores(users, queries, categories)

    def context(self, history: Sequence[Interaction]) -> PersonalizedRouterContext:
        return PersonalizedRouterContext(self, history)

    # ------------------------------------------------------------------------------------------ state

    def _fitted(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        fitted = {"text_dim": self.text_dim_, "tasks": self.tasks_.names, "rating_range": list(self.rating_range_)}
        tensors = {
            "task_centroids": torch.from_numpy(self.tasks_.centroids),
            "llm_emb": torch.from_numpy(np.ascontiguousarray(self.llm_emb_)),
            **{f"net.{k}": v for k, v in self.net_.state_dict().items()},
        }
        return fitted, tensors

    def _restore(self, fitted: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        self.text_dim_ = int(fitted["text_dim"])
        self.rating_range_ = tuple(fitted["rating_range"])
        self.tasks_ = Tasks(list(fitted["tasks"]), tensors["task_centroids"].numpy())
        self.llm_emb_ = tensors["llm_emb"].numpy()
        self.net_ = self.build_net(self.params_)
        self.net_.load_state_dict({k.removeprefix("net."): v for k, v in tensors.items() if k.startswith("net.")})
        self.net_.eval()


class PersonalizedRouterContext(BaselineContext):
    """The history as graph material, kept so that scoring only adds the target query nodes."""

    router: PersonalizedRouter

    def refresh(self) -> None:
        self.users = {u: i for i, u in enumerate(dict.fromkeys(r.user for r in self.history))}
        self.shown, _ = self.router.interactions(self.history, self.users)

    def llm_scores(self, users, queries, categories=None) -> np.ndarray:
        router = self.router
        if len(users) == 0:
            return np.zeros((0, len(router.llms_)))
        ids = dict(self.users)
        for user in users:
            ids.setdefault(user, len(ids))  # users without history: featureless nodes with no edges
        emb = router.encode(queries)
        task = router.tasks_.assign(emb, categories)
        target_user = np.array([ids[u] for u in users], dtype=np.int64)
        graph = router.graph(len(ids), self.shown, target_user, emb, task)
        with torch.no_grad():
            return router.net_(graph).numpy().astype(np.float64)
