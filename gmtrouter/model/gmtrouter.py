"""GMTRouter as a router: settings, fitting, saving, and the routing context that scores from history."""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import numpy as np
import torch

from gmtrouter.data.schema import Interaction
from gmtrouter.graph.build import HeteroGraph, TargetBatch, build_graph, targets
from gmtrouter.graph.sample import SamplingConfig
from gmtrouter.graph.table import InteractionTable
from gmtrouter.model.network import GMTRouterNet, NetConfig
from gmtrouter.model.prior import (
    Priors,
    PriorScores,
    population_stay,
    population_strengths,
    record_evidence,
    refit_scope,
    topic_of,
)
from gmtrouter.model.training import train_network
from gmtrouter.routing.base import PreferenceRouter, RoutingContext
from gmtrouter.text.base import DEFAULT_ENCODER, TextEncoder
from gmtrouter.text.encoders import get_encoder
from gmtrouter.utils.errors import GmtError

TOPICS_KEY = "backbone.topics"  # the checkpoint tensor with the backbone's topic centroids


def _json_prior(value: float) -> float | None:
    """A prior strength for JSON: None where the deviation is off (infinite)."""
    return value if math.isfinite(value) else None


def _prior_of_json(value: float | None) -> float:
    return math.inf if value is None else float(value)


def llm_text(name: str, description: str) -> str:
    """The text an LLM node starts from: its name and, when known, its description."""
    return f"{name}: {description}" if description else name


