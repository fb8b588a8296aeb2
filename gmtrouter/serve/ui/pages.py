"""The console's pages and its JSON endpoints, under /ui.

Every page checks the caller's key with the API's `KeyRing` and `Principal.may_act_as`: an admin sees every
user, a user or tenant key only its own (another user's page is 403, another user's decision 404, as on the
API). Pages read the store and the live router; the only writes are the API's own (Forget).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, Field

from gmtrouter.data.schema import NO_NUL, Text
from gmtrouter.registry.checkpoint import read_config
from gmtrouter.serve import routes as api
from gmtrouter.serve.auth import Principal
from gmtrouter.serve.deps import check_candidates, encodable
from gmtrouter.serve.feedback import rating_scale
from gmtrouter.serve.schemas import MAX_USER, CostWeight, LLMName, PastInteraction, RankedLLMOut, RequestBody
from gmtrouter.serve.service import Service
from gmtrouter.serve.store import parsed_safe
from gmtrouter.serve.ui import arm_stats, charts, insights, queries, session
from gmtrouter.serve.ui.report import read_report
from gmtrouter.serve.ui.tally import Tally

HERE = Path(__file__).resolve().parent
templates = Jinja2Templates(directory=str(HERE / "templates"))
templates.env.filters["url"] = lambda value: quote(str(value), safe="")
templates.env.filters["when"] = lambda t: time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t)) if t else "–"
templates.env.filters["usd"] = lambda v: "–" if v is None else f"${v:,.4f}"
templates.env.filters["pct"] = lambda v: "–" if v is None else f"{v:.0%}"
router = APIRouter(prefix="/ui", include_in_schema=False)
NEW_USER = "(new user)"  # Try it without a user: routed by the population's preferences
LIST_LIMIT = 200
USER_WAIT_S = 2.0  # a user page waits this long for the user's acknowledged feedback to be live, then says so
TRY_WAIT_S = 10.0  # Try it waits as /v1/route does (which waits up to two minutes), but not as long


# --------------------------------------------------------------------------------------------------- helpers


def _service(request: Request) -> Service:
    return request.app.state.service


@dataclass
class Caches:
    """What the console keeps between page loads, one per app (each app has its own store and router)."""

    population: insights.PopulationCache = field(default_factory=insights.PopulationCache)
    tally: Tally = field(default_factory=Tally)


def _caches(request: Request) -> Caches:
    return request.app.state.console


def page(request: Request, name: str, who: Principal | None, status: int = 200, **context: Any) -> HTMLResponse:
    return templates.TemplateResponse(request, name, {"who": who, **context}, status_code=status)


def refused(request: Request, who: Principal | None, status: int, message: str) -> HTMLResponse:
    """An error page with one line saying what to do (the status is the API's for the same refusal)."""
    return page(request, "error.html", who, status=status, message=message, title=f"{status}")


def to_login(request: Request) -> RedirectResponse:
    return RedirectResponse(f"/ui/login?next={quote(request.url.path, safe='')}", status_code=303)


def _visible_users(
    service: Service, caches: Caches, who: Principal
) -> tuple[dict[str, dict[str, float]], dict[str, int]]:
    """Users the key may see: their stored counts and their history sizes."""
    caches.tally.refresh(service.store, rating_scale(service.engine.router.model))
    counts = caches.tally.per_user(who.may_act_as)
    _, sizes = caches.population.get(service.engine.router.context.history)
    sizes = sizes if who.admin else {u: n for u, n in sizes.items() if who.may_act_as(u)}
    for user in who.users:
        if not user.endswith("*"):
            counts.setdefault(user, {"feedback": 0, "routes": 0, "last": 0.0})
    return counts, sizes


# -------------------------------------------------------------------------------------------------- sign-in


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request, next: str = "/ui") -> HTMLResponse:
    return page(request, "login.html", None, next=next if next.startswith("/ui") else "/ui", title="Sign in")


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request) -> Response:
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    key = (form.get("key") or [""])[0].strip()
    target = (form.get("next") or ["/ui"])[0]
    target = target if target.startswith("/ui") and not target.startswith("//") else "/ui"
    who = await session.check(_service(request), key)
    if who is None:
        message = "enter an API key" if not key else "unknown or revoked API key; check it and try again"
        return page(request, "login.html", None, status=401, next=target, error=message, title="Sign in")
    answer = RedirectResponse(target, status_code=303)
    answer.set_cookie(session.COOKIE, key, httponly=True, samesite="strict", path=session.PATH)
    return answer


@router.post("/logout")
async def logout() -> RedirectResponse:
    answer = RedirectResponse("/ui/login", status_code=303)
    answer.delete_cookie(session.COOKIE, path=session.PATH)
    return answer


