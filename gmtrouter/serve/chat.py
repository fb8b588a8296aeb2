"""The OpenAI-compatible chat completions endpoint: route (`model: "auto"`), then forward to the chosen LLM."""

import asyncio
import time
import uuid
from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, StreamingResponse

from gmtrouter.data.schema import MAX_TEXT
from gmtrouter.serve.deps import (
    ERRORS,
    Caller,
    Svc,
    chat_turn,
    check_candidates,
    encodable,
    query_and_turn,
    requested_user,
)
from gmtrouter.serve.engine import ChatTurn
from gmtrouter.serve.schemas import ChatCompletionRequest, ChatMessage, ErrorOut
from gmtrouter.serve.service import Service
from gmtrouter.serve.store import RouteRow
from gmtrouter.serve.upstream import UpstreamError

router = APIRouter()


def _allowed(extras: dict[str, Any], config: Any) -> dict[str, Any]:
    """The fields to forward: only those in `chat_params`, with `n` and `max_tokens` within the configured caps.

    A field outside the allow-list is refused rather than dropped, so a caller learns it had no effect; a request
    without max_tokens gets the cap, so no answer costs more than the operator allows.
    """
    refused = sorted(name for name in extras if name not in config.chat_params)
    if refused:
        raise HTTPException(
            422, f"{refused[0]}: this service does not forward it to LLMs (allowed: {', '.join(config.chat_params)})"
        )
    for name, cap, setting in (
        ("max_tokens", config.chat_max_tokens, "chat_max_tokens"),
        ("max_completion_tokens", config.chat_max_tokens, "chat_max_tokens"),
        ("n", config.chat_max_n, "chat_max_n"),
    ):
        value = extras.get(name)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise HTTPException(422, f"{name}: must be a whole number, at least 1")
        if value > cap:
            raise HTTPException(422, f"{name}: at most {cap} here ({setting}); got {value}")
    if extras.get("max_tokens") is None and extras.get("max_completion_tokens") is None:
        extras["max_tokens"] = config.chat_max_tokens
    return extras


def _forwarded(messages: list[ChatMessage]) -> list[dict[str, Any]]:
    """The messages as an upstream gets them: without the `model` an answer names (ours, for routing; not a field
    of an OpenAI message, and strict providers refuse it)."""
    return [m.model_dump(exclude_none=True, exclude={"model"}) for m in messages]


async def _direct(
    service: Service, user: str, llm: str, query: str, turn: int, chat: ChatTurn
) -> tuple[str, str | None]:
    """Store a route to the LLM the request named (no ranking), in its conversation; (route id, previous LLM)."""
    previous = await service.engine.previous_llm(user, chat.messages, chat.conversation)
    previous = previous if previous in service.engine.router.llms else None
    row = RouteRow(
        id=uuid.uuid4().hex,
        user=user,
        query=query,
        candidates=[llm],
        choice=llm,
        ranking=[],
        created=time.time(),
        turn=turn,
        conversation=chat.conversation,
        previous_llm=previous,
        switch_cost=chat.switch_cost,
    )
    service.engine.routes.add([row])
    return row.id, previous


def _headers(route_id: str, llm: str, previous: str | None, switch_cost: float) -> dict[str, str]:
    """The routing metadata as response headers (also in the body: `route_id`, `previous_llm`, `switch_cost`)."""
    headers = {
        "x-gmtrouter-route-id": route_id,
        "x-gmtrouter-model": llm,
        "x-gmtrouter-switch-cost": f"{switch_cost:g}",
    }
    if previous is not None:
        headers["x-gmtrouter-previous-llm"] = previous
    return headers


STREAMED = {  # `stream: true`: server-sent events, each one a chat.completion.chunk (JSON) in its `data`
    "text/event-stream": {
        "schema": {
            "type": "object",
            "properties": {"data": {"type": "string"}, "event": {"type": "string"}, "id": {"type": "string"}},
            "required": ["data"],
        }
    }
}


@router.post(
    "/v1/chat/completions",
    responses={200: {"content": STREAMED}, **ERRORS, 502: {"model": ErrorOut}, 503: {"model": ErrorOut}},
    tags=["openai"],
)
async def chat_completions(body: ChatCompletionRequest, who: Caller, service: Svc) -> Any:
    """OpenAI chat completions. `model: "auto"` routes for `user`; a served model's name goes straight to it."""
    encodable(body)
    user = requested_user(who, body.user)
    query, turn = query_and_turn(service, body.messages)
    extras = dict(body.model_extra or {})
    forward = {**_allowed(extras, service.config), "messages": _forwarded(body.messages)}
    if body.user is not None:
        forward["user"] = body.user
    served = service.upstreams.names
    chat = chat_turn(service, body.messages, body.conversation, body.switch_cost)
    if body.model == "auto":
        wanted = check_candidates(service, body.candidates) or service.engine.router.active_llms
        pool = [m for m in wanted if m in served]
        if not pool:
            raise HTTPException(
                503, "no upstream is configured for any candidate LLM; add [upstreams.NAME] to the config"
            )
        routed = await service.engine.route(user, query, pool, body.cost_weight, turn, chat, body.explore)
        service.metrics.routed(routed.decision.llm, routed.arm)
        llm, route_id, previous = routed.decision.llm, routed.route_id, routed.decision.previous_llm
        routing = {"explored": routed.decision.explored, "arm": routed.arm}
    elif body.model in served:
        llm = body.model
        route_id, previous = await _direct(service, user, llm, query, turn, chat)
        routing = {}
    elif not served:
        raise HTTPException(
            404, f"model '{body.model}' is not served here, nor is any other: add [upstreams.NAME] to the config"
        )
    else:
        raise HTTPException(404, f"model '{body.model}' is not served here; use 'auto' or one of: {', '.join(served)}")
    headers = _headers(route_id, llm, previous, chat.switch_cost)
    routing = {"route_id": route_id, "previous_llm": previous, "switch_cost": chat.switch_cost, **routing}

    def keep_answer(text: str) -> None:
        if text:
            asyncio.get_running_loop().run_in_executor(
                None, service.engine.routes.set_answer, route_id, text[:MAX_TEXT]
            )

    try:
        if body.stream:
            events = await service.upstreams.stream(llm, forward, routing, keep_answer)
        else:
            answer = await service.upstreams.complete(llm, forward, routing)
    except UpstreamError:
        # The user got no answer: the route is not a decision to show or to take feedback on.
        await run_in_threadpool(service.engine.routes.delete, route_id)
        raise
    service.metrics.choices.labels(llm).inc()
    if body.stream:
        return StreamingResponse(events, media_type="text/event-stream", headers=headers)
    choices = answer.get("choices") or [{}]
    message = choices[0].get("message") if isinstance(choices[0], dict) else None
    if isinstance(message, dict) and isinstance(message.get("content"), str):
        await run_in_threadpool(service.engine.routes.set_answer, route_id, message["content"][:MAX_TEXT])
    return JSONResponse(answer, headers=headers)
