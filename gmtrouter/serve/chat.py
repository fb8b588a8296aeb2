"""The OpenAI-compatible chat completions endpoint: route (`model: "auto"`), then forward to the chosen LLM."""

import asyncio
import time
import uuid
from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, StreamingResponse

from gmtrouter.serve.deps import ERRORS, Caller, Svc, allow, check_candidates, encodable, query_and_turn
from gmtrouter.serve.schemas import ChatCompletionRequest, ErrorOut
from gmtrouter.serve.store import RouteRow

router = APIRouter()


def _extensions(extras: dict[str, Any]) -> tuple[list[str] | None, float]:
    """The gmtrouter fields an OpenAI client may send in its extra body; they are not forwarded."""
    candidates, cost_weight = extras.pop("candidates", None), extras.pop("cost_weight", 0.0)
    if candidates is not None and not (isinstance(candidates, list) and all(isinstance(c, str) for c in candidates)):
        raise HTTPException(422, "candidates: must be a list of LLM names")
    if not isinstance(cost_weight, int | float) or isinstance(cost_weight, bool) or cost_weight < 0:
        raise HTTPException(422, "cost_weight: must be a number, 0 or more")
    return candidates, float(cost_weight)


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


@router.post(
    "/v1/chat/completions", responses={**ERRORS, 502: {"model": ErrorOut}, 503: {"model": ErrorOut}}, tags=["openai"]
)
async def chat_completions(body: ChatCompletionRequest, who: Caller, service: Svc) -> Any:
    """OpenAI chat completions. `model: "auto"` routes for `user`; a served model's name goes straight to it."""
    encodable(body)
    user = body.user or who.single_user
    if user is None:
        raise HTTPException(400, "name the user in the request's 'user' field")
    allow(who, user)
    query, turn = query_and_turn(service, body.messages)
    extras = dict(body.model_extra or {})
    candidates, cost_weight = _extensions(extras)
    forward = {**_allowed(extras, service.config), "messages": [m.model_dump(exclude_none=True) for m in body.messages]}
    if body.user is not None:
        forward["user"] = body.user
    store, served = service.store, service.upstreams.names
    if body.model == "auto":
        pool = [m for m in (check_candidates(service, candidates) or service.engine.router.llms) if m in served]
        if not pool:
            raise HTTPException(
                503, "no upstream is configured for any candidate LLM; add [upstreams.NAME] to the config"
            )
        routed = await service.engine.route(user, query, pool, cost_weight, turn)
        service.metrics.choices.labels(routed.decision.llm).inc()
        llm, route_id = routed.decision.llm, routed.route_id
    elif body.model in served:
        llm, route_id = body.model, uuid.uuid4().hex
        await run_in_threadpool(store.add_routes, [RouteRow(route_id, user, query, [llm], llm, [], time.time(), turn)])
    else:
        raise HTTPException(404, f"model '{body.model}' is not served here; use 'auto' or one of: {', '.join(served)}")
    headers = {"x-gmtrouter-route-id": route_id, "x-gmtrouter-model": llm}

    def keep_answer(text: str) -> None:
        if text:
            asyncio.get_running_loop().run_in_executor(None, store.set_answer, route_id, text)

    if body.stream:
        events = await service.upstreams.stream(llm, forward, route_id, keep_answer)
        return StreamingResponse(events, media_type="text/event-stream", headers=headers)
    answer = await service.upstreams.complete(llm, forward, route_id)
    choices = answer.get("choices") or [{}]
    message = choices[0].get("message") if isinstance(choices[0], dict) else None
    if isinstance(message, dict) and isinstance(message.get("content"), str):
        await run_in_threadpool(store.set_answer, route_id, message["content"])
    return JSONResponse(answer, headers=headers)