# ------------------------------------------------------------------------------------------------- overview


def overview_data(service: Service, caches: Caches, who: Principal) -> dict[str, Any]:
    """Everything the Overview shows, as plain data (also served as JSON at /ui/api/overview)."""
    store, engine, tally = service.store, service.engine, caches.tally
    live = engine.router
    counts, _users = caches.population.get(live.context.history)
    now = time.time()
    tally.refresh(store, rating_scale(live.model))
    sums = tally.totals(who.may_act_as, insights.favourite(counts), live.costs)
    act = insights.activity({"routes": sums.route_times, "feedback": sums.feedback_times}, now)
    health: dict[str, Any] = {
        "schema_version": store.schema_version(),
        "routes": sums.routes,
        "feedback": sums.feedback,
        "pending_changes": engine.pending(),
        "history_records": len(live.context.history),
        "last_write": tally.last_write if who.admin else None,
    }
    if who.admin:
        health["database"] = parsed_safe(store.url)
    by_share = sorted(sums.choices.items(), key=lambda kv: -kv[1])
    return {
        "activity": {
            "bucket_seconds": act.bucket,
            "starts": act.starts,
            "routes": act.routes,
            "feedback": act.feedback,
        },
        "traffic": {llm: n / sums.routes for llm, n in by_share} if sums.routes else {},
        "spend": vars(sums.spend),
        "agreement": {"agreed": sums.agreement.agreed, "judged": sums.agreement.judged, "rate": sums.agreement.rate},
        "arms": {
            "control_share": service.config.control_share,
            "control": service.config.control,
            **arm_stats.compare(sums.arms),
        },
        "model": {**model_meta(engine.model_dir, who.admin), "llms": live.llms},
        "store": health,
    }


def model_meta(model_dir: Path | None, admin: bool) -> dict[str, Any]:
    """The loaded model's identity from its config.json (version, training data hash, when trained), its folder
    only for an admin (a path on the server is none of a user key's business); for a router started with no logs,
    that it was."""
    if model_dir is None:
        return {"cold": True, "router": "gmtrouter, started with no logs", "history_records": 0}
    meta = read_config(model_dir)
    keep = ("router", "gmtrouter_version", "data_hash", "created", "history_records", "encoder", "llms")
    return {"cold": False, **({"model_dir": str(model_dir)} if admin else {}), **{k: meta.get(k) for k in keep}}


@router.get("", response_class=HTMLResponse)
async def overview(request: Request) -> Response:
    who = await session.signed_in(request)
    if who is None:
        return to_login(request)
    data = await run_in_threadpool(overview_data, _service(request), _caches(request), who)
    act = insights.Activity(
        data["activity"]["starts"],
        data["activity"]["bucket_seconds"],
        data["activity"]["routes"],
        data["activity"]["feedback"],
    )
    spent = data["spend"]
    spend_items = [("routed (this router)", spent["routed"]), ("always the cheapest", spent["cheapest"])]
    if spent["favourite"] is not None:
        spend_items.insert(1, (f"always {spent['favourite_llm']}", spent["favourite"]))
    return page(
        request,
        "overview.html",
        who,
        title="Overview",
        data=data,
        activity_chart=charts.activity_chart(act),
        traffic_chart=charts.bar_chart([(m, 100 * s) for m, s in data["traffic"].items()], unit="%", digits=1),
        spend_chart=charts.bar_chart(spend_items, digits=4) if spent["priced"] else None,
    )


@router.get("/api/overview")
async def overview_json(request: Request) -> JSONResponse:
    """The Overview's numbers as JSON, for the key in the header or the console's cookie."""
    who = await session.signed_in(request)
    if who is None:
        raise HTTPException(
            401, "missing or unknown API key; send 'Authorization: Bearer KEY'", {"WWW-Authenticate": "Bearer"}
        )
    return JSONResponse(await run_in_threadpool(overview_data, _service(request), _caches(request), who))


# ---------------------------------------------------------------------------------------------------- users


@router.get("/users", response_class=HTMLResponse)
async def users(request: Request, q: str = "", forgot: str = "") -> Response:
    who = await session.signed_in(request)
    if who is None:
        return to_login(request)
    service = _service(request)
    counts, sizes = await run_in_threadpool(_visible_users, service, _caches(request), who)
    needle = q.strip().lower()
    names = [u for u in set(counts) | set(sizes) if needle in u.lower()]
    zero = {"feedback": 0, "routes": 0, "last": 0.0}
    rows = sorted(
        ({"user": u, "history": sizes.get(u, 0), **counts.get(u, zero)} for u in names),
        key=lambda r: (-r["last"], -r["history"], r["user"]),
    )
    return page(
        request,
        "users.html",
        who,
        title="Users",
        rows=rows[:LIST_LIMIT],
        more=max(0, len(rows) - LIST_LIMIT),
        q=q,
        forgot=forgot,
    )


