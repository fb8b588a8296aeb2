"""The FastAPI application: routing, feedback, users, admin, health, metrics and the OpenAI-compatible endpoint.

`create_app(config)` opens the store, loads the model (replaying stored feedback) and returns the app; errors in
the set-up raise `GmtError` before any port is bound. Every refusal is a 4xx with a JSON body whose `detail` is
one line that says what to fix, and a refused request stores nothing.
"""

import asyncio
import json
import logging
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from pydantic_core import PydanticSerializationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from gmtrouter.api import query_of
from gmtrouter.checkpoint import read_config
from gmtrouter.errors import GmtError
from gmtrouter.serve.auth import KeyRing, Principal
from gmtrouter.serve.config import ServeConfig
from gmtrouter.serve.engine import Engine, Routed, settle_heap
from gmtrouter.serve.feedback import rating_scale, route_record
from gmtrouter.serve.metrics import Metrics
from gmtrouter.serve.schemas import (
    ChatCompletionRequest,
    ChatMessage,
    ErrorOut,
    Feedback,
    FeedbackResponse,
    ForgetOut,
    HealthOut,
    JobOut,
    KeyCreate,
    KeyCreated,
    KeyOut,
    RecordFeedback,
    ReloadOut,
    ReloadRequest,
    RetrainRequest,
    RouteRequest,
    RouteResponse,
    UserOut,
)
from gmtrouter.serve.store import FeedbackConflict, RouteRow, Store
from gmtrouter.serve.upstream import UpstreamError, Upstreams

log = logging.getLogger("gmtrouter.serve")
FEEDBACK_KINDS = ("rating", "thumbs", "pairwise", "record")
ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorOut} for code in (400, 401, 403, 404, 409, 413, 422)}


@dataclass
class Service:
    """Everything a request handler needs, built once per app."""

    config: ServeConfig
    store: Store
    engine: Engine
    keys: KeyRing
    upstreams: Upstreams
    metrics: Metrics
    jobs: dict[str, JobOut] = field(default_factory=dict)


def build_service(config: ServeConfig) -> Service:
    """Open the store (migrating it), load the model with the stored feedback, set up keys and upstreams."""
    if config.model is None:
        raise GmtError("give the model folder: --model DIR (or 'model' in the config file)")
    read_config(config.model)
    store = Store(config.db, config.sqlite_synchronous)
    metrics = Metrics()
    engine = Engine(
        store,
        config.model,
        batch_max=config.batch_max,
        query_cache=config.query_cache,
        sync_seconds=config.sync_seconds,
        torch_threads=config.torch_threads,
        on_batch=metrics.batch,
        on_fold=metrics.fold,
    )
    keys = KeyRing(store, config.resolved_admin_key(), config.key_cache_seconds)
    settle_heap()
    return Service(config, store, engine, keys, Upstreams(config.upstreams), metrics)


# ------------------------------------------------------------------------------------------------ middleware