class GMTRouter(PreferenceRouter):
    """Heterogeneous graph transformer over users' interaction graphs with a cross-attention preference head."""

    saves_context = True

    name = "gmtrouter"

    def __init__(
        self,
        encoder: str = DEFAULT_ENCODER,
        hidden: int = 64,
        head_dim: int = 64,
        heads: int = 4,
        layers: int | None = None,
        multi_turn: bool | None = None,
        layer: str = "hgt",
        response_text: bool = True,
        turn_nodes: bool = True,
        norm: str = "batch",
        head_products: bool = True,
        user_sampling: bool = True,
        backbone: bool = True,
        residual: bool = True,
        residual_margin: float = 0.01,
        thumbs_rate: float = 0.2,
        user_prior: float | None = None,
        user_tail: float | None = None,
        conversation: bool = True,
        stay_prior: float | None = None,
        query_prior: float | None = None,
        topic_prior: float | None = None,
        task_prior: float | None = None,
        dropout: float = 0.1,
        lr: float = 5e-4,
        weight_decay: float = 1e-4,
        steps: int = 400,
        eval_every: int = 20,
        patience: int = 6,
        max_visible: int = 16,
        targets_per_step: int = 256,
        users_per_step: int = 512,
        valid_users: int = 1000,
        tune_users: int = 2000,
        cold_user_rate: float = 0.1,
        valid_frac: float = 0.1,
        seed: int = 0,
        progress: bool = True,
        llm_descriptions: dict[str, str] | None = None,
    ) -> None:
        self.encoder = encoder
        self.hidden = hidden
        self.head_dim = head_dim
        self.heads = heads
        self.layers = layers
        self.multi_turn = multi_turn
        self.layer = layer
        self.response_text = response_text
        self.turn_nodes = turn_nodes
        self.norm = norm
        self.head_products = head_products
        self.user_sampling = user_sampling
        self.backbone = backbone
        self.residual = residual
        self.residual_margin = residual_margin
        self.thumbs_rate = thumbs_rate
        self.user_prior = user_prior
        self.user_tail = user_tail
        self.conversation = conversation
        self.stay_prior = stay_prior
        self.query_prior = query_prior
        self.topic_prior = topic_prior
        self.task_prior = task_prior
        self.dropout = dropout
        self.lr = lr
        self.weight_decay = weight_decay
        self.steps = steps
        self.eval_every = eval_every
        self.patience = patience
        self.max_visible = max_visible
        self.targets_per_step = targets_per_step
        self.users_per_step = users_per_step  # a step's graph holds this many users' records, however many there are
        self.valid_users = valid_users  # validation scores this many users' held-out records
        self.tune_users = tune_users  # the backbone's priors are chosen on this many users' records
        self.cold_user_rate = cold_user_rate
        self.valid_frac = valid_frac
        self.seed = seed
        self.progress = progress
        self.llm_descriptions = llm_descriptions

    # ----------------------------------------------------------------------------------------- fitting

    def settings(self) -> dict[str, Any]:
        """The constructor arguments, as saved in checkpoints."""
        names = list(inspect.signature(type(self).__init__).parameters)[1:]
        return {name: getattr(self, name) for name in names}

    def text_encoder(self) -> TextEncoder:
        if not hasattr(self, "_encoder"):
            self._encoder = get_encoder(self.encoder)
        return self._encoder

    def use_text_encoder(self, encoder: TextEncoder) -> None:
        """Embed texts with `encoder` from now on (same name and vectors; e.g. one with a bounded query cache)."""
        if encoder.name != self.text_encoder().name:
            raise GmtError(f"encoder '{encoder.name}' is not this router's '{self.text_encoder().name}'")
        self._encoder = encoder

    def fit(self, train: Sequence[Interaction], valid: Sequence[Interaction] | None = None) -> GMTRouter:
        if not train:
            raise GmtError("no training records; give a file with at least one rated pair")
        self.llms_ = sorted({llm for r in list(train) + list(valid or []) for llm in r.llms})
        descriptions = self.llm_descriptions or {}
        self.llm_text_ = [llm_text(m, descriptions.get(m, "")) for m in self.llms_]
        ratings = [x for r in train for x in r.ratings]
        self.rating_range_ = (float(min(ratings)), float(max(ratings)))
        has_turns = any(r.turn > 1 for r in train)
        multi_turn = has_turns if self.multi_turn is None else self.multi_turn
        self.net_config_ = NetConfig(
            text_dim=self.text_encoder().dim,
            hidden=self.hidden,
            head_dim=self.head_dim,
            heads=self.heads,
            layers=self.layers or (3 if multi_turn else 2),
            dropout=self.dropout,
            multi_turn=multi_turn,
            layer=self.layer,
            response_text=self.response_text,
            turn_nodes=self.turn_nodes,
            norm=self.norm,
            head_products=self.head_products,
        )
        torch.manual_seed(self.seed)
        self.net_ = GMTRouterNet(self.net_config_, self._llm_embeddings())
        self.training_log_ = train_network(self, list(train), list(valid) if valid else None)
        return self

    def sampling(self) -> SamplingConfig:
        return SamplingConfig(self.max_visible, self.targets_per_step, self.cold_user_rate)

    def _llm_embeddings(self) -> torch.Tensor:
        return torch.from_numpy(self.text_encoder().encode(self.llm_text_))

    def table(self, records: Sequence[Interaction]) -> InteractionTable:
        """Flatten records with this router's LLM list, encoder and rating scale."""
        return InteractionTable.build(records, self.llms_, self.text_encoder(), self.rating_range_)

    def graph(self, table: InteractionTable, records: np.ndarray, extra_users: np.ndarray = ()) -> HeteroGraph:
        config = self.net_config_
        return build_graph(table, records, len(self.llms_), config.multi_turn, extra_users, config.turn_nodes)

    def fit_population(self, table: InteractionTable, records: np.ndarray) -> None:
        """Set the backbone's population strengths and stickiness from `records` (zeros without the backbone;
        no stickiness where the router does not read the conversation)."""
        if not self.backbone:
            self.strengths_, self.stay_ = np.zeros(len(self.llms_)), 0.0
            return
        self.strengths_ = population_strengths(table, records)
        self.stay_ = population_stay(table, records, self.strengths_) if self.conversation else 0.0

    def previous(self, table: InteractionTable, records: np.ndarray) -> np.ndarray | None:
        """[len(records)] the LLM that answered each record's previous turn (-1: none); None where the router
        routes every turn alone."""
        return table.rec_prev_llm[records] if self.conversation else None

    def prior_scores(
        self,
        table: InteractionTable,
        graph: HeteroGraph | None,
        states: dict[str, torch.Tensor] | None = None,
        shown: np.ndarray | None = None,
        since: PriorScores | None = None,
        users: np.ndarray | None = None,
    ) -> PriorScores:
        """The backbone given the records `shown` (default: the graph's); with `since` and `users`, `since`
        with the deviations of those users and their queries refitted (`PriorScores.of`).

        With the graph's node `states`, each user's deviation is fitted against the network's residual on
        their own shown records as well, so that it measures how the user departs from everything else the
        model predicts for them.
        """
        shown = graph.records if shown is None else shown
        residual = None
        if states is not None and self.residual and len(shown):
            batch = targets(table, graph, shown)
            batch.llm = torch.arange(len(self.llms_)).expand(len(shown), -1)
            batch.mask = torch.ones_like(batch.llm, dtype=torch.bool)
            residual = np.zeros((table.num_records, len(self.llms_)))
            with torch.no_grad():
                residual[shown] = self.net_.score(states, batch).numpy()
        topics = max(len(self.topics_), 1)
        query_topic = topic_of(table.query_emb, self.topics_)
        return PriorScores.of(
            table, shown, self.strengths_, self.priors_, query_topic, topics, residual, self.stay_, since, users
        )

    def score_targets(
        self,
        table: InteractionTable,
        graph: HeteroGraph,
        scored: np.ndarray,
        shown: np.ndarray | None = None,
        network: bool = True,
        net: torch.nn.Module | None = None,
    ) -> tuple[torch.Tensor, TargetBatch]:
        """(scores [B, K], batch) of table records `scored` against `graph`: backbone plus residual (the
        backbone alone without the `network`). `net` runs the network (default: this router's own; in
        distributed training, its DistributedDataParallel wrapper)."""
        batch = targets(table, graph, scored)
        queries = table.rec_query[scored]
        previous = self.previous(table, scored)

        def prior_of(states: dict[str, torch.Tensor] | None) -> torch.Tensor:
            prior = self.prior_scores(table, graph, states, shown)
            matrix = prior.scores(
                table.rec_user[scored], queries, prior.query_topic[queries], batch.llm.numpy(), previous
            )
            return torch.from_numpy(matrix).float()

        if not network:
            batch.prior = prior_of(None)
            return batch.prior, batch
        return (net or self.net_)(graph, batch, prior_of), batch

    # ----------------------------------------------------------------------------------------- state

    def get_state(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        config = {
            "settings": self.settings(),
            "llms": self.llms_,
            "llm_text": self.llm_text_,
            "rating_range": list(self.rating_range_),
            "net": self.net_config_.to_dict(),
            "strengths": [float(x) for x in self.strengths_],
            "stay": self.stay_,
            "priors": {name: _json_prior(value) for name, value in asdict(self.priors_).items()},
            "training_log": self.training_log_,
        }
        tensors = {k: v.detach().clone().contiguous() for k, v in self.net_.state_dict().items()}
        tensors[TOPICS_KEY] = torch.from_numpy(self.topics_).contiguous()
        return json.loads(json.dumps(config)), tensors

    @classmethod
    def from_state(cls, config: dict[str, Any], tensors: dict[str, torch.Tensor]) -> GMTRouter:
        router = cls(**config["settings"])
        router.llms_ = list(config["llms"])
        router.llm_text_ = list(config["llm_text"])
        router.rating_range_ = tuple(config["rating_range"])
        router.net_config_ = NetConfig(**config["net"])
        router.training_log_ = config.get("training_log", {})
        router.strengths_ = np.asarray(config["strengths"], dtype=np.float64)
        router.stay_ = float(config.get("stay", 0.0))
        router.priors_ = Priors(**{name: _prior_of_json(value) for name, value in config["priors"].items()})
        tensors = dict(tensors)
        router.topics_ = tensors.pop(TOPICS_KEY).numpy()
        router.net_ = GMTRouterNet(router.net_config_, tensors["llm_text"])
        router.net_.load_state_dict(tensors)
        router.net_.eval()
        return router

    def context(self, history: Sequence[Interaction], state: dict[str, torch.Tensor] | None = None) -> GMTContext:
        """The routing context over `history`; `state` (`GMTContext.state()` over this very history, as a
        checkpoint keeps it) spares refitting the backbone and re-encoding the graph."""
        return GMTContext(self, history, state)

    def describe(self) -> dict[str, Any]:
        return {"router": self.name, **asdict(self.net_config_)}


def _layers_of(state: dict[str, torch.Tensor]) -> list[dict[str, torch.Tensor]]:
    """The node states per layer kept in a `GMTContext.state()`."""
    layers: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        if key.startswith("layer."):
            _, index, node = key.split(".", 2)
            layers.setdefault(int(index), {})[node] = value
    return [layers[i] for i in sorted(layers)]


class GMTContext(RoutingContext):
    """Node states of the history graph and the backbone's deviations, kept so that routing a request only runs
    the head. Where training kept no residual (the network adds 0 to every score) the network is skipped
    altogether: the same scores, without encoding the graph."""

    def __init__(
        self, router: GMTRouter, history: Sequence[Interaction], state: dict[str, torch.Tensor] | None = None
    ) -> None:
        self.router = router
        self.network = not router.net_.adds_nothing()
        self._saved = state
        super().__init__(history)

    def refresh(self) -> None:
        """Fit the backbone to the whole history and, where the network adds something, encode its graph (or
        take both from the saved state this context was made with, the first time)."""
        router = self.router
        router.net_.eval()
        self.table = router.table(self.history)
        everything = np.arange(self.table.num_records)
        self.graph = router.graph(self.table, everything) if self.network else None
        saved, self._saved = self._saved, None
        if saved is not None and int(saved["records"]) == self.table.num_records:
            self.layers = _layers_of(saved)
            self.prior = PriorScores.from_arrays(
                {k.removeprefix("prior."): v.numpy() for k, v in saved.items() if k.startswith("prior.")}
            )
            return
        self.layers: list[dict[str, torch.Tensor]] = []
        if self.graph is not None:
            with torch.no_grad():
                self.layers = router.net_.encode_layers(self.graph)
        self.prior = router.prior_scores(self.table, self.graph, self.states, everything)

    def state(self) -> dict[str, torch.Tensor]:
        """The fitted backbone and the node states of every layer, which a checkpoint keeps so that loading the
        model does not refit or re-encode them."""
        out = {f"prior.{k}": torch.from_numpy(np.array(v)) for k, v in self.prior.arrays().items()}
        for index, layer in enumerate(self.layers):
            out.update({f"layer.{index}.{node}": x.contiguous() for node, x in layer.items()})
        return {**out, "records": torch.tensor(self.table.num_records)}

    @property
    def states(self) -> dict[str, torch.Tensor] | None:
        return self.layers[-1] if self.layers else None

    def observe(self, records: Sequence[Interaction]) -> None:
        """Append the records to the graph, re-encode only the subgraph around their users and refit only their
        part of the backbone."""
        records = list(records)
        self.history.extend(records)
        self._users.update(r.user for r in records)
        new = self.table.extend(records)
        if self.graph is not None:
            queries_before = self.graph.num_nodes["query"]
            self.graph.extend(self.table, new)
            nodes = self.graph.user_nodes(self.table, np.unique(self.table.rec_user[new]))
            nodes["query"] = torch.arange(queries_before, self.graph.num_nodes["query"])
            self.layers = self.router.net_.update_layers(self.graph, self.layers, nodes)
        # the backbone of the records' users and of the queries they asked is refitted; the rest is kept
        users = np.unique(self.table.rec_user[new])
        scope = refit_scope(self.table, users)
        self.prior = self.router.prior_scores(self.table, self.graph, self.states, scope, self.prior, users)

    def score_records(self, records: Sequence[Interaction]) -> list[np.ndarray]:
        if not records:
            return []
        router = self.router
        table = router.table(self.history + list(records))
        shown = np.arange(len(self.history))
        scored = np.arange(len(self.history), table.num_records)
        graph = router.graph(table, shown, extra_users=table.rec_user[scored])
        with torch.no_grad():
            scores, batch = router.score_targets(table, graph, scored, network=self.network)
        scores = scores.numpy()
        counts = batch.mask.sum(dim=1).numpy()
        return [scores[i, : counts[i]].astype(float) for i in range(len(records))]

    def explain(self, user: str, query: str, llm: str, top: int = 3) -> list[tuple[Interaction, float]]:
        """The user's past interactions that moved `llm` most for them, each with its signed weight: how much
        better (+) or worse (-) `llm` did in it than the model expected (`prior.record_evidence`); these
        surprises are what set the user's deviation for `llm`."""
        user_id = self.table.user_vocab.get(user, -1)
        llm_id = {m: i for i, m in enumerate(self.router.llms_)}.get(llm, -1)
        if user_id < 0 or llm_id < 0:
            return []
        records = np.flatnonzero(self.table.rec_user == user_id)
        weights = record_evidence(self.table, records, self.prior, llm_id)
        best = [i for i in np.argsort(-np.abs(weights), kind="stable")[:top] if weights[i] != 0]
        return [(self.table.records[records[i]], float(weights[i])) for i in best]

    def score(self, user: str, query: str, llms: Sequence[str]) -> np.ndarray:
        return self.score_turn(user, query, llms, None)

    def score_turn(self, user: str, query: str, llms: Sequence[str], previous: str | None) -> np.ndarray:
        """Scores of `llms` for a request of `user`; `previous` is the LLM that answered the conversation's
        previous turn (None: a first turn, or unknown)."""
        router = self.router
        router.check_llms(llms)
        llm_index = {m: i for i, m in enumerate(router.llms_)}
        user_id = self.table.user_vocab.get(user, -1)
        query_id = self.table.query_vocab.get(query, -1)
        query_x = router.text_encoder().encode([query])
        llm = np.array([[llm_index[m] for m in llms]])
        after = np.array([llm_index.get(previous, -1) if previous and router.conversation else -1])
        topic = topic_of(query_x, router.topics_)
        prior = self.prior.scores(np.array([user_id]), np.array([query_id]), topic, llm, after)
        if not self.network:
            return prior[0].astype(float)
        node = int(self.graph.query_local[query_id]) if query_id >= 0 else -1
        batch = TargetBatch(
            user=torch.from_numpy(self.graph.user_node(np.array([user_id]))),
            query_x=torch.from_numpy(query_x),
            query_node=torch.tensor([node]),
            llm=torch.from_numpy(llm),
            mask=torch.ones(1, len(llms), dtype=torch.bool),
            rating=torch.zeros(1, len(llms)),
            prior=torch.from_numpy(prior).float(),
        )
        with torch.no_grad():
            return router.net_.score(self.states, batch)[0].numpy().astype(float)