def user_data(service: Service, caches: Caches, user: str) -> dict[str, Any]:
    live = service.engine.router
    records = live.history(user)
    times = queries.user_feedback_times(service.store, user)
    base = max(0, len(records) - len(times))
    recent = queries.recent_routes(service.store, Principal("console", admin=True), 20, user=user)
    return {
        "records": len(records),
        "known": live.context.knows_user(user),
        "beliefs": service.engine.beliefs(user),
        "base": base,
        "curve": insights.history_curve(base, times),
        "feedback": queries.user_feedback(service.store, user, limit=20),
        "stored_feedback": len(times),
        "routes": recent,
        "route_feedback": queries.feedback_on(service.store, [r.id for r in recent]),
    }


@router.get("/users/{user:path}", response_class=HTMLResponse)
async def user_page(request: Request, user: str) -> Response:
    who = await session.signed_in(request)
    if who is None:
        return to_login(request)
    if not who.may_act_as(user):
        return refused(request, who, 403, f"this API key may not act for user '{user}'")
    service = _service(request)
    live = await service.engine.caught_up(user, timeout=USER_WAIT_S)
    data = await run_in_threadpool(user_data, service, _caches(request), user)
    data["folding"] = not live
    return page(
        request,
        "user.html",
        who,
        title=user,
        user=user,
        data=data,
        belief_chart=charts.belief_chart(data["beliefs"]),
        history_chart=charts.step_chart(data["curve"], data["base"], time.time()),
    )


@router.post("/forget", response_class=HTMLResponse)
async def forget(request: Request) -> Response:
    """Forget a user (admin only): the API's own DELETE /v1/users/{user}, after the user id is typed again."""
    who = await session.signed_in(request)
    if who is None:
        return to_login(request)
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    user, typed = (form.get("user") or [""])[0], (form.get("confirm") or [""])[0].strip()
    if not who.admin:
        return refused(request, who, 403, "forgetting a user from the console needs the admin key")
    if not user or typed != user:
        return refused(request, who, 400, f"type the user id '{user}' exactly to confirm forgetting it")
    await api.forget_user(user, who, _service(request))
    return RedirectResponse(f"/ui/users?forgot={quote(user, safe='')}", status_code=303)


# ------------------------------------------------------------------------------------------------ decisions


def _ranking_view(route: queries.RouteView) -> dict[str, Any]:
    weight = insights.cost_weight_of(route.ranking, route.previous_llm, route.switch_cost)
    return {"ranking": route.ranking, "cost_weight": weight}


@router.get("/decisions", response_class=HTMLResponse)
async def decisions(request: Request, user: str = "") -> Response:
    who = await session.signed_in(request)
    if who is None:
        return to_login(request)
    if user and not who.may_act_as(user):
        return refused(request, who, 403, f"this API key may not act for user '{user}'")
    store = _service(request).store

    def load() -> tuple[list[queries.RouteView], dict[str, list[queries.FeedbackView]]]:
        rows = queries.recent_routes(store, who, 50, user=user or None)
        return rows, queries.feedback_on(store, [r.id for r in rows])

    rows, after = await run_in_threadpool(load)
    items = [{"route": r, "feedback": after.get(r.id, []), **_ranking_view(r)} for r in rows]
    return page(request, "decisions.html", who, title="Decisions", items=items, user=user)


@router.get("/decisions/{route_id}", response_class=HTMLResponse)
async def decision(request: Request, route_id: str) -> Response:
    who = await session.signed_in(request)
    if who is None:
        return to_login(request)
    service = _service(request)
    row = await run_in_threadpool(queries.route_view, service.store, route_id)
    if row is None or not who.may_act_as(row.user):
        return refused(request, who, 404, f"no decision '{route_id}' for this key; pick one from the Decisions list")
    after = await run_in_threadpool(queries.feedback_on, service.store, [route_id])
    runner_up = next((r["llm"] for r in row.ranking if r["llm"] != row.choice), None)
    explanation = []  # a control route was not chosen from the user's history: nothing of theirs explains it
    if row.arm != "control":
        explanation = await run_in_threadpool(service.engine.explain, row.user, row.query, row.choice, runner_up)
    return page(
        request,
        "decision.html",
        who,
        title="Decision",
        route=row,
        feedback=after.get(route_id, []),
        explanation=explanation,
        **_ranking_view(row),
    )


