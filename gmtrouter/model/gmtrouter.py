"""GMTRouter as a router: settings, fitting, saving, and the routing context that scores from history."""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, replace
from typing import Any

import numpy as np
import torch

from gmtrouter.data.schema import Interaction
from gmtrouter.graph.build import HeteroGraph, TargetBatch, build_graph, targets
from gmtrouter.graph.sample import SamplingConfig
from gmtrouter.graph.table import InteractionTable
from gmtrouter.model.communities import Communities
from gmtrouter.model.comparisons import refit_scope
from gmtrouter.model.deviations import Priors
from gmtrouter.model.network import GMTRouterNet, NetConfig
from gmtrouter.model.population import Population
from gmtrouter.model.prior import PriorScores, record_evidence
from gmtrouter.model.topics import topic_of
from gmtrouter.model.training import train_network, tune_backbone
from gmtrouter.routing.base import PreferenceRouter, RoutingContext
from gmtrouter.text.base import DEFAULT_ENCODER, TextEncoder
from gmtrouter.text.encoders import get_encoder
from gmtrouter.utils.errors import GmtError

# A router started with no logs: a user's deviation as free as a per-user Bradley-Terry rule with a little
# shrinkage (three consistent votes against an 80% population preference bring it to about 60%, ten overturn it;
# `prior.responsive`), a query's a little stiffer, no topics yet; `fit` chooses them from the data later.
COLD_PRIORS = Priors(user=1.0, query=2.0, topic=math.inf, task=math.inf, user_tail=math.inf, stay=math.inf, own=1.0)
SETTLE_STEPS = 12  # at most this many Newton steps settle the population with its users on a full fit
SETTLED = 1e-3  # ... until no strength moves more than this
TOPICS_KEY = "backbone.topics"  # the checkpoint tensor with the backbone's topic centroids
COMMUNITIES_KEY = "backbone.communities"  # the checkpoint tensors of the taste communities, where there are any


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
        own_prior: float | None = None,
        communities: int | None = None,
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
        self.own_prior = own_prior
        self.communities = communities  # taste communities (None: cross-validation chooses; 1: none)
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
        """Embed texts with `encoder` from now on (same name and vectors; e.g. one with a bounded query cache, or
        the static table a model folder kept: the setting's own encoder is not built first)."""
        current = self._encoder.name if hasattr(self, "_encoder") else self.encoder
        if encoder.name != current:
            raise GmtError(f"encoder '{encoder.name}' is not this router's '{current}'")
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
        self.net_config_ = self._network_config(multi_turn)
        torch.manual_seed(self.seed)
        self.net_ = GMTRouterNet(self.net_config_, self._llm_embeddings())
        self.training_log_ = train_network(self, list(train), list(valid) if valid else None)
        return self

    def _network_config(self, multi_turn: bool) -> NetConfig:
        """The network's shape from the settings (three layers where turns are read, two otherwise)."""
        return NetConfig(
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

    def start(self, llms: Sequence[str]) -> GMTRouter:
        """Make this router ready to route among `llms` with no logs: every LLM at the population's average, the
        backbone's priors at `COLD_PRIORS` (or the settings' own), no topics, a network that adds nothing. It
        learns from the first feedback on, through its routing context; `fit` on the history it has gathered
        later chooses priors and topics from the data."""
        names = list(dict.fromkeys(llms))
        if not names:
            raise GmtError("name at least one LLM to route among")
        self.llms_ = []
        self.llm_text_ = []
        self.rating_range_ = (0.0, 1.0)
        self.net_config_ = self._network_config(multi_turn=False)
        torch.manual_seed(self.seed)
        self.population_ = Population(np.zeros(0))
        self.topics_ = np.zeros((0, self.text_encoder().dim), np.float32)
        fixed = {
            "user": self.user_prior,
            "query": self.query_prior,
            "topic": self.topic_prior,
            "task": self.task_prior,
            "user_tail": self.user_tail,
            "stay": self.stay_prior,
            "own": self.own_prior,
        }
        self.priors_ = replace(COLD_PRIORS, **{k: v for k, v in fixed.items() if v is not None})
        self.communities_ = None
        self.training_log_ = {"cold_start": True}
        for name in names:
            self._append_llm(name, (self.llm_descriptions or {}).get(name, ""))
        self.net_ = GMTRouterNet(self.net_config_, self._llm_embeddings())
        self.net_.eval()
        return self

    def add_llm(self, name: str, description: str = "") -> None:
        """Route among `name` too, from now on: at the population's average (the population prior's mean, 0: the
        strengths are centred), with no deviation for anyone; where the network is used, its LLM node starts
        from the text of its name and description, as every LLM node does."""
        self._append_llm(name, description)
        self.net_.set_llms(self._llm_embeddings())

    def _append_llm(self, name: str, description: str) -> None:
        if name in self.llms_:
            raise GmtError(f"LLM '{name}' is already one this router routes among")
        self.llms_.append(name)
        self.llm_text_.append(llm_text(name, description))
        self.population_ = self.population_.widened(1)
        if getattr(self, "communities_", None) is not None:
            self.communities_ = self.communities_.widened(1)

    def refit_backbone(self, records: Sequence[Interaction]) -> None:
        """Choose the backbone's priors and topics again, by cross-validation over `records` (a routing
        context's history), keeping the LLMs, their order and the network."""
        from_start = bool(self.training_log_.get("cold_start"))
        table = self.table(records)
        self.training_log_ = {"cold_start": from_start, "backbone": tune_backbone(self, table, np.arange(len(records)))}

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
        """Set the backbone's population (strengths, thumb bias, stickiness) from `records` (all zeros without
        the backbone; no stickiness where the router does not read the conversation)."""
        self.population_ = self.population_of(table, records)

    def population_of(self, table: InteractionTable, records: np.ndarray) -> Population:
        """What everybody shares, fitted over `records` (a routing context's whole history)."""
        if not self.backbone:
            return Population(np.zeros(len(self.llms_)))
        return Population.fit(table, records, self.conversation)

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
        population: Population | None = None,
        posterior: bool = False,
    ) -> PriorScores:
        """The backbone given the records `shown` (default: the graph's); with `since` and `users`, `since`
        with the deviations of those users and their queries refitted (`PriorScores.of`). `population`: what
        everybody shares (default: the one training fitted); `posterior`: with every deviation's variance.

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
            table,
            shown,
            population or self.population_,
            self.priors_,
            query_topic,
            topics,
            residual,
            since,
            users,
            posterior,
            getattr(self, "communities_", None),
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
                table.rec_user[scored],
                queries,
                prior.query_topic[queries],
                batch.llm.numpy(),
                previous,
                table.rec_own[scored],
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
            "strengths": [float(x) for x in self.population_.strengths],
            "thumb_bias": self.population_.thumb_bias,
            "stay": self.population_.stay,
            "priors": {name: _json_prior(value) for name, value in asdict(self.priors_).items()},
            "training_log": self.training_log_,
        }
        tensors = {k: v.detach().clone().contiguous() for k, v in self.net_.state_dict().items()}
        tensors[TOPICS_KEY] = torch.from_numpy(self.topics_).contiguous()
        if self.communities_ is not None:
            for key, value in self.communities_.arrays().items():
                tensors[f"{COMMUNITIES_KEY}.{key}"] = torch.from_numpy(np.ascontiguousarray(value))
        return json.loads(json.dumps(config)), tensors

    @classmethod
    def from_state(cls, config: dict[str, Any], tensors: dict[str, torch.Tensor]) -> GMTRouter:
        router = cls(**config["settings"])
        router.llms_ = list(config["llms"])
        router.llm_text_ = list(config["llm_text"])
        router.rating_range_ = tuple(config["rating_range"])
        router.net_config_ = NetConfig(**config["net"])
        router.training_log_ = config.get("training_log", {})
        strengths = np.asarray(config["strengths"], dtype=np.float64)
        router.population_ = Population(strengths, float(config.get("thumb_bias", 0.0)), float(config.get("stay", 0.0)))
        router.priors_ = Priors(**{name: _prior_of_json(value) for name, value in config["priors"].items()})
        tensors = dict(tensors)
        router.topics_ = tensors.pop(TOPICS_KEY).numpy()
        shared = {
            k.removeprefix(f"{COMMUNITIES_KEY}."): tensors.pop(k).numpy()
            for k in list(tensors)
            if k.startswith(COMMUNITIES_KEY)
        }
        router.communities_ = Communities.from_arrays(shared) if shared else None
        router.net_ = GMTRouterNet(router.net_config_, tensors["llm_text"])
        router.net_.load_state_dict(tensors)
        router.net_.eval()
        return router

    def uses_topics(self) -> bool:
        """Whether a query's topic moves its scores: there are topics, and the task or the user-topic deviation
        is on (cross-validation switches both off on most data)."""
        return len(self.topics_) > 0 and (math.isfinite(self.priors_.task) or math.isfinite(self.priors_.topic))

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
        """Fit the backbone to the whole history (what everybody shares included) and, where the network adds
        something, encode its graph (or take both from the saved state this context was made with, the first
        time)."""
        router = self.router
        router.net_.eval()
        self.table = router.table(self.history)
        everything = np.arange(self.table.num_records)
        self.graph = router.graph(self.table, everything) if self.network else None
        saved, self._saved = self._saved, None
        if saved is not None and int(saved["records"]) == self.table.num_records and "prior.variance.user" in saved:
            self.layers = _layers_of(saved)
            self.prior = PriorScores.from_arrays(
                {k.removeprefix("prior."): v.numpy() for k, v in saved.items() if k.startswith("prior.")}
            )
            return
        self.layers: list[dict[str, torch.Tensor]] = []
        if self.graph is not None:
            with torch.no_grad():
                self.layers = router.net_.encode_layers(self.graph)
        population = router.population_of(self.table, everything)
        for _ in range(SETTLE_STEPS):  # what everybody shares, settled with what each user says
            prior = router.prior_scores(
                self.table, self.graph, self.states, everything, population=population, posterior=True
            )
            settled = population.settled(*prior.taste(), router.priors_)
            moved = np.abs(settled.strengths - population.strengths).max(initial=0.0)
            population = settled
            if moved < SETTLED:
                break
        prior.population = population
        self.prior = prior

    def state(self) -> dict[str, torch.Tensor]:
        """The fitted backbone and the node states of every layer, which a checkpoint keeps so that loading the
        model does not refit or re-encode them."""
        out = {f"prior.{k}": torch.from_numpy(np.array(v)) for k, v in self.prior.arrays().items()}
        for index, layer in enumerate(self.layers):
            out.update({f"layer.{index}.{node}": x.contiguous() for node, x in layer.items()})
        return {**out, "records": torch.tensor(self.table.num_records)}

    @property
    def needs_query_vector(self) -> bool:
        """Only the network and the backbone's topics read the query's vector; without either (the residual
        dropped, the topics off) a new query routes without being encoded, as fast as a known one."""
        return self.network or self.router.uses_topics()

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
        # the backbone of the records' users and of the queries they asked is refitted, and what everybody
        # shares moves by what those users now say; the rest is kept
        users = np.unique(self.table.rec_user[new])
        scope = refit_scope(self.table, users)
        before = self.prior
        after = self.router.prior_scores(
            self.table, self.graph, self.states, scope, before, users, before.population, posterior=True
        )
        taste, spread = after.taste()
        old_taste = before.taste()[0]
        old_rows = np.zeros((len(users), taste.shape[1]))
        known = users < len(old_taste)
        old_rows[known] = old_taste[users[known]]
        after.population = before.population.after(old_rows, taste[users], taste, spread, self.router.priors_)
        after.follow(after.population.strengths - before.population.strengths, self.router.priors_)
        self.prior = after

    def add_llm(self, name: str, description: str = "") -> None:
        """Route among `name` too (`GMTRouter.add_llm`): its columns join the backbone at the population's
        average, with nobody's evidence; where the network is used, the graph is encoded again with the new LLM
        node."""
        self.router.add_llm(name, description)
        self.table.llms.append(name)
        self.prior.widen(1, self.router.priors_)
        if self.network:
            self.refresh()

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

    def explain(
        self, user: str, query: str, llm: str, top: int = 3, against: str | None = None
    ) -> list[tuple[Interaction, float]]:
        """The user's past interactions that did most for `llm` (against `against`, when given: the runner-up
        of a route), each with its weight: how much better `llm` did in it than the model expected, less how
        much better `against` did (`prior.record_evidence`). These surprises are what set the user's deviation,
        so the interactions with the largest are what made `llm` win for them; none when the population's
        preference alone decided."""
        user_id = self.table.user_vocab.get(user, -1)
        llm_index = {m: i for i, m in enumerate(self.router.llms_)}
        if user_id < 0 or llm not in llm_index or (against is not None and against not in llm_index):
            return []
        records = np.flatnonzero(self.table.rec_user == user_id)
        weights = record_evidence(self.table, records, self.prior, llm_index[llm])
        if against is not None:
            weights = weights - record_evidence(self.table, records, self.prior, llm_index[against])
        best = [i for i in np.argsort(-weights, kind="stable")[:top] if weights[i] > 0]
        return [(self.table.records[records[i]], float(weights[i])) for i in best]

    def score(self, user: str, query: str, llms: Sequence[str]) -> np.ndarray:
        return self.score_turn(user, query, llms, None)

    def parts(self, user: str, query: str, llms: Sequence[str], previous: str | None = None) -> dict[str, np.ndarray]:
        """Each LLM's score for this request split into its parts (`PriorScores.parts`, and the network's residual
        where it is used): what each part of the model says, which the reasons of a route read."""
        router = self.router
        router.check_llms(llms)
        llm_index = {m: i for i, m in enumerate(router.llms_)}
        user_id = self.table.user_vocab.get(user, -1)
        query_id = self.table.query_vocab.get(query, -1)
        topic = topic_of(router.text_encoder().encode([query]), router.topics_) if self.needs_query_vector else [0]
        columns = [llm_index[m] for m in llms]
        own = np.array([self.table.own_vocab.get((user_id, query_id), -1)])
        after = np.array([llm_index.get(previous, -1) if previous and router.conversation else -1])
        split = self.prior.parts(np.array([user_id]), np.array([query_id]), np.asarray(topic), after, own)
        out = {name: value[0, columns] for name, value in split.items()}
        if self.network:
            out["network"] = self.score_turn(user, query, llms, previous) - sum(out.values())
        return out

    def uncertainty(self, user: str, query: str, llms: Sequence[str], personal: float = 1.0) -> np.ndarray:
        """The posterior standard deviation of each LLM's score for this request (`PriorScores.spread`, its
        personal parts' times `personal`)."""
        router = self.router
        router.check_llms(llms)
        llm_index = {m: i for i, m in enumerate(router.llms_)}
        user_id = self.table.user_vocab.get(user, -1)
        query_id = self.table.query_vocab.get(query, -1)
        topic = topic_of(router.text_encoder().encode([query]), router.topics_) if self.needs_query_vector else [0]
        llm = np.array([[llm_index[m] for m in llms]])
        own = np.array([self.table.own_vocab.get((user_id, query_id), -1)])
        return self.prior.spread(np.array([user_id]), np.array([query_id]), np.asarray(topic), llm, own, personal)[0]

    def score_turn(self, user: str, query: str, llms: Sequence[str], previous: str | None) -> np.ndarray:
        """Scores of `llms` for a request of `user`; `previous` is the LLM that answered the conversation's
        previous turn (None: a first turn, or unknown)."""
        router = self.router
        router.check_llms(llms)
        llm_index = {m: i for i, m in enumerate(router.llms_)}
        user_id = self.table.user_vocab.get(user, -1)
        query_id = self.table.query_vocab.get(query, -1)
        query_x = router.text_encoder().encode([query]) if self.needs_query_vector else None
        llm = np.array([[llm_index[m] for m in llms]])
        after = np.array([llm_index.get(previous, -1) if previous and router.conversation else -1])
        topic = topic_of(query_x, router.topics_) if query_x is not None else np.zeros(1, dtype=np.int64)
        own = np.array([self.table.own_vocab.get((user_id, query_id), -1)])
        prior = self.prior.scores(np.array([user_id]), np.array([query_id]), topic, llm, after, own)
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
