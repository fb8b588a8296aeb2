"""Routing, feedback, users, health and metrics endpoints."""

from typing import Annotated

import orjson
from fastapi import APIRouter, Header, HTTPException, Response
from fastapi.concurrency import run_in_threadpool
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gmtrouter.serve.deps import (
    ERRORS,
    Caller,
    PathUser,
    Svc,
    allow,
    chat_turn,
    check_candidates,
    encodable,
    limited,
    query_and_turn,
    requested_user,
    within_query_limit,
)
from gmtrouter.serve.engine import Routed
from gmtrouter.serve.feedback import rating_scale, route_record
from gmtrouter.serve.schemas import (
    MAX_FEEDBACK_KEY,
    MAX_IDEMPOTENCY,
    ErrorOut,
    Feedback,
    FeedbackResponse,
    ForgetOut,
    HealthOut,
    RecordFeedback,
    RouteRequest,
    RouteResponse,
    UserOut,
)

router = APIRouter()


def route_out(routed: Routed) -> Response:
    """The answer's JSON, serialised by orjson straight from the decision: the same body as `RouteResponse` (the
    schema the OpenAPI page shows), without building and validating the model for every request."""
    decision = routed.decision
    body = {
        "route_id": routed.route_id,
        "user": decision.user,
        "llm": decision.llm,
        "known_user": decision.known_user,
        "cost_weight": decision.cost_weight,
        "ranking": [vars(r) for r in decision.ranking],
        "explanation": routed.explanation,
        "notes": decision.notes,
        "previous_llm": decision.previous_llm,
        "switch_cost": decision.switch_cost,
        "explored": decision.explored,
        "arm": routed.arm,
    }
    return Response(orjson.dumps(body), media_type="application/json")


@router.post("/v1/route", response_model=RouteResponse, responses=ERRORS, tags=["routing"])
async def route(body: RouteRequest, who: Caller, service: Svc) -> Response:
    """Rank the candidate LLMs for this user's request; the top one is the choice."""
    encodable(body)
    user = requested_user(who, body.user)
    query, turn = query_and_turn(service, body.messages)
    candidates = check_candidates(service, body.candidates)
    chat = chat_turn(service, body.messages, body.conversation, body.switch_cost)
    routed = await service.engine.route(user, query, candidates, body.cost_weight, turn, chat, body.explore)
    service.metrics.routed(routed.decision.llm, routed.arm)
    return route_out(routed)


@router.post(
    "/v1/feedback",
    response_model=FeedbackResponse,
    response_model_exclude_none=True,
    responses=ERRORS,
    tags=["routing"],
)
async def feedback(
    body: Feedback,
    who: Caller,
    service: Svc,
    idempotency_key: Annotated[str | None, Header(min_length=1, max_length=MAX_IDEMPOTENCY)] = None,
) -> FeedbackResponse:
    """Store feedback durably (committed before this answers), then fold it into the user's history."""
    encodable(body)
    store, engine = service.store, service.engine
    model = engine.router.model
    route_row = None
    if isinstance(body, RecordFeedback):
        record, route_id = body.record, None
        allow(who, record.user)
        within_query_limit(service, "record.query", record.query)
        given = idempotency_key or body.idempotency_key
        key = f"record:{record.user}:{given or f'{record.conversation}#{record.turn}'}"
        if len(key) > MAX_FEEDBACK_KEY:  # only the default key (conversation and turn) can be this long
            raise HTTPException(
                422,
                f"record.conversation: too long to key this feedback by (at most {MAX_IDEMPOTENCY} characters with "
                "the turn); shorten it or send an Idempotency-Key header",
            )
    else:
        route_row = engine.routes.pending(body.route_id) or await run_in_threadpool(store.get_route, body.route_id)
        if route_row is None or not who.may_act_as(route_row.user):
            raise HTTPException(404, f"no route '{body.route_id}' for this key; use a route_id from /v1/route")
        record, route_id = route_record(body, route_row, rating_scale(model)), route_row.id
        key = f"route:{route_row.id}"
    model.check_llms(record.llms)
    if not who.admin:
        limited(service.feedback_limit.take(who.key_id), service.config.rate_feedback_per_minute, "feedback events")
    stored, duplicate = await run_in_threadpool(store.add_feedback, key, record.user, body.kind, record, route_id)
    if not duplicate:
        engine.observe([stored])
        service.metrics.feedback.labels(body.kind).inc()
        if (
            route_row is not None
            and route_row.arm is not None
            and (getattr(body, "llm", None) or route_row.choice) == route_row.choice
        ):
            service.metrics.arm_feedback(route_row.arm, body)
    return FeedbackResponse(
        feedback_id=stored.id,
        user=stored.user,
        kind=stored.kind,
        route_id=stored.route_id,
        duplicate=duplicate,
        record=stored.record,
    )


