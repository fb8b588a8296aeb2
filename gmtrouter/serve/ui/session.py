"""Signing in to the console: the API key in an HttpOnly cookie, checked by the API's own `KeyRing` on every page.

The browser keeps the key it was given (there is no second credential to leak or revoke): the cookie is
HttpOnly (page scripts cannot read it), SameSite=Strict (no other site can make the browser send it, which is
what protects the Forget form and the Try-it call) and limited to /ui. A revoked key stops working on the
console as it does on the API, within `key_cache_seconds`. JSON endpoints of the console also take the key the
API's way, in an `Authorization: Bearer` or `X-API-Key` header. Every page load and console call spends one request
of the key's rate limit, as an API call does.
"""

from __future__ import annotations

from fastapi import Request
from fastapi.concurrency import run_in_threadpool

from gmtrouter.serve.auth import Principal
from gmtrouter.serve.deps import charge
from gmtrouter.serve.service import Service

COOKIE = "gmtrouter_console"
PATH = "/ui"


def token_of(request: Request) -> str | None:
    """The key from the API's headers, else from the console's cookie."""
    header = request.headers.get("authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip() or None
    return request.headers.get("x-api-key") or request.cookies.get(COOKIE) or None


async def check(service: Service, token: str | None) -> Principal | None:
    """The principal a key stands for, or None (unknown, malformed or revoked), as the API decides it."""
    if not token:
        return None
    keys = service.keys
    return keys.cached(token) or await run_in_threadpool(keys.authenticate, token)


async def signed_in(request: Request) -> Principal | None:
    """The caller of a console page or call, its request counted against the key's rate limit (429 over it)."""
    service = request.app.state.service
    who = await check(service, token_of(request))
    if who is not None:
        charge(service, who)
    return who
