"""The FastAPI application: middleware, error bodies, and the endpoint modules (routes, chat, admin).

`create_app(config)` opens the store, loads the model (replaying stored feedback) and returns the app; errors in
the set-up raise `GmtError` before any port is bound. Every refusal is a 4xx with a JSON body whose `detail` is
one line that says what to fix, and a refused request stores nothing. A database that cannot answer (down,
read-only, its file deleted) is a 503 with `Retry-After`: nothing was stored, and the same request may succeed
later. What is left, a bug, is a 500 that keeps the connection open.
"""

import logging
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import exc as db_errors
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from gmtrouter.data.schema import error_message
from gmtrouter.serve import admin, chat, llms, routes
from gmtrouter.serve.config import ServeConfig
from gmtrouter.serve.service import Service, build_service
from gmtrouter.serve.store import DatabaseUnavailable, FeedbackConflict
from gmtrouter.serve.ui import mount as mount_console
from gmtrouter.serve.upstream import UpstreamError
from gmtrouter.utils.errors import GmtError

log = logging.getLogger("gmtrouter.serve")
FEEDBACK_KINDS = ("rating", "thumbs", "pairwise", "record")
RETRY_AFTER_S = 5  # what a 503 tells a client to wait before it sends the same request again
# Database errors that say the database cannot serve now (down, locked, read-only, out of space), not that the
# request was wrong: each is a 503. Integrity, data and programming errors are bugs, and stay 500s.
UNAVAILABLE = (db_errors.OperationalError, db_errors.InterfaceError, db_errors.InternalError, db_errors.TimeoutError)


# ------------------------------------------------------------------------------------------------ middleware


def too_large(limit: int) -> JSONResponse:
    return JSONResponse({"detail": f"request body over {limit} bytes (max_body_bytes); send less"}, status_code=413)


class LimitAndMeasure:
    """Refuse bodies over the size limit with 413 and count and time every request.

    A declared Content-Length over the limit is refused before anything is read; a body without one (chunked) is
    counted as it is read, and the read that crosses the limit raises a 413 that the error handlers answer.
    (FastAPI's own `max_body_size` does the counting too, but answers a declared length in plain text, not with
    the one-line JSON `detail` every other refusal has.) A plain ASGI middleware: it sees the matched route
    template, so metrics are labelled by endpoint, not by URL.
    """

    def __init__(self, app: Any, service: Service) -> None:
        self.app, self.service = app, service

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.service.config.max_body_bytes
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            await too_large(limit)(scope, receive, send)
            return
        if "\x00" in scope.get("path", "") or b"%00" in scope.get("query_string", b"").lower():
            answer = JSONResponse({"detail": "the URL holds a NUL character (%00); remove it"}, status_code=400)
            await answer(scope, receive, send)
            return
        started, status_holder, seen = time.perf_counter(), [500], [0]

        async def counted_receive() -> dict[str, Any]:
            message = await receive()
            if message["type"] == "http.request":
                seen[0] += len(message.get("body", b""))
                if seen[0] > limit:
                    raise StarletteHTTPException(413, f"request body over {limit} bytes (max_body_bytes); send less")
            return message

        answering = [False]

        async def observed_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status_holder[0], answering[0] = message["status"], True
            await send(message)

        try:
            await self.app(scope, counted_receive, observed_send)
        except Exception as error:
            # Answered here rather than by Starlette's last-resort handler, which re-raises: the server would then
            # drop the keep-alive connection without saying so, and the client's next request on it would fail.
            log.error("unhandled error in %s %s", scope["method"], scope.get("path"), exc_info=error)
            if answering[0]:
                raise  # the answer has begun (a stream): all that is left is to close the connection
            answer = error_response(Request(scope), 500, "internal error; see the server log")
            await answer(scope, receive, observed_send)
        route = scope.get("route")
        endpoint = getattr(route, "path", "unmatched")
        metrics = self.service.metrics
        metrics.requests.labels(scope["method"], endpoint, str(status_holder[0])).inc()
        metrics.latency.labels(scope["method"], endpoint).observe(time.perf_counter() - started)


# ---------------------------------------------------------------------------------------------- error bodies