@router.get("/v1/users/{user}", response_model=UserOut, responses=ERRORS, tags=["users"])
async def get_user(user: PathUser, who: Caller, service: Svc) -> UserOut:
    """How much history the router has of a user, and what it believes they prefer: each LLM's score for them
    with its 95% interval beside a new user's, and the comparisons and thumbs behind it."""
    allow(who, user)
    await service.engine.caught_up(user)
    profile = service.engine.router.profile(user)
    believed = await run_in_threadpool(service.engine.beliefs, user)
    stored = await run_in_threadpool(service.store.count, "feedback", user)
    return UserOut(
        user=user,
        known=profile["known"],
        interactions=profile["interactions"],
        stored_feedback=stored,
        preferred_llms=[b.llm for b in believed],
        preferences=[
            {
                "llm": b.llm,
                "user": vars(b.user),
                "new_user": vars(b.new_user),
                "comparisons": b.comparisons,
                "thumbs": b.thumbs,
            }
            for b in believed
        ],
        win_rate=profile["win_rate"],
    )


@router.delete("/v1/users/{user}", response_model=ForgetOut, responses=ERRORS, tags=["users"])
async def forget_user(user: PathUser, who: Caller, service: Svc) -> ForgetOut:
    """Forget a user: their stored routes and feedback are deleted, the router drops their history and the
    encoder's caches their texts."""
    allow(who, user)
    texts: set[str] = set()
    await run_in_threadpool(service.engine.routes.flush)  # the user's routes are all in the store, then deleted
    counts = await run_in_threadpool(service.store.forget, user, texts)
    await service.engine.forget(user, frozenset(texts))
    return ForgetOut(user=user, feedback_deleted=counts["feedback"], routes_deleted=counts["routes"])


@router.get("/healthz", response_model=HealthOut, responses={503: {"model": ErrorOut}}, tags=["operations"])
async def healthz(service: Svc) -> HealthOut:
    """Ready, and which model: its version and training data hash (never a server path: no key is needed).

    503 when the database does not answer or its SQLite file is no longer the one opened (deleted, replaced)."""
    engine = service.engine
    live = engine.router
    await run_in_threadpool(service.store.check)
    return HealthOut(
        status="ok",
        model_version=engine.load_info["model_version"],
        data_hash=engine.load_info["data_hash"],
        llms=live.llms,
        history_records=len(live.context.history),
        pending_changes=engine.pending(),
        feedback_unreadable=engine.unfoldable(),
        pending_routes=engine.routes.unwritten(),
        refitting=engine.refitting,
        schema_version=await run_in_threadpool(service.store.schema_version),
    )


@router.get("/metrics", tags=["operations"], response_class=Response)
async def metrics(service: Svc) -> Response:
    """Prometheus text format."""
    service.metrics.history.set(len(service.engine.router.context.history))
    service.metrics.pending.set(service.engine.pending())
    service.metrics.unreadable.set(service.engine.unfoldable())
    return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)
