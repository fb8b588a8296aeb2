"""Dependencies and checks the endpoints share: the service, the caller's key, and request limits.

Each raises an HTTP error whose detail is one line naming what to fix; none of them writes anything.
"""

from typing import Annotated, Any

from fastapi import Depends, HTTPException, Path, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel
from pydantic_core import PydanticSerializationError

from gmtrouter.api import query_of
from gmtrouter.data.schema import NO_NUL
from gmtrouter.serve.auth import Principal
from gmtrouter.serve.engine import ChatTurn
from gmtrouter.serve.schemas import MAX_USER, ChatMessage, ErrorOut
from gmtrouter.serve.service import Service

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut} for code in (400, 401, 403, 404, 409, 413, 422, 429, 503)
}
PathUser = Annotated[str, Path(min_length=1, max_length=MAX_USER, pattern=NO_NUL, description="A user id.")]


def get_service(request: Request) -> Service:
    return request.app.state.service


Svc = Annotated[Service, Depends(get_service)]


def _token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip() or None
    return request.headers.get("x-api-key") or None


async def principal(request: Request, service: Svc) -> Principal:
    """The caller, from 'Authorization: Bearer KEY' or 'X-API-Key: KEY'; 401 without a valid key."""
    token = _token(request)
    if token is None:
        raise HTTPException(401, "missing API key; send 'Authorization: Bearer KEY'", {"WWW-Authenticate": "Bearer"})
    keys = service.keys
    who = keys.cached(token) or await run_in_threadpool(keys.authenticate, token)
    if who is None:
        raise HTTPException(401, "unknown or revoked API key", {"WWW-Authenticate": "Bearer"})
    charge(service, who)
    return who


def charge(service: Service, who: Principal) -> None:
    """Spend one request of a user or tenant key's allowance (429 when it is spent); admin keys are not limited.

    Every endpoint that takes a key charges it, the console's pages and JSON included."""
    if not who.admin:
        limited(service.request_limit.take(who.key_id), service.config.rate_requests_per_minute, "requests")


def limited(wait: int, per_minute: int, what: str) -> None:
    """429 with Retry-After when a key's bucket is empty (`wait` seconds until the next token)."""
    if wait:
        raise HTTPException(
            429,
            f"this API key is over its {per_minute} {what} a minute; retry in {wait} s",
            {"Retry-After": str(wait)},
        )


def within_query_limit(service: Service, field: str, text: str) -> None:
    """413 for a query longer than the service routes (max_query_chars): what cannot be routed is not stored."""
    limit = service.config.max_query_chars
    if len(text) > limit:
        raise HTTPException(413, f"{field} holds {len(text)} characters; the limit is {limit} (max_query_chars)")


Caller = Annotated[Principal, Depends(principal)]


async def admin(who: Caller) -> Principal:
    if not who.admin:
        raise HTTPException(403, "this needs the admin key")
    return who


Admin = Annotated[Principal, Depends(admin)]


def allow(who: Principal, user: str) -> None:
    if not who.may_act_as(user):
        raise HTTPException(403, f"this API key may not act for user '{user}'")


def requested_user(who: Principal, user: str | None) -> str:
    """The user a request acts for: the one it names, else the one user its key is for (403 or 422 otherwise)."""
    user = user if user is not None else who.single_user
    if user is None:
        raise HTTPException(422, "user: is required (this key is not for exactly one user); name the user")
    allow(who, user)
    return user


def encodable(body: BaseModel) -> None:
    """JSON may escape lone surrogates and NULs that no database text can hold; refuse them before storing."""
    try:
        dumped = body.model_dump_json()
    except PydanticSerializationError:
        raise HTTPException(
            422, "the request holds a lone surrogate (\\ud800-\\udfff); send valid UTF-8 text"
        ) from None
    if "\\u0000" in dumped:
        raise HTTPException(422, "the request holds a NUL character (\\u0000), which text cannot store; remove it")


def query_and_turn(service: Service, messages: list[ChatMessage]) -> tuple[str, int]:
    """The text to route on (the last user message) and its turn number, within the configured limits."""
    config = service.config
    if len(messages) > config.max_messages:
        raise HTTPException(413, f"{len(messages)} messages; the limit is {config.max_messages} (max_messages)")
    plain = [m.model_dump(exclude_none=True) for m in messages]
    size = sum(len(str(m.get("content", ""))) for m in plain)
    if size > config.max_query_chars:
        raise HTTPException(
            413, f"messages hold {size} characters; the limit is {config.max_query_chars} (max_query_chars)"
        )
    return query_of(plain), max(1, sum(m.role == "user" for m in messages))


def chat_turn(
    service: Service, messages: list[ChatMessage], conversation: str | None, switch_cost: float | None
) -> ChatTurn:
    """The request's place in its conversation; a request that names no switch cost gets the service's."""
    cost = service.config.switch_cost if switch_cost is None else switch_cost
    return ChatTurn([m.model_dump(exclude_none=True) for m in messages], conversation, cost)


def check_candidates(service: Service, candidates: list[str] | None) -> list[str] | None:
    """Candidates without repeats, each known to the router (400 naming the unknown ones)."""
    if candidates is None:
        return None
    names = list(dict.fromkeys(candidates))
    if len(names) > service.config.max_candidates:
        raise HTTPException(
            413, f"{len(names)} candidates; the limit is {service.config.max_candidates} (max_candidates)"
        )
    service.engine.router.model.check_llms(names)
    return names
