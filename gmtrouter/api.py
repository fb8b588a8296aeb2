"""The Python API: load a trained router, route a user's request, feed back what they thought of it.

router = Router.load("runs/demo/model")
decision = router.route("expert_12", [{"role": "user", "content": "Write a haiku about rain"}])
router.route("expert_12", messages, conversation="chat-7", switch_cost=1.0)  # turn 2+: reads the conversation
router.observe({...canonical record...})   # personalises at once, no retraining
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import ValidationError

from gmtrouter.data.prices import estimate_tokens
from gmtrouter.data.schema import Interaction, first_error
from gmtrouter.registry.checkpoint import load_context_state, load_router
from gmtrouter.routing.base import PreferenceRouter, RoutingContext
from gmtrouter.routing.costs import cost_adjusted, mean_costs
from gmtrouter.routing.explore import EXPLORE_MODES, THOMPSON_SCALE, explore_choice
from gmtrouter.text.base import DEFAULT_ENCODER
from gmtrouter.text.querycache import QueryCacheEncoder
from gmtrouter.utils.errors import GmtError
from gmtrouter.utils.heap import collector_paused

Message = Mapping[str, Any]


@dataclass(frozen=True)
class RankedLLM:
    """One candidate: its preference score (a logit), expected cost (USD, None if unknown), and the two combined."""

    llm: str
    score: float
    expected_cost: float | None
    adjusted: float


@dataclass(frozen=True)
class RouteDecision:
    """The chosen LLM and the full ranking behind it."""

    user: str
    llm: str
    ranking: list[RankedLLM]
    known_user: bool
    cost_weight: float
    notes: list[str] = field(default_factory=list)
    previous_llm: str | None = None  # the LLM that answered the conversation's previous turn, when known
    switch_cost: float = 0.0
    explored: bool = False  # the choice is not the top of the ranking: a draw from the router's uncertainty
    query: str = ""  # the text routed on

    def to_dict(self) -> dict[str, Any]:
        return {
            "user": self.user,
            "llm": self.llm,
            "known_user": self.known_user,
            "cost_weight": self.cost_weight,
            "previous_llm": self.previous_llm,
            "switch_cost": self.switch_cost,
            "explored": self.explored,
            "ranking": [vars(r) for r in self.ranking],
            "notes": self.notes,
        }


def query_of(messages: str | Sequence[Message]) -> str:
    """The text to route on: the last user message of an OpenAI-style chat, or a plain string."""
    if isinstance(messages, str):
        text = messages
    else:
        users = [m for m in messages if m.get("role") == "user"]
        if not users:
            raise GmtError("messages hold no user message; add one with role 'user'")
        content = users[-1].get("content")
        if isinstance(content, list):  # OpenAI content parts
            texts = [part.get("text") for part in content if isinstance(part, Mapping)]
            content = " ".join(t for t in texts if isinstance(t, str))
        text = content if isinstance(content, str) else ""
    if not text.strip():
        raise GmtError("the query is empty; send a user message with text")
    return text


def previous_model(messages: str | Sequence[Message]) -> str | None:
    """The LLM that answered the previous turn, as the chat says: the `model` named on the last assistant
    message before the last user message (None for a first turn or an unnamed answer)."""
    if isinstance(messages, str):
        return None
    last_user = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=-1)
    answers = [m for m in messages[:last_user] if m.get("role") == "assistant"]
    model = answers[-1].get("model") if answers else None
    return model if isinstance(model, str) and model else None


def switch_adjusted(adjusted: np.ndarray, llms: Sequence[str], previous: str | None, switch_cost: float) -> np.ndarray:
    """`adjusted` less `switch_cost` logits for every LLM but the one that answered the previous turn."""
    if previous is None or switch_cost == 0:
        return adjusted
    return adjusted - switch_cost * np.array([m != previous for m in llms], dtype=float)


REASONS = {  # each part of a score, as a route's reasons name it
    "population": "everybody's preference",
    "task": "everybody's verdict on this kind of question",
    "user": "this user's taste",
    "user_topic": "this user's taste on this kind of question",
    "own": "this user's own verdict on this question",
    "query": "other users' verdicts on this question",
    "stay": "staying with the LLM of the previous turn",
    "network": "the graph network",
}
ROUTER_SETTINGS = ("query_cache", "conversations", "cached_input_prices", "seed", "ucb_width", "thompson_scale")


class Router:
    """A trained preference router bound to the interactions users have shown so far.

    Routed queries are embedded once and kept in a bounded in-memory LRU (`query_cache` entries), as the service
    does: a repeated query skips the encoder, and routed texts never grow the on-disk embedding cache.

    `explore` chooses how a route may try an LLM the router is unsure of: `thompson` draws every candidate's
    score from its posterior and takes the best draw (an LLM is tried about as often as it could be the best),
    the parts only this user's or this query's later routes would learn from drawn at `thompson_scale` times
    their spread (what everybody shares, a new LLM's strength included, at its full spread), `ucb`
    takes the best optimistic score (mean plus `ucb_width` standard deviations), `off` always the best expected
    one. Draws come from a generator seeded with `seed`, so a run is reproducible.
    """

    def __init__(
        self,
        model: PreferenceRouter,
        history: Sequence[Interaction],
        query_cache: int = 10_000,
        conversations: int = 100_000,
        cached_input_prices: Mapping[str, tuple[float, float]] | None = None,
        context_state: dict[str, torch.Tensor] | None = None,
        explore: str = "off",
        seed: int | None = None,
        ucb_width: float = 1.0,
        thompson_scale: float = THOMPSON_SCALE,
    ) -> None:
        """`context_state`: the routing context a checkpoint saved over exactly this `history`
        (`checkpoint.load_context_state`), which spares rebuilding it."""
        if explore not in EXPLORE_MODES:
            raise GmtError(f"explore must be one of {', '.join(EXPLORE_MODES)}, got '{explore}'")
        if not ucb_width >= 0:
            raise GmtError(f"ucb_width must be 0 or more, got {ucb_width}")
        if not thompson_scale >= 0:
            raise GmtError(f"thompson_scale must be 0 or more, got {thompson_scale}")
        self.explore, self.ucb_width, self.thompson_scale = explore, ucb_width, thompson_scale
        self.rng = np.random.default_rng(seed)
        self.retired: set[str] = set()
        self.refit_after: int | None = None  # a cold router refits its backbone as its history grows
        self._refitted_at = 0
        self.model = model
        # (user, conversation id) -> the LLM last routed there, the newest `conversations` kept
        self.conversations: OrderedDict[tuple[str, str], str] = OrderedDict()
        self.max_conversations = conversations
        self.cached_input_prices = dict(cached_input_prices or {})  # LLM -> (input, cached input) USD / 1M tokens
        encoder = getattr(model, "text_encoder", None)
        if encoder is not None and hasattr(model, "use_text_encoder") and not isinstance(encoder(), QueryCacheEncoder):
            model.use_text_encoder(QueryCacheEncoder(encoder(), query_cache))
        self.costs = mean_costs(history)
        self.context: RoutingContext = (
            model.context(history) if context_state is None else model.context(history, state=context_state)
        )

    @classmethod
    def load(
        cls, path: str | Path, cached_input_prices: Mapping[str, tuple[float, float]] | None = None, **settings: Any
    ) -> Router:
        """The router saved in `path` by `gmtrouter train`, with its training history as context;
        `cached_input_prices` (LLM -> input and cached-input USD per 1M tokens, e.g. from
        `PriceBook.cached_input_prices`) prices the prompt cache a conversation keeps by staying; `settings`:
        `explore`, `seed`, `ucb_width`, `query_cache`, `conversations`."""
        with collector_paused():  # no collections while millions of objects are built (nothing is frozen here)
            model, history = load_router(path)
            state = load_context_state(path)
            return cls(model, history, cached_input_prices=cached_input_prices, context_state=state, **settings)

    @classmethod
    def cold(
        cls,
        llms: Sequence[str],
        descriptions: Mapping[str, str] | None = None,
        encoder: str = DEFAULT_ENCODER,
        explore: str = "thompson",
        refit_after: int | None = 200,
        **settings: Any,
    ) -> Router:
        """A router for a team with no logs yet: it routes among `llms` (with their `descriptions`, where
        known) at the population's average and learns from the first feedback on. Exploration is on by default:
        with nothing known, trying each LLM is how it finds out. `refit_after`: once the history holds that many
        records, and each time it has doubled since, the backbone's priors and topics are chosen again from it
        (None: never); `settings`: as for `Router`, and GMTRouter's own (`seed`, ...)."""
        from gmtrouter.model.gmtrouter import GMTRouter

        own = {k: settings.pop(k) for k in list(settings) if k not in ROUTER_SETTINGS}
        own.setdefault("seed", settings.get("seed") or 0)
        model = GMTRouter(
            encoder=encoder, residual=False, progress=False, llm_descriptions=dict(descriptions or {}), **own
        )
        router = cls(model.start(llms), [], explore=explore, **settings)
        router.refit_after = refit_after
        return router

    @property
    def llms(self) -> list[str]:
        """Every LLM the router knows, retired ones included."""
        return list(self.model.llms_)

    @property
    def active_llms(self) -> list[str]:
        """The LLMs a route chooses among when it names no candidates: every one the router knows but those
        retired."""
        return [m for m in self.model.llms_ if m not in self.retired]

    def add_llm(self, name: str, description: str = "") -> None:
        """Route among a new LLM from now on, without retraining: it starts at the population's average and
        learns from feedback like the others (exploration tries it while it is uncertain)."""
        if not name or not name.strip():
            raise GmtError("an LLM needs a name")
        if name in self.model.llms_:
            if name in self.retired:
                self.retired.discard(name)
                return
            raise GmtError(f"LLM '{name}' is already one this router routes among")
        self.context.add_llm(name, description)

    def retire_llm(self, name: str) -> None:
        """Stop offering `name` as a default candidate (its history stays, and a route may still name it)."""
        self.model.check_llms([name])
        self.retired.add(name)

    def refit(self) -> None:
        """Choose the backbone's priors and topics again from the history gathered so far (by cross-validation,
        as training does), then fit everything to it; the network, if any, is kept."""
        self.model.refit_backbone(self.context.history)
        self.context.refresh()
        self._refitted_at = len(self.context.history)

    def route(
        self,
        user: str,
        messages: str | Sequence[Message],
        candidates: Sequence[str] | None = None,
        cost_weight: float = 0.0,
        conversation: str | None = None,
        switch_cost: float = 0.0,
        previous_llm: str | None = None,
        explore: bool | None = None,
    ) -> RouteDecision:
        """Rank `candidates` (default: every LLM the router knows) for this user's request, and choose one: the
        top of the ranking, or with exploration (the router's `explore` mode; `explore=False` turns it off for
        this request) possibly another that the router is unsure of (`decision.explored`).

        A later turn of a conversation is scored after the LLM that answered the turn before: `previous_llm`,
        else the `model` on the chat's last assistant message, else the LLM this router last chose for the
        `conversation` id. Every other LLM then costs `switch_cost` logits more, and staying saves the prompt
        cache where the LLM has a cached-input price.
        """
        if not (math.isfinite(cost_weight) and cost_weight >= 0):
            raise GmtError(f"cost_weight must be a finite number, 0 or more; got {cost_weight}")
        if not (math.isfinite(switch_cost) and switch_cost >= 0):
            raise GmtError(f"switch_cost must be a finite number, 0 or more; got {switch_cost}")
        query = query_of(messages)
        llms = list(dict.fromkeys(candidates)) if candidates else self.active_llms
        if not llms:
            raise GmtError("no candidate LLMs; name at least one")
        previous = previous_llm or previous_model(messages) or self.conversations.get((user, conversation or ""))
        notes = []
        if previous is not None and previous not in self.llms:
            notes.append(f"previous LLM '{previous}' is not one this router knows: scored as a first turn")
            previous = None
        if self.context.needs_query_vector:
            self.encode_queries([query])
        scores = self.context.score_turn(user, query, llms, previous)
        costs = [self._expected_cost(m, previous, messages) for m in llms]
        adjusted = switch_adjusted(cost_adjusted(scores, costs, cost_weight), llms, previous, switch_cost)
        order = np.argsort(-adjusted, kind="stable")
        ranking = [RankedLLM(llms[i], float(scores[i]), costs[i], float(adjusted[i])) for i in order]
        chosen = self._choose(user, query, llms, adjusted, explore)
        explored = chosen != int(order[0])
        if explored:
            how = "a draw from its posterior" if self.explore == "thompson" else "its upper confidence bound"
            notes.append(f"explored: {llms[chosen]} by {how}, over the expected best {llms[order[0]]}")
        known = self.context.knows_user(user)
        if not known:
            notes.append(f"user '{user}' has no history: routed by the population's preferences")
        if conversation:
            self._remember(user, conversation, llms[chosen])
        return RouteDecision(
            user, llms[chosen], ranking, known, cost_weight, notes, previous, switch_cost, explored, query
        )

    def reasons(self, decision: RouteDecision) -> list[tuple[str, float]]:
        """What set the chosen LLM apart from the runner-up, part by part of the model (`REASONS`), largest
        first: each part's score of the chosen LLM minus its score of the runner-up, in logits (their sum is the
        difference of the two scores). Empty when there is no runner-up."""
        rivals = [r.llm for r in decision.ranking if r.llm != decision.llm]
        if not rivals:
            return []
        parts = self.context.parts(decision.user, decision.query, [decision.llm, rivals[0]], decision.previous_llm)
        gaps = [(REASONS.get(name, name), float(value[0] - value[1])) for name, value in parts.items()]
        return sorted((g for g in gaps if abs(g[1]) > 1e-9), key=lambda g: -abs(g[1]))

    def _choose(self, user: str, query: str, llms: list[str], adjusted: np.ndarray, explore: bool | None) -> int:
        """The index of the LLM to route to: the best adjusted score, or under exploration the best draw
        (Thompson) or the best optimistic score (UCB) from the context's uncertainty about each."""
        if explore is False or self.explore == "off" or len(llms) == 1:
            return int(np.argmax(adjusted))
        personal = self.thompson_scale if self.explore == "thompson" else 1.0
        spread = self.context.uncertainty(user, query, llms, personal)
        return explore_choice(adjusted, spread, self.explore, self.rng, self.ucb_width)

    def encode_queries(self, queries: Sequence[str]) -> int:
        """Put the vectors of routed queries into the LRU (one encoder call for those not there yet), where the
        model reads them at all; returns how many were computed."""
        encoder = getattr(self.model, "text_encoder", None)
        if encoder is None or not self.context.needs_query_vector or not isinstance(encoder(), QueryCacheEncoder):
            return 0
        return encoder().encode_queries(queries)

    def needs_encoding(self, queries: Sequence[str]) -> bool:
        """Whether routing these queries has any encoder work to do (a new query, and a model that reads it)."""
        encoder = getattr(self.model, "text_encoder", None)
        if encoder is None or not self.context.needs_query_vector or not isinstance(encoder(), QueryCacheEncoder):
            return False
        return not all(encoder().has(query) for query in queries)

    def _expected_cost(self, llm: str, previous: str | None, messages: str | Sequence[Message]) -> float | None:
        """The LLM's mean cost, less what its prompt cache saves when it answered the previous turn too: the
        conversation so far is a cached prefix, billed at the cached-input price instead of the input price."""
        cost = self.costs.get(llm)
        if cost is None or llm != previous or llm not in self.cached_input_prices or isinstance(messages, str):
            return cost
        full, cached = self.cached_input_prices[llm]
        prefix = sum(estimate_tokens(str(m.get("content") or "")) for m in messages[:-1])
        return max(cost - prefix * (full - cached) / 1e6, 0.0)

    def _remember(self, user: str, conversation: str, llm: str) -> None:
        key = (user, conversation)
        self.conversations[key] = llm
        self.conversations.move_to_end(key)
        while len(self.conversations) > self.max_conversations:
            self.conversations.popitem(last=False)

    def explain(self, user: str, query: str, llm: str, against: str | None = None) -> list[dict[str, Any]]:
        """The user's past interactions that did most for `llm` on `query` (against `against`: the runner-up of a
        route), as plain data (empty when the router cannot attribute its scores): each with its ratings and its
        weight (logits by which `llm` did better there than expected, less `against`)."""
        return [
            {
                "conversation": record.conversation,
                "turn": record.turn,
                "query": record.query,
                "ratings": {r.llm: r.rating for r in record.responses},
                "weight": float(weight),
            }
            for record, weight in self.context.explain(user, query, llm, against=against)
        ]

    def history(self, user: str) -> list[Interaction]:
        """The interactions of `user` the router scores from, oldest first."""
        return self.context.records_of(user)

    def profile(self, user: str) -> dict[str, Any]:
        """How much history a user has and, from it, how often each LLM won the user's comparisons."""
        records = self.history(user)
        wins: dict[str, list[float]] = {}
        for record in records:
            top = max(record.ratings)
            for response in record.responses:
                if len(record.responses) > 1:
                    wins.setdefault(response.llm, []).append(float(response.rating == top))
        rates = {llm: float(np.mean(v)) for llm, v in wins.items()}
        return {
            "user": user,
            "known": self.context.knows_user(user),
            "interactions": len(records),
            "preferred_llms": sorted(rates, key=lambda m: -rates[m]),
            "win_rate": rates,
        }

    def forget(self, user: str) -> None:
        """Remove every interaction of `user`: the next route treats them as a new user."""
        self.context.forget(user)
        for key in [key for key in self.conversations if key[0] == user]:
            del self.conversations[key]

    def observe(self, record: Interaction | Mapping[str, Any]) -> None:
        """Add one rated interaction to its user's history; the next route for that user reflects it."""
        self.observe_many([record])

    def observe_many(self, records: Sequence[Interaction | Mapping[str, Any]]) -> None:
        """Add rated interactions, re-encoding only around their users: all of them or, if one cannot be added, none.

        A mapping is checked against the record contract first (an `Interaction` was checked when it was made).
        Should folding fail anyway, the routing context is rebuilt over the history as it was, and the `FoldError`
        names the records that cannot be folded.
        """
        interactions = [_checked(index, record) for index, record in enumerate(records)]
        for interaction in interactions:
            self.model.check_llms(interaction.llms)
        kept = len(self.context.history)
        try:
            self.context.observe(interactions)
        except Exception as error:
            self.context = self.model.context(self.context.history[:kept])
            raise FoldError(self.unfoldable(interactions), interactions, error) from error
        grown = len(self.context.history)
        if self.refit_after is not None and grown >= max(self.refit_after, 2 * self._refitted_at):
            self.refit()
        for response in (x for interaction in interactions for x in interaction.responses):
            if response.cost is not None and response.llm not in self.costs:
                self.costs[response.llm] = response.cost

    def unfoldable(self, records: Sequence[Interaction]) -> list[int]:
        """Indices of the records that cannot be folded even into a history of their own (each one alone)."""
        bad = []
        for index, record in enumerate(records):
            try:
                self.model.context([record])
            except Exception:
                bad.append(index)
        return bad


class FoldError(GmtError):
    """Records could not be folded into the history; the router is as it was before the attempt.

    `indices` are the records that fail on their own (empty when only the batch as a whole failed).
    """

    def __init__(self, indices: list[int], records: Sequence[Interaction], cause: BaseException) -> None:
        self.indices = indices
        named = indices or range(len(records))
        which = ", ".join(
            f"record {i + 1} (user {records[i].user}, conversation {records[i].conversation}, turn {records[i].turn})"
            for i in named[:3]
        )
        reason = str(cause).splitlines()[0] if str(cause) else ""
        super().__init__(
            f"{which} cannot be folded into the history ({cause.__class__.__name__}: {reason}); nothing was added"
        )


def _checked(index: int, record: Interaction | Mapping[str, Any]) -> Interaction:
    """The record, validated against the record contract; a `GmtError` names the record and the field."""
    try:
        return record if isinstance(record, Interaction) else Interaction.model_validate(record)
    except ValidationError as error:
        field, message = first_error(error)
        raise GmtError(f"record {index + 1}: field '{field}': {message}") from None
