"""Ask gmtrouter for a route and tell it what happened, in this process or over HTTP, with one interface.

A gateway that routes through gmtrouter needs three things from it: the LLMs it knows, a route (a choice among
candidates, with an id that later feedback refers to) and a way to send feedback on that route. `ServiceClient`
serves them from a running `gmtrouter serve` (`GET /healthz`, `POST /v1/route`, `POST /v1/feedback`,
docs/service.md), with nothing heavier than httpx; `local.LocalClient` from a `gmtrouter.api.Router` in this
process. Every failure is a `GmtError`; `Unavailable` marks the ones worth retrying (the router could not be
reached, or answered 5xx).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import httpx

from gmtrouter.utils.errors import GmtError

Thumbs = Literal["up", "down"]
ROLES = ("system", "developer", "user", "assistant", "tool", "function")


class Unavailable(GmtError):
    """gmtrouter could not be asked (unreachable, timed out, or a server error): try again later."""


@dataclass(frozen=True)
class Route:
    """A routing decision: its id (for feedback), the chosen LLM and every candidate by adjusted score."""

    route_id: str
    llm: str
    ranking: list[str]


@dataclass(frozen=True)
class Feedback:
    """Feedback on one route: thumbs or a rating of the answer `llm` gave."""

    route_id: str
    llm: str
    thumbs: Thumbs | None = None
    rating: float | None = None

    def body(self) -> dict[str, Any]:
        """The `/v1/feedback` body."""
        if self.thumbs is not None:
            return {"kind": "thumbs", "route_id": self.route_id, "llm": self.llm, "thumbs": self.thumbs}
        return {"kind": "rating", "route_id": self.route_id, "llm": self.llm, "rating": self.rating}


def chat_messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The role, text content and answering model of each message: what routing reads, as plain JSON.

    Gateways hand over messages with fields of their own (tool calls, images, provider objects); only text
    parts of a content list are kept, so that any chat a gateway accepts can be routed.
    """
    plain = []
    for message in messages:
        role = message.get("role")
        if role not in ROLES:
            continue
        content = message.get("content")
        if isinstance(content, list):
            texts = [p.get("text") for p in content if isinstance(p, Mapping) and p.get("type") == "text"]
            content = [{"type": "text", "text": t} for t in texts if isinstance(t, str)]
        elif not isinstance(content, str):
            content = None
        item: dict[str, Any] = {"role": role, "content": content}
        if role == "assistant" and isinstance(message.get("model"), str) and message["model"]:
            item["model"] = message["model"]
        plain.append(item)
    return plain


class Client(Protocol):
    """What a gateway needs from gmtrouter; every method raises `GmtError` (`Unavailable`: retry later)."""

    def llms(self) -> list[str]: ...
    async def allms(self) -> list[str]: ...
    def route(self, user: str, messages: Sequence[Mapping[str, Any]], candidates: Sequence[str]) -> Route: ...
    async def aroute(self, user: str, messages: Sequence[Mapping[str, Any]], candidates: Sequence[str]) -> Route: ...
    def feedback(self, feedback: Feedback) -> None: ...
    async def afeedback(self, feedback: Feedback) -> None: ...


class ServiceClient:
    """A running `gmtrouter serve`, asked over HTTP with one key that may act for the gateway's users (an admin
    key, or a tenant key such as `acme/*`). The LLMs the service knows are read from `/healthz` and kept for
    `llms_seconds`, so that LLMs added to the service at run time are picked up."""

    def __init__(
        self, url: str, api_key: str, timeout: float = 2.0, cost_weight: float = 0.0, llms_seconds: float = 30.0
    ) -> None:
        self.url = url.rstrip("/").removesuffix("/v1")
        self.timeout = timeout
        self.cost_weight = cost_weight
        self.llms_seconds = llms_seconds
        self._headers = {"Authorization": f"Bearer {api_key}"}
        self._llms: tuple[float, list[str]] | None = None
        # made once: building a client's TLS context reads the CA bundle (about 60 ms on a busy machine)
        self._tls = httpx.create_ssl_context()
        self._http = httpx.Client(timeout=timeout, headers=self._headers, verify=self._tls)  # thread-safe, pooled

    def _cached_llms(self) -> list[str] | None:
        if self._llms is not None and time.monotonic() - self._llms[0] < self.llms_seconds:
            return self._llms[1]
        return None

    def _remember_llms(self, answer: httpx.Response) -> list[str]:
        llms = list(self._checked(answer, "/healthz")["llms"])
        self._llms = (time.monotonic(), llms)
        return llms

    def llms(self) -> list[str]:
        cached = self._cached_llms()
        return cached if cached is not None else self._remember_llms(self._call("GET", "/healthz"))

    async def allms(self) -> list[str]:
        cached = self._cached_llms()
        return cached if cached is not None else self._remember_llms(await self._acall("GET", "/healthz"))

    def _route_body(self, user: str, messages: Sequence[Mapping[str, Any]], candidates: Sequence[str]) -> dict:
        body = {"user": user, "messages": chat_messages(messages), "candidates": list(candidates)}
        return {**body, "cost_weight": self.cost_weight}

    @staticmethod
    def _route(answer: dict[str, Any]) -> Route:
        return Route(answer["route_id"], answer["llm"], [r["llm"] for r in answer["ranking"]])

    def route(self, user: str, messages: Sequence[Mapping[str, Any]], candidates: Sequence[str]) -> Route:
        answer = self._call("POST", "/v1/route", self._route_body(user, messages, candidates))
        return self._route(self._checked(answer, "/v1/route"))

    async def aroute(self, user: str, messages: Sequence[Mapping[str, Any]], candidates: Sequence[str]) -> Route:
        answer = await self._acall("POST", "/v1/route", self._route_body(user, messages, candidates))
        return self._route(self._checked(answer, "/v1/route"))

    def feedback(self, feedback: Feedback) -> None:
        self._checked(self._call("POST", "/v1/feedback", feedback.body()), "/v1/feedback")

    async def afeedback(self, feedback: Feedback) -> None:
        self._checked(await self._acall("POST", "/v1/feedback", feedback.body()), "/v1/feedback")

    def _call(self, method: str, path: str, body: dict | None = None) -> httpx.Response:
        try:
            return self._http.request(method, self.url + path, json=body)
        except httpx.HTTPError as error:
            raise Unavailable(
                f"gmtrouter at {self.url} did not answer {path}: {error or type(error).__name__}"
            ) from None

    async def _acall(self, method: str, path: str, body: dict | None = None) -> httpx.Response:
        # A client per call: a gateway may run several event loops, and a client belongs to the loop it was made in.
        try:
            async with httpx.AsyncClient(timeout=self.timeout, headers=self._headers, verify=self._tls) as http:
                return await http.request(method, self.url + path, json=body)
        except httpx.HTTPError as error:
            raise Unavailable(
                f"gmtrouter at {self.url} did not answer {path}: {error or type(error).__name__}"
            ) from None

    def _checked(self, answer: httpx.Response, path: str) -> dict[str, Any]:
        if answer.status_code >= 500:
            raise Unavailable(f"gmtrouter at {self.url} answered {path} with {answer.status_code}")
        try:
            payload = answer.json()
        except ValueError:
            raise Unavailable(f"gmtrouter at {self.url} answered {path} with no JSON ({answer.status_code})") from None
        if answer.status_code >= 400:
            detail = payload.get("detail") if isinstance(payload, dict) else None
            raise GmtError(f"gmtrouter refused {path} ({answer.status_code}): {detail or answer.text[:200]}")
        return payload