class LimitAndMeasure:
    """Refuse bodies over the size limit (413, before they are read) and count and time every request.

    A plain ASGI middleware: it sees the matched route template, so metrics are labelled by endpoint, not by URL.
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
            await JSONResponse(
                {"detail": f"request body over {limit} bytes (max_body_bytes); send less"}, status_code=413
            )(scope, receive, send)
            return
        started, status_holder, seen = time.perf_counter(), [500], [0]

        async def counted_receive() -> dict[str, Any]:
            message = await receive()
            if message["type"] == "http.request":
                seen[0] += len(message.get("body", b""))
                if seen[0] > limit:
                    raise _TooLarge()
            return message

        async def observed_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status_holder[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, counted_receive, observed_send)
        except _TooLarge:
            status_holder[0] = 413
            await JSONResponse(
                {"detail": f"request body over {limit} bytes (max_body_bytes); send less"}, status_code=413
            )(scope, receive, send)
        route = scope.get("route")
        endpoint = getattr(route, "path", "unmatched")
        metrics = self.service.metrics
        metrics.requests.labels(scope["method"], endpoint, str(status_holder[0])).inc()
        metrics.latency.labels(scope["method"], endpoint).observe(time.perf_counter() - started)


class _TooLarge(Exception):
    pass


# ---------------------------------------------------------------------------------------------- error bodies


def _one_line(error: RequestValidationError) -> tuple[int, str]:
    """A validation failure as (status, one line naming the field and what is wrong)."""
    problems = error.errors()
    first = problems[0]
    if first["type"] == "json_invalid":
        return 400, f"request body is not valid JSON ({first.get('ctx', {}).get('error', 'parse error')})"
    location = [str(p) for p in first["loc"] if p != "body"]
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


def error_response(
    request: Request, status_code: int, detail: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """`{"detail": ...}`; on the OpenAI-compatible path also OpenAI's `{"error": {"message": ...}}`, which its
    clients read."""
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
    _add_routes(app, service)
    return app


def _token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip() or None
    return request.headers.get("x-api-key") or None


def _add_routes(app: FastAPI, service: Service) -> None:
    store, engine, keys, config = service.store, service.engine, service.keys, service.config

    async def principal(request: Request) -> Principal:
        token = _token(request)
        if token is None:
            raise HTTPException(
                401, "missing API key; send 'Authorization: Bearer KEY'", {"WWW-Authenticate": "Bearer"}
            )
        who = keys.cached(token) or await run_in_threadpool(keys.authenticate, token)
        if who is None:
            raise HTTPException(401, "unknown or revoked API key", {"WWW-Authenticate": "Bearer"})
        return who

    async def admin(who: Annotated[Principal, Depends(principal)]) -> Principal:
        if not who.admin:
            raise HTTPException(403, "this needs the admin key")
        return who

    Caller = Annotated[Principal, Depends(principal)]
    Admin = Annotated[Principal, Depends(admin)]

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

    def allow(who: Principal, user: str) -> None:
        if not who.may_act_as(user):
            raise HTTPException(403, f"this API key may not act for user '{user}'")

    def query_and_turn(messages: list[ChatMessage]) -> tuple[str, int]:
        if len(messages) > config.max_messages:
            raise HTTPException(413, f"{len(messages)} messages; the limit is {config.max_messages} (max_messages)")
        plain = [m.model_dump(exclude_none=True) for m in messages]
        size = sum(len(json.dumps(m.get("content", ""))) for m in plain)
        if size > config.max_query_chars:
            raise HTTPException(
                413, f"messages hold {size} characters; the limit is {config.max_query_chars} (max_query_chars)"
            )
        return query_of(plain), max(1, sum(m.role == "user" for m in messages))

    def check_candidates(candidates: list[str] | None) -> list[str] | None:
        if candidates is None:
            return None
        names = list(dict.fromkeys(candidates))
        if len(names) > config.max_candidates:
            raise HTTPException(413, f"{len(names)} candidates; the limit is {config.max_candidates} (max_candidates)")
        engine.router.model.check_llms(names)
        return names

    def route_out(routed: Routed) -> RouteResponse:
        decision = routed.decision
        return RouteResponse(
            route_id=routed.route_id,
            user=decision.user,
            llm=decision.llm,
            known_user=decision.known_user,
            cost_weight=decision.cost_weight,
            ranking=[vars(r) for r in decision.ranking],
            explanation=routed.explanation,
            notes=decision.notes,
        )

    @app.post("/v1/route", response_model=RouteResponse, responses=ERRORS, tags=["routing"])
    async def route(body: RouteRequest, who: Caller) -> RouteResponse:
        """Rank the candidate LLMs for this user's request; the top one is the choice."""
        encodable(body)
        allow(who, body.user)
        query, turn = query_and_turn(body.messages)
        candidates = check_candidates(body.candidates)
        routed = await engine.route(body.user, query, candidates, body.cost_weight, turn)
        service.metrics.choices.labels(routed.decision.llm).inc()
        return route_out(routed)

    @app.post(
        "/v1/feedback",
        response_model=FeedbackResponse,
        response_model_exclude_none=True,
        responses=ERRORS,
        tags=["routing"],
    )
    async def feedback(
        body: Feedback,
        who: Caller,
        idempotency_key: Annotated[str | None, Header(max_length=256)] = None,
    ) -> FeedbackResponse:
        """Store feedback durably (committed before this answers), then fold it into the user's history."""
        encodable(body)
        model = engine.router.model
        if isinstance(body, RecordFeedback):
            record, route_id = body.record, None
            allow(who, record.user)
            key = idempotency_key or body.idempotency_key or f"{record.conversation}#{record.turn}"
            key = f"record:{record.user}:{key}"
        else:
            route_row = await run_in_threadpool(store.get_route, body.route_id)
            if route_row is None or not who.may_act_as(route_row.user):
                raise HTTPException(404, f"no route '{body.route_id}' for this key; use a route_id from /v1/route")
            record, route_id = route_record(body, route_row, rating_scale(model)), route_row.id
            key = f"route:{route_row.id}"
        model.check_llms(record.llms)
        stored, duplicate = await run_in_threadpool(store.add_feedback, key, record.user, body.kind, record, route_id)
        if not duplicate:
            engine.observe([stored])
            service.metrics.feedback.labels(body.kind).inc()
        return FeedbackResponse(
            feedback_id=stored.id,
            user=stored.user,
            kind=stored.kind,
            route_id=stored.route_id,
            duplicate=duplicate,
            record=stored.record,
        )

    @app.get("/v1/users/{user}", response_model=UserOut, responses=ERRORS, tags=["users"])
    async def get_user(user: str, who: Caller) -> UserOut:
        """How much history the router has of a user and which LLMs they preferred."""
        allow(who, user)
        await engine.caught_up(user)
        profile = engine.router.profile(user)
        stored = await run_in_threadpool(store.count, "feedback", user)
        return UserOut(
            user=user,
            known=profile["known"],
            interactions=profile["interactions"],
            stored_feedback=stored,
            preferred_llms=profile["preferred_llms"],
            win_rate=profile["win_rate"],
        )

    @app.delete("/v1/users/{user}", response_model=ForgetOut, responses=ERRORS, tags=["users"])
    async def forget_user(user: str, who: Caller) -> ForgetOut:
        """Forget a user: their stored routes and feedback are deleted and the router drops their history."""
        allow(who, user)
        counts = await run_in_threadpool(store.forget, user)
        await engine.forget(user)
        return ForgetOut(user=user, feedback_deleted=counts["feedback"], routes_deleted=counts["routes"])

    @app.get("/healthz", response_model=HealthOut, tags=["operations"])
    async def healthz() -> HealthOut:
        router = engine.router
        service.metrics.history.set(len(router.context.history))
        return HealthOut(
            status="ok",
            model_dir=str(engine.model_dir),
            llms=router.llms,
            history_records=len(router.context.history),
            pending_changes=engine.pending(),
            schema_version=await run_in_threadpool(store.schema_version),
        )

    @app.get("/metrics", tags=["operations"], response_class=Response)
    async def metrics() -> Response:
        """Prometheus text format."""
        service.metrics.history.set(len(engine.router.context.history))
        service.metrics.pending.set(engine.pending())
        return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    # ------------------------------------------------------------------------------------------- admin

    @app.post("/v1/admin/reload", response_model=ReloadOut, responses=ERRORS, tags=["admin"])
    async def reload(body: ReloadRequest, _who: Admin) -> ReloadOut:
        """Load another model in the background and swap it in atomically; requests in flight finish on the old."""
        await run_in_threadpool(read_config, body.model_dir)
        return ReloadOut(**await engine.reload(body.model_dir))

    @app.post("/v1/admin/keys", response_model=KeyCreated, responses=ERRORS, tags=["admin"], status_code=201)
    async def create_key(body: KeyCreate, _who: Admin) -> KeyCreated:
        """A new user, tenant or admin key; the key itself is in this answer only."""
        key_id, token = await run_in_threadpool(keys.create, body.users, body.admin, body.name)
        row = await run_in_threadpool(store.get_key, key_id)
        return KeyCreated(key=token, **_key_out(row).model_dump())

    @app.get("/v1/admin/keys", response_model=list[KeyOut], responses=ERRORS, tags=["admin"])
    async def list_keys(_who: Admin) -> list[KeyOut]:
        return [_key_out(row) for row in await run_in_threadpool(store.list_keys)]

    @app.delete("/v1/admin/keys/{key_id}", response_model=KeyOut, responses=ERRORS, tags=["admin"])
    async def revoke_key(key_id: str, _who: Admin) -> KeyOut:
        if not await run_in_threadpool(keys.revoke, key_id):
            raise HTTPException(404, f"no active key '{key_id}'")
        return _key_out(await run_in_threadpool(store.get_key, key_id))

    @app.post("/v1/admin/retrain", response_model=JobOut, responses=ERRORS, tags=["admin"], status_code=202)
    async def retrain(body: RetrainRequest, _who: Admin) -> JobOut:
        """Train a new model on the stored feedback (plus `data`) in a separate process; reload it when done."""
        job = JobOut(job_id=uuid.uuid4().hex[:12], status="running", output=body.output)
        service.jobs[job.job_id] = job
        asyncio.get_running_loop().create_task(_run_retrain(service, job, body))
        return job

    @app.get("/v1/admin/jobs/{job_id}", response_model=JobOut, responses=ERRORS, tags=["admin"])
    async def get_job(job_id: str, _who: Admin) -> JobOut:
        if job_id not in service.jobs:
            raise HTTPException(404, f"no job '{job_id}'")
        return service.jobs[job_id]

    # ----------------------------------------------------------------------------------- OpenAI-compatible

    @app.post("/v1/chat/completions", responses={**ERRORS, 502: {"model": ErrorOut}}, tags=["openai"])
    async def chat_completions(body: ChatCompletionRequest, who: Caller) -> Any:
        """OpenAI chat completions. `model: "auto"` routes for `user`; a served model's name goes straight to it."""
        encodable(body)
        user = body.user or who.single_user
        if user is None:
            raise HTTPException(400, "name the user in the request's 'user' field")
        allow(who, user)
        query, turn = query_and_turn(body.messages)
        extras = dict(body.model_extra or {})
        candidates, cost_weight = extras.pop("candidates", None), extras.pop("cost_weight", 0.0)
        forward = {**extras, "messages": [m.model_dump(exclude_none=True) for m in body.messages]}
        if body.user is not None:
            forward["user"] = body.user
        served = service.upstreams.names
        if body.model == "auto":
            if candidates is not None and not (
                isinstance(candidates, list) and all(isinstance(c, str) for c in candidates)
            ):
                raise HTTPException(422, "candidates: must be a list of LLM names")
            if not isinstance(cost_weight, int | float) or isinstance(cost_weight, bool) or cost_weight < 0:
                raise HTTPException(422, "cost_weight: must be a number, 0 or more")
            pool = [m for m in (check_candidates(candidates) or engine.router.llms) if m in served]
            if not pool:
                raise HTTPException(
                    503, "no upstream is configured for any candidate LLM; add [upstreams.NAME] to the config"
                )
            routed = await engine.route(user, query, pool, float(cost_weight), turn)
            service.metrics.choices.labels(routed.decision.llm).inc()
            llm, route_id = routed.decision.llm, routed.route_id
        elif body.model in served:
            llm, route_id = body.model, uuid.uuid4().hex
            row = RouteRow(route_id, user, query, [llm], llm, [], time.time(), turn)
            await run_in_threadpool(store.add_routes, [row])
        else:
            raise HTTPException(
                404, f"model '{body.model}' is not served here; use 'auto' or one of: {', '.join(served)}"
            )
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


def _key_out(row: Any) -> KeyOut:
    return KeyOut(
        key_id=row.id, name=row.name, users=row.users, admin=row.admin, created=row.created, revoked=row.revoked
    )


async def _run_retrain(service: Service, job: JobOut, body: RetrainRequest) -> None:
    """`gmtrouter train --from-db` in a child process (training must not slow routing's process down)."""
    args = [sys.executable, "-m", "gmtrouter", "train", "--from-db", service.config.db, "-o", body.output]
    if body.data:
        args += ["--data", body.data]
    for key, value in body.settings.items():
        args += ["--set", f"{key}={json.dumps(value) if not isinstance(value, str) else value}"]
    args += ["--set", "progress=false"]
    try:
        process = await asyncio.create_subprocess_exec(
            *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        output, _ = await process.communicate()
        job.returncode = process.returncode
        job.log_tail = output.decode(errors="replace")[-2000:]
        job.status = "succeeded" if process.returncode == 0 else "failed"
        if job.status == "succeeded" and body.reload:
            await service.engine.reload(Path(body.output))
            job.reloaded = True
    except Exception as error:  # a failed job reports why; the service goes on
        job.status, job.log_tail = "failed", f"{job.log_tail}\n{error}".strip()
