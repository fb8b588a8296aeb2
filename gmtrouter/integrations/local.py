"""gmtrouter in this process for a gateway: a `gmtrouter.api.Router` behind the `client.Client` interface."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gmtrouter.api import Router, query_of
from gmtrouter.data.schema import Interaction, Response
from gmtrouter.integrations.client import Feedback, Route, chat_messages
from gmtrouter.utils.errors import GmtError


@dataclass(frozen=True)
class _Routed:
    user: str
    query: str
    turn: int
    candidates: tuple[str, ...]
    previous_llm: str | None
    created: float


class LocalClient:
    """gmtrouter in this process: a `gmtrouter.api.Router`, with routes kept in memory for their feedback.

    The newest `keep` routes are kept (feedback on an older one is refused with a message). Routing and feedback
    hold one lock, since `Router.observe` changes what `Router.route` reads; the async methods run them on a
    worker thread so that a gateway's event loop keeps serving while a query is embedded.
    """

    def __init__(self, router: Router, cost_weight: float = 0.0, keep: int = 100_000) -> None:
        self.router = router
        self.cost_weight = cost_weight
        self.keep = keep
        self._routes: OrderedDict[str, _Routed] = OrderedDict()
        self._lock = threading.Lock()

    def llms(self) -> list[str]:
        return self.router.llms

    async def allms(self) -> list[str]:
        return self.llms()

    def route(self, user: str, messages: Sequence[Mapping[str, Any]], candidates: Sequence[str]) -> Route:
        chat = chat_messages(messages)
        with self._lock:
            decision = self.router.route(user, chat, candidates=list(candidates), cost_weight=self.cost_weight)
            route_id = uuid.uuid4().hex
            turn = sum(m["role"] == "user" for m in chat)
            routed = _Routed(user, query_of(chat), max(turn, 1), tuple(candidates), decision.previous_llm, time.time())
            self._routes[route_id] = routed
            while len(self._routes) > self.keep:
                self._routes.popitem(last=False)
        return Route(route_id, decision.llm, [r.llm for r in decision.ranking])

    async def aroute(self, user: str, messages: Sequence[Mapping[str, Any]], candidates: Sequence[str]) -> Route:
        return await asyncio.to_thread(self.route, user, messages, candidates)

    def feedback(self, feedback: Feedback) -> None:
        """The routed turn as a record with the rated answer, into the user's history (as the service does)."""
        with self._lock:
            routed = self._routes.get(feedback.route_id)
            if routed is None:
                raise GmtError(f"route '{feedback.route_id}' is not one of the last {self.keep} routes of this router")
            if feedback.llm not in routed.candidates:
                raise GmtError(f"LLM '{feedback.llm}' was not a candidate of route '{feedback.route_id}'")
            low, high = getattr(self.router.model, "rating_range_", (0.0, 1.0))
            low, high = (low, high) if high > low else (0.0, 1.0)  # as the service reads the scale
            if feedback.thumbs is not None:
                rating = high if feedback.thumbs == "up" else low
            elif feedback.rating is not None and low <= feedback.rating <= high:
                rating = feedback.rating
            else:
                raise GmtError(f"rating {feedback.rating} is outside this router's scale [{low:g}, {high:g}]")
            record = Interaction(
                user=routed.user,
                conversation=f"route/{feedback.route_id}",
                turn=routed.turn,
                query=routed.query,
                responses=[Response(llm=feedback.llm, rating=rating)],
                timestamp=routed.created,
                previous_llm=routed.previous_llm,
                meta={"source": "litellm", "route_id": feedback.route_id},
            )
            self.router.observe(record)

    async def afeedback(self, feedback: Feedback) -> None:
        await asyncio.to_thread(self.feedback, feedback)
