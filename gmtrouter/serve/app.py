"""The FastAPI application: middleware, error bodies, and the endpoint modules (routes, chat, admin).

`create_app(config)` opens the store, loads the model (replaying stored feedback) and returns the app; errors in
the set-up raise `GmtError` before any port is bound. Every refusal is a 4xx with a JSON body whose `detail` is
one line that says what to fix, and a refused request stores nothing.
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
from starlette.exceptions import HTTPException as StarletteHTTPException

from gmtrouter.serve import admin, chat, routes
from gmtrouter.serve.config import ServeConfig
from gmtrouter.serve.service import Service, build_service
from gmtrouter.serve.store import FeedbackConflict
from gmtrouter.serve.ui import mount as mount_console
from gmtrouter.serve.upstream import UpstreamError
from gmtrouter.utils.errors import GmtError

log = logging.getLogger("gmtrouter.serve")
FEEDBACK_KINDS = ("rating", "thumbs", "pairwise", "record")


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
        started, status_holder, seen = time.perf_counter(), [500], [0]

        async def counted_receive() -> dict[str, Any]:
            message = await receive()
            if message["type"] == "http.request":
                seen[0] += len(message.get("body", b""))
                if seen[0] > limit:
                    raise StarletteHTTPException(413, f"request body over {limit} bytes (max_body_bytes); send less")
            return message

        async def observed_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status_holder[0] = message["status"]
            await send(message)

        await self.app(scope, counted_receive, observed_send)
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
    message = first["msg"]
    if first["type"] == "missing":
        message = "is required but missing"
    elif first["type"] == "extra_forbidden":
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

    @app.exception_handler(UpstreamError)
    async def _upstream(request: Request, error: UpstreamError) -> JSONResponse:
        return error_response(request, error.status, error.detail)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, error: StarletteHTTPException) -> JSONResponse:
        return error_response(request, error.status_code, str(error.detail), error.headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> JSONResponse:
        log.error("unhandled error", exc_info=error)
        return error_response(request, 500, "internal error; see the server log")


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
    for module in (routes, chat, admin):
        app.include_router(module.router)
    mount_console(app)  # the web console at /ui
    return app