@router.get("/interaction", response_class=HTMLResponse)
async def interaction(request: Request, user: str, conversation: str, turn: int) -> Response:
    """One past interaction of a user's history (what an explanation links to)."""
    who = await session.signed_in(request)
    if who is None:
        return to_login(request)
    if not who.may_act_as(user):
        return refused(request, who, 403, f"this API key may not act for user '{user}'")
    live = _service(request).engine.router
    found = [r for r in live.history(user) if r.conversation == conversation and r.turn == turn]
    if not found:
        return refused(request, who, 404, f"no interaction {conversation} turn {turn} in the history of '{user}'")
    return page(request, "interaction.html", who, title="Interaction", user=user, record=found[0])


# --------------------------------------------------------------------------------------------------- try it


class TryRequest(RequestBody):
    """A route to preview: nothing is stored, no history changes."""

    user: Annotated[str, Field(max_length=MAX_USER, pattern=NO_NUL)] = ""
    query: Text
    candidates: Annotated[list[LLMName], Field(min_length=1)] | None = None
    cost_weight: CostWeight = 0.0


class TryResponse(BaseModel):
    user: str
    llm: str
    known_user: bool
    cost_weight: float
    ranking: list[RankedLLMOut]
    explanation: list[PastInteraction]
    notes: list[str]


@router.get("/try", response_class=HTMLResponse)
async def try_page(request: Request, user: str = "") -> Response:
    who = await session.signed_in(request)
    if who is None:
        return to_login(request)
    service = _service(request)
    counts, sizes = await run_in_threadpool(_visible_users, service, _caches(request), who)
    known = sorted(set(counts) | set(sizes))[:2000]
    live = service.engine.router
    return page(request, "try.html", who, title="Try it", users=known, user=user, llms=live.llms, costs=live.costs)


@router.post("/api/try", response_model=TryResponse)
async def try_route(body: TryRequest, request: Request) -> TryResponse:
    """What /v1/route would answer for this user and query, and why, without storing the route."""
    who = await session.signed_in(request)
    if who is None:
        raise HTTPException(401, "missing or unknown API key; sign in again", {"WWW-Authenticate": "Bearer"})
    encodable(body)
    user = body.user.strip() or NEW_USER
    if body.user.strip() and not who.may_act_as(user):
        raise HTTPException(403, f"this API key may not act for user '{user}'")
    service = _service(request)
    limit = service.config.max_query_chars
    if len(body.query) > limit:
        raise HTTPException(
            413, f"the query holds {len(body.query)} characters; the limit is {limit} (max_query_chars)"
        )
    candidates = check_candidates(service, body.candidates)
    live = await service.engine.caught_up(user, timeout=TRY_WAIT_S)
    decision, explanation = await run_in_threadpool(
        service.engine.preview, user, body.query, candidates, body.cost_weight
    )
    return TryResponse(
        user=body.user.strip(),
        llm=decision.llm,
        known_user=decision.known_user,
        cost_weight=decision.cost_weight,
        ranking=[vars(r) for r in decision.ranking],
        explanation=explanation,
        notes=decision.notes + ([] if live else [f"feedback of '{user}' is still being folded in; not shown here"]),
    )


# ---------------------------------------------------------------------------------------------------- model


@router.get("/model", response_class=HTMLResponse)
async def model_page(request: Request) -> Response:
    who = await session.signed_in(request)
    if who is None:
        return to_login(request)
    service = _service(request)
    engine = service.engine
    live = engine.router
    counts, _ = _caches(request).population.get(live.context.history)
    llms = [
        {
            "llm": m,
            "cost": live.costs.get(m),
            "win_rate": counts[m][0] / counts[m][1] if counts.get(m, (0, 0))[1] else None,
            "retired": m in live.retired,
        }
        for m in live.llms
    ]
    report = await run_in_threadpool(read_report, service.config.report) if service.config.report else None
    return page(
        request,
        "model.html",
        who,
        title="Model",
        meta=await run_in_threadpool(model_meta, engine.model_dir, who.admin),
        load=engine.load_info if who.admin else None,
        llms=llms,
        encoder=service.config.encoder,
        explore=engine.explore,
        refit_after=engine.refit_after,
        report=report,
    )


@router.get("/model/figures/{name}")
async def figure(request: Request, name: str) -> Response:
    """A k-shot figure of the benchmark report given with --report (only those; nothing else on disk)."""
    who = await session.signed_in(request)
    if who is None:
        raise HTTPException(401, "missing or unknown API key; sign in at /ui/login", {"WWW-Authenticate": "Bearer"})
    path = _service(request).config.report
    figures = read_report(path).figures if path else {}
    if name not in figures:
        raise HTTPException(404, f"no figure '{name}' in the benchmark report")
    return FileResponse(figures[name][1], media_type="image/png")
