"""The interface every router implements (GMTRouter and each baseline); `gmtrouter.registry.routers` names them.

A router is fitted on records; `context(history)` binds it to the interactions users have shown so far and
answers scoring questions from them. Keeping the two apart is what lets evaluation hide exactly the records
being scored, and lets a service add feedback (`observe`) without retraining.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch

from gmtrouter.data.schema import Interaction
from gmtrouter.utils.errors import GmtError
from gmtrouter.utils.heap import collector_paused


class RoutingContext(ABC):
    """A fitted router plus the users' shown history: scores candidates, absorbs new feedback.

    Subclasses derive their state from `self.history` in `refresh`; `observe` and `forget` change the
    history and refresh (a subclass may override them with something incremental).
    """

    def __init__(self, history: Sequence[Interaction]) -> None:
        self.history: list[Interaction] = list(history)
        self._users = Counter(r.user for r in self.history)
        with collector_paused():  # a large history's context is millions of long-lived objects
            self.refresh()
            self._user_index()  # built with the context, so that no request pays for it

    @abstractmethod
    def refresh(self) -> None:
        """Recompute whatever the context derives from `self.history`."""

    @abstractmethod
    def score_records(self, records: Sequence[Interaction]) -> list[np.ndarray]:
        """Scores aligned with each record's responses (higher = more preferred). Records are not history."""

    @abstractmethod
    def score(self, user: str, query: str, llms: Sequence[str]) -> np.ndarray:
        """Scores of `llms` for one request of `user`."""

    def score_turn(self, user: str, query: str, llms: Sequence[str], previous: str | None) -> np.ndarray:
        """Scores of `llms` for a turn that follows LLM `previous`'s answer in its conversation (None: a first
        turn). Routers that do not read the conversation score the query alone."""
        return self.score(user, query, llms)

    def parts(self, user: str, query: str, llms: Sequence[str], previous: str | None = None) -> dict[str, np.ndarray]:
        """Each LLM's score split into named parts that sum to it; routers that keep no parts have one."""
        return {"score": self.score_turn(user, query, llms, previous)}

    def uncertainty(self, user: str, query: str, llms: Sequence[str], personal: float = 1.0) -> np.ndarray:
        """How unsure the router is of each LLM's score for this request (a posterior standard deviation, in
        logits), which exploration reads; `personal` scales the part of it that only this user's or this
        query's later routes would learn from. Routers that keep no posterior are sure of everything: zeros."""
        return np.zeros(len(llms))

    @property
    def needs_query_vector(self) -> bool:
        """Whether scoring a request reads its query's vector, so that a new query must be encoded before it
        routes (a router without a text encoder encodes nothing, whatever this says)."""
        return True

    def observe(self, records: Sequence[Interaction]) -> None:
        """Add shown interactions to the history (no retraining)."""
        self.history.extend(records)
        self._users.update(r.user for r in records)
        self.refresh()

    def forget(self, user: str) -> None:
        """Drop every interaction of `user` from the history and from any state derived from it."""
        self.history = [r for r in self.history if r.user != user]
        self._users.pop(user, None)
        self.refresh()

    def knows_user(self, user: str) -> bool:
        """Whether the history holds any interaction of `user`."""
        return self._users[user] > 0

    def records_of(self, user: str) -> list[Interaction]:
        """The history's interactions of `user`, oldest first, read through a per-user index: the cost of one
        user's records, not of the whole history (the index is built with the context, and again on the first
        call after the history is replaced).

        The index follows the history as it is kept: appended to (`observe`) it takes in the new tail; replaced
        by another list (`forget`, a refresh) it is built again."""
        return list(self._user_index().get(user, ()))

    def _user_index(self) -> dict[str, list[Interaction]]:
        """user -> their records in the history, brought up to date with it."""
        index = getattr(self, "_by_user", None)
        if index is None or index[0] is not self.history or index[1] > len(self.history):
            index = self._by_user = [self.history, 0, defaultdict(list)]
        history, done, by_user = index
        for record in history[done:]:
            by_user[record.user].append(record)
        index[1] = len(history)
        return by_user

    def explain(
        self, user: str, query: str, llm: str, top: int = 3, against: str | None = None
    ) -> list[tuple[Interaction, float]]:
        """The user's past interactions that did most for `llm` for `query` (against `against`, when given),
        with their weights.

        Routers that cannot attribute a score to past interactions return an empty list. An explanation is read
        from the user's history, not from the query's text, so callers may keep it per (user, LLM) until the
        history changes (the service does).
        """
        return []


class PreferenceRouter(ABC):
    """Learns which LLM a user prefers for a query. Constructors only store settings; `fit` learns."""

    name: ClassVar[str]
    saves_context: ClassVar[bool] = False  # whether a checkpoint keeps `context(history).state()`
    llms_: list[str]

    @abstractmethod
    def fit(self, train: Sequence[Interaction], valid: Sequence[Interaction] | None = None) -> PreferenceRouter:
        """Learn from `train`; `valid` (records of known users) may guide early stopping."""

    @abstractmethod
    def context(self, history: Sequence[Interaction]) -> RoutingContext:
        """Bind the fitted router to the interactions users have shown."""

    @abstractmethod
    def get_state(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """(JSON-able settings and learned values, tensors) that `from_state` rebuilds the router from."""

    @classmethod
    @abstractmethod
    def from_state(cls, config: dict[str, Any], tensors: dict[str, torch.Tensor]) -> PreferenceRouter:
        """The fitted router saved by `get_state`."""

    def check_llms(self, llms: Sequence[str]) -> None:
        """Refuse LLMs the router cannot score, naming them and the ones it can."""
        unknown = [m for m in llms if m not in self.llms_]
        if unknown:
            raise GmtError(f"unknown LLM(s) {', '.join(unknown)}; this router knows: {', '.join(self.llms_)}")
