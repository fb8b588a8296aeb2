"""The Python API: load a trained router, route a user's request, feed back what they thought of it.

router = Router.load("runs/demo/model")
decision = router.route("expert_12", [{"role": "user", "content": "Write a haiku about rain"}])
router.route("expert_12", messages, conversation="chat-7", switch_cost=1.0)  # turn 2+: reads the conversation
router.observe({...canonical record...})   # personalises at once, no retraining
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gmtrouter.data.prices import estimate_tokens
from gmtrouter.data.schema import Interaction
from gmtrouter.registry.checkpoint import load_context_state, load_router
from gmtrouter.routing.base import PreferenceRouter, RoutingContext
from gmtrouter.routing.costs import cost_adjusted, mean_costs
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

    def to_dict(self) -> dict[str, Any]:
        return {
            "user": self.user,
            "llm": self.llm,
            "known_user": self.known_user,
            "cost_weight": self.cost_weight,
            "previous_llm": self.previous_llm,
            "switch_cost": self.switch_cost,
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


class Router:
    """A trained preference router bound to the interactions users have shown so far.

    Routed queries are embedded once and kept in a bounded in-memory LRU (`query_cache` entries), as the service
    does: a repeated query skips the encoder, and routed texts never grow the on-disk embedding cache.
    """

    def __init__(
        self,
        model: PreferenceRouter,
        history: Sequence[Interaction],
        query_cache: int = 10_000,
        conversations: int = 100_000,
        cached_input_prices: Mapping[str, tuple[float, float]] | None = None,
        context_state: dict[str, torch.Tensor] | None = None,
    ) -> None:
        """`context_state`: the routing context a checkpoint saved over exactly this `history`
        (`checkpoint.load_context_state`), which spares rebuilding it."""
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
    def load(cls, path: str | Path, cached_input_prices: Mapping[str, tuple[float, float]] | None = None) -> Router:
        """The router saved in `path` by `gmtrouter train`, with its training history as context;
        `cached_input_prices` (LLM -> input and cached-input USD per 1M tokens, e.g. from
        `PriceBook.cached_input_prices`) prices the prompt cache a conversation keeps by staying."""
        with collector_paused():  # no collections while millions of objects are built (nothing is frozen here)
            model, history = load_router(path)
            state = load_context_state(path)
            return cls(model, history, cached_input_prices=cached_input_prices, context_state=state)

    @property
    def llms(self) -> list[str]:
        return list(self.model.llms_)

    def route(
        self,
        user: str,
        messages: str | Sequence[Message],
        candidates: Sequence[str] | None = None,
        cost_weight: float = 0.0,
        conversation: str | None = None,
        switch_cost: float = 0.0,
        previous_llm: str | None = None,
    ) -> RouteDecision:
        """Rank `candidates` (default: every LLM the router knows) for this user's request.

        A later turn of a conversation is scored after the LLM that answered the turn before: `previous_llm`,
        else the `model` on the chat's last assistant message, else the LLM this router last chose for the
        `conversation` id. Every other LLM then costs `switch_cost` logits more, and staying saves the prompt
        cache where the LLM has a cached-input price.
        """
        if cost_weight < 0:
            raise GmtError(f"cost_weight must be 0 or more, got {cost_weight}")
        if switch_cost < 0:
            raise GmtError(f"switch_cost must be 0 or more, got {switch_cost}")
        query = query_of(messages)
        llms = list(dict.fromkeys(candidates)) if candidates else self.llms
        if not llms:
            raise GmtError("no candidate LLMs; name at least one")
        previous = previous_llm or previous_model(messages) or self.conversations.get((user, conversation or ""))
        notes = []
        if previous is not None and previous not in self.llms:
            notes.append(f"previous LLM '{previous}' is not one this router knows: scored as a first turn")
            previous = None
        encoder = getattr(self.model, "text_encoder", None)
        if encoder is not None and isinstance(encoder(), QueryCacheEncoder):
            encoder().encode_queries([query])  # into the LRU (a no-op when it is there already)
        scores = self.context.score_turn(user, query, llms, previous)
        costs = [self._expected_cost(m, previous, messages) for m in llms]
        adjusted = switch_adjusted(cost_adjusted(scores, costs, cost_weight), llms, previous, switch_cost)
        order = np.argsort(-adjusted, kind="stable")
        ranking = [RankedLLM(llms[i], float(scores[i]), costs[i], float(adjusted[i])) for i in order]
        known = self.context.knows_user(user)
        if not known:
            notes.append(f"user '{user}' has no history: routed by the population's preferences")
        if conversation:
            self._remember(user, conversation, ranking[0].llm)
        return RouteDecision(user, ranking[0].llm, ranking, known, cost_weight, notes, previous, switch_cost)

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

    def history(self, user: str) -> list[Interaction]:
        """The interactions of `user` the router scores from, oldest first."""
        return [r for r in self.context.history if r.user == user]

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
        """Add rated interactions (validated first: a bad one adds none), re-encoding only around their users."""
        interactions = [r if isinstance(r, Interaction) else Interaction.model_validate(r) for r in records]
        for interaction in interactions:
            self.model.check_llms(interaction.llms)
        self.context.observe(interactions)
        for response in (x for interaction in interactions for x in interaction.responses):
            if response.cost is not None and response.llm not in self.costs:
                self.costs[response.llm] = response.cost
