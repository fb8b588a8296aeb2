"""Forwarding chat completions to the chosen LLM's OpenAI-compatible endpoint, streamed or not.

The answer comes back as the upstream sent it, except that `model` names the LLM the router chose (the name the
router knows it by) and the routing fields are added: `route_id` (which route feedback should refer to),
`previous_llm` and `switch_cost` (the conversation the route was made in).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import httpx

from gmtrouter.serve.config import Upstream


class UpstreamError(Exception):
    """The upstream could not be reached or refused the request; `status` is what our client should get."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


def _message_of(response: httpx.Response) -> str:
    try:
        error = response.json().get("error", {})
        message = error.get("message") if isinstance(error, dict) else str(error)
    except (ValueError, AttributeError):
        message = None
    return " ".join(str(message or response.text or response.reason_phrase).split())[:300]


class Upstreams:
    """The configured upstreams and one shared HTTP client (connection pooling across requests)."""

    def __init__(self, upstreams: dict[str, Upstream]) -> None:
        self.config = upstreams
        self._client: httpx.AsyncClient | None = None

    @property
    def names(self) -> list[str]:
        return sorted(self.config)

    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(limits=httpx.Limits(max_connections=200, max_keepalive_connections=50))
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    def _request(self, llm: str, body: dict[str, Any]) -> httpx.Request:
        upstream = self.config[llm]
        headers = {"Content-Type": "application/json"}
        key = upstream.key()
        if key:
            headers["Authorization"] = f"Bearer {key}"
        payload = {**body, "model": upstream.model or llm}
        url = upstream.base_url.rstrip("/") + "/chat/completions"
        timeout = httpx.Timeout(upstream.timeout, connect=min(10.0, upstream.timeout))
        return self.client().build_request("POST", url, json=payload, headers=headers, timeout=timeout)

    async def _send(self, llm: str, body: dict[str, Any], stream: bool) -> httpx.Response:
        request = self._request(llm, body)
        try:
            response = await self.client().send(request, stream=stream)
        except httpx.HTTPError as error:
            raise UpstreamError(
                502, f"upstream of '{llm}' at {request.url} failed ({error.__class__.__name__}); check its base_url"
            ) from None
        if response.status_code != 200:
            if stream:
                await response.aread()
                await response.aclose()
            code = response.status_code
            if code in (401, 403):  # the upstream refused *our* credentials: not the caller's fault, nor their key's
                raise UpstreamError(
                    502,
                    f"upstream of '{llm}' at {request.url} refused this service's credentials ({code}: "
                    f"{_message_of(response)}); the operator must fix its api_key or api_key_env",
                )
            status = code if 400 <= code < 500 else 502
            raise UpstreamError(status, f"upstream of '{llm}' answered {code}: {_message_of(response)}")
        return response

    async def complete(self, llm: str, body: dict[str, Any], routing: Mapping[str, Any]) -> dict[str, Any]:
        """A whole (non-streamed) completion, relabelled with the chosen LLM and the `routing` fields."""
        response = await self._send(llm, {**body, "stream": False}, stream=False)
        try:
            answer = response.json()
        except ValueError:
            raise UpstreamError(502, f"upstream of '{llm}' answered with something other than JSON") from None
        if not isinstance(answer, dict):
            raise UpstreamError(502, f"upstream of '{llm}' answered with JSON that is not an object")
        return {**answer, "model": llm, **routing}

    async def stream(
        self, llm: str, body: dict[str, Any], routing: Mapping[str, Any], on_done: Callable[[str], None]
    ) -> AsyncIterator[bytes]:
        """Open the upstream stream (errors raise here, before any byte is sent) and relay its events, each
        relabelled like `complete`'s answer.

        `on_done` receives the concatenated answer text once the stream ends.
        """
        response = await self._send(llm, {**body, "stream": True}, stream=True)

        async def relay() -> AsyncIterator[bytes]:
            parts: list[str] = []
            try:
                async for line in response.aiter_lines():
                    if line.startswith("data:") and line[5:].strip() != "[DONE]":
                        try:
                            event = json.loads(line[5:])
                        except ValueError:
                            yield (line + "\n").encode()
                            continue
                        if isinstance(event, dict):
                            event = {**event, "model": llm, **routing}
                            for choice in event.get("choices") or []:
                                delta = choice.get("delta") if isinstance(choice, dict) else None
                                if isinstance(delta, dict) and isinstance(delta.get("content"), str):
                                    parts.append(delta["content"])
                        yield f"data: {json.dumps(event, separators=(',', ':'))}\n".encode()
                    else:
                        yield (line + "\n").encode()
            finally:
                await response.aclose()
            on_done("".join(parts))

        return relay()