def _one_line(error: RequestValidationError) -> tuple[int, str]:
    """A validation failure as (status, one line naming the field and what is wrong)."""
    problems = error.errors()
    first = problems[0]
    if first["type"] == "json_invalid":
        return 400, f"request body is not valid JSON ({first.get('ctx', {}).get('error', 'parse error')})"
    location = [str(p) for p in first["loc"]]
    if location and location[0] in ("body", "path", "query", "header"):  # where it was sent; the name says enough
        location = location[1:]
    if len(location) > 1 and location[0] in FEEDBACK_KINDS:  # the tag of the feedback union, not a field
        location = location[1:]
    where = ".".join(location) or "body"
    message = error_message(first)
    if first["type"] == "extra_forbidden":
        message = "is not a field of this request; remove it"
    elif first["type"] in ("union_tag_invalid", "union_tag_not_found"):
        where, message = "kind", f"must be one of {', '.join(FEEDBACK_KINDS)}"
    more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
    return 422, f"{where}: {message}{more}"


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def error_response(
    request: Request, status_code: int, detail: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """`{"detail": ...}`; on the OpenAI-compatible path also OpenAI's `{"error": {"message": ...}}`, which its
    clients read."""
    detail = _CONTROL.sub(lambda match: repr(match.group())[1:-1], detail)  # one line, whatever a client sent
    body: dict[str, Any] = {"detail": detail}
    if request.url.path.startswith("/v1/chat/"):
        kind = "invalid_request_error" if status_code < 500 else "upstream_error"
        body["error"] = {"message": detail, "type": kind, "code": status_code}
    return JSONResponse(body, status_code=status_code, headers=headers)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, error: RequestValidationError) -> JSONResponse:
        code, detail = _one_line(error)
        return error_response(request, code, detail)

    @app.exception_handler(FeedbackConflict)
    async def _conflict(request: Request, error: FeedbackConflict) -> JSONResponse:
        return error_response(request, 409, str(error))

    @app.exception_handler(GmtError)
    async def _user_error(request: Request, error: GmtError) -> JSONResponse:
        return error_response(request, 400, str(error))

    @app.exception_handler(DatabaseUnavailable)
    async def _file_gone(request: Request, error: DatabaseUnavailable) -> JSONResponse:
        log.error("%s %s: %s", request.method, request.url.path, error)
        return unavailable(request)

    @app.exception_handler(db_errors.DBAPIError)
    async def _database(request: Request, error: db_errors.DBAPIError) -> JSONResponse:
        if not isinstance(error, UNAVAILABLE) and type(error) is not db_errors.DatabaseError:
            raise error  # a bug, not the database's state: the last-resort 500
        reason = str(error.orig).strip().splitlines()[0] if str(error.orig).strip() else ""
        log.error(
            "%s %s: the database failed (%s: %s)", request.method, request.url.path, type(error.orig).__name__, reason
        )
        return unavailable(request)

    @app.exception_handler(db_errors.TimeoutError)
    async def _pool_timeout(request: Request, error: db_errors.TimeoutError) -> JSONResponse:
        log.error("%s %s: no database connection came free (%s)", request.method, request.url.path, error)
        return unavailable(request)

    @app.exception_handler(UpstreamError)
    async def _upstream(request: Request, error: UpstreamError) -> JSONResponse:
        return error_response(request, error.status, error.detail)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, error: StarletteHTTPException) -> JSONResponse:
        headers = dict(error.headers or {})
        if error.status_code == 405:
            headers["Allow"] = ", ".join(allowed_methods(request))
        return error_response(request, error.status_code, str(error.detail), headers or None)


def allowed_methods(request: Request) -> list[str]:
    """Every method some endpoint takes at this path: Starlette's 405 names only those of the first endpoint that
    matched (`/v1/users/{user}` has a GET and a DELETE of its own)."""
    return [
        method
        for method in ("DELETE", "GET", "HEAD", "PATCH", "POST", "PUT")
        if any(route.matches({**request.scope, "method": method})[0] is Match.FULL for route in request.app.routes)
    ]


def with_links(app: FastAPI) -> None:
    """Add OpenAPI links to the schema at /openapi.json: a route's id goes into feedback on it, a user id into
    the user's profile. They document how the endpoints chain, and stateful tests follow them."""
    make = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = make()
        feedback_op, user_op = "#/paths/~1v1~1feedback/post", "#/paths/~1v1~1users~1{user}/get"
        to_user = {"operationRef": user_op, "parameters": {"path.user": "$response.body#/user"}}
        links = {
            ("/v1/route", "post"): {
                "ThumbsOnTheRoute": {
                    "operationRef": feedback_op,
                    "requestBody": {"kind": "thumbs", "route_id": "$response.body#/route_id", "thumbs": "up"},
                },
                "RatingOfTheRoute": {
                    "operationRef": feedback_op,
                    "requestBody": {"kind": "rating", "route_id": "$response.body#/route_id", "rating": 1.0},
                },
                "TheUserRouted": to_user,
            },
            ("/v1/feedback", "post"): {"TheUserWhoGaveIt": to_user},
        }
        for (path, method), named in links.items():
            answer = schema["paths"][path][method]["responses"]["200"]
            answer["links"] = {**answer.get("links", {}), **named}
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def unavailable(request: Request) -> JSONResponse:
    """503: the database cannot serve now. The client sees no database address or path; the log has the reason."""
    service = getattr(request.app.state, "service", None)
    if service is not None:
        service.engine.routes.mark_failing()  # routes are written before they are answered until it is back
    detail = f"the service's database is unavailable; nothing was stored, retry in {RETRY_AFTER_S} s"
    return error_response(request, 503, detail, {"Retry-After": str(RETRY_AFTER_S)})


# ------------------------------------------------------------------------------------------------- the app


def create_app(config: ServeConfig, service: Service | None = None) -> FastAPI:
    """The service's ASGI app; builds the `Service` (loads the model) unless one is given."""
    service = service or build_service(config)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        await service.upstreams.close()
        service.engine.close()
        service.store.close()

    app = FastAPI(
        title="gmtrouter",
        version="1",
        summary="Personalized LLM routing with online feedback (GMTRouter).",
        lifespan=lifespan,
    )
    app.state.service = service
    app.add_middleware(LimitAndMeasure, service=service)
    _install_error_handlers(app)
    for module in (routes, chat, admin, llms):
        app.include_router(module.router)
    mount_console(app)  # the web console at /ui
    with_links(app)
    return app
