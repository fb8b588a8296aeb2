"""The console's reads of the store: aggregates over routes and feedback, scoped to the users a key may see.

Every function is one read-only transaction over the tables of `gmtrouter.serve.store`, selecting only the
columns it needs; JSON columns are parsed with `json.loads` (not pydantic), which keeps a page over ten thousand
feedback rows within its time budget. A scope of None means every user (the admin key).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from gmtrouter.serve.auth import Principal
from gmtrouter.serve.store import Store, feedback, routes

Scope = sa.ColumnElement[bool] | None


def scope_of(who: Principal, column: sa.Column[Any]) -> Scope:
    """The SQL condition for the users `who` may act for: exact ids and tenant prefixes (None: everyone)."""
    if who.admin:
        return None
    exact = [u for u in who.users if not u.endswith("*")]
    clauses: list[sa.ColumnElement[bool]] = [column.in_(exact)] if exact else []
    clauses += [column.startswith(p[:-1], autoescape=True) for p in who.users if p.endswith("*")]
    return sa.or_(*clauses) if clauses else sa.false()


def _where(query: sa.Select[Any], scope: Scope) -> sa.Select[Any]:
    return query if scope is None else query.where(scope)


@dataclass(frozen=True)
class RouteView:
    """A stored route as the console shows it."""

    id: str
    user: str
    query: str
    choice: str
    ranking: list[dict[str, Any]]
    created: float
    previous_llm: str | None = None
    switch_cost: float = 0.0
    explored: bool = False
    arm: str | None = None


@dataclass(frozen=True)
class FeedbackView:
    """A stored feedback as the console shows it (the record as plain JSON)."""

    id: int
    route_id: str | None
    user: str
    kind: str
    record: dict[str, Any]
    created: float


def table_counts(store: Store) -> tuple[int, int]:
    """(stored routes, stored feedback): what the running totals must add up to."""
    with store.engine.connect() as conn:
        return (
            int(conn.execute(sa.select(sa.func.count()).select_from(routes)).scalar_one()),
            int(conn.execute(sa.select(sa.func.count()).select_from(feedback)).scalar_one()),
        )


def routes_since(store: Store, since: float | None) -> list[tuple[str, str, str, str, float, str | None]]:
    """(id, user, choice, ranking JSON, created, arm) of the routes created since a time (all when None)."""
    query = sa.select(routes.c.id, routes.c.user, routes.c.choice, routes.c.ranking, routes.c.created, routes.c.arm)
    if since is not None:
        query = query.where(routes.c.created >= since)
    with store.engine.connect() as conn:
        return [tuple(row) for row in conn.execute(query)]


def feedback_since(
    store: Store, since: float | None
) -> list[tuple[int, str, float, str | None, str | None, str, str | None]]:
    """(id, user, created, record JSON, the route's choice, kind, the route's arm) of the feedback created since a
    time (all when None); the record, choice and arm are None for feedback not given on a stored route."""
    query = sa.select(
        feedback.c.id,
        feedback.c.user,
        feedback.c.created,
        sa.case((routes.c.choice.is_not(None), feedback.c.record)),
        routes.c.choice,
        feedback.c.kind,
        routes.c.arm,
    ).outerjoin(routes, routes.c.id == feedback.c.route_id)
    if since is not None:
        query = query.where(feedback.c.created >= since)
    with store.engine.connect() as conn:
        return [tuple(row) for row in conn.execute(query)]


ROUTE_COLUMNS = (
    routes.c.id,
    routes.c.user,
    routes.c.query,
    routes.c.choice,
    routes.c.ranking,
    routes.c.created,
    routes.c.previous_llm,
    routes.c.switch_cost,
    routes.c.explored,
    routes.c.arm,
)


def _route_view(row: Any) -> RouteView:
    ranking = json.loads(row.ranking)
    return RouteView(
        row.id,
        row.user,
        row.query,
        row.choice,
        ranking,
        row.created,
        row.previous_llm,
        row.switch_cost,
        bool(row.explored),
        row.arm,
    )


def _feedback_view(row: Any) -> FeedbackView:
    return FeedbackView(row.id, row.route_id, row.user, row.kind, json.loads(row.record), row.created)


def recent_routes(store: Store, who: Principal, limit: int = 50, user: str | None = None) -> list[RouteView]:
    """The latest stored routes, newest first (of one user, if given).

    The newest ids are found first and only their rows read: sorting whole rows (query and ranking texts) was
    most of the time of this read.
    """
    newest = _where(sa.select(routes.c.id), scope_of(who, routes.c.user))
    if user is not None:
        newest = newest.where(routes.c.user == user)
    newest = newest.order_by(routes.c.created.desc()).limit(limit)
    query = sa.select(*ROUTE_COLUMNS).where(routes.c.id.in_(newest.scalar_subquery())).order_by(routes.c.created.desc())
    with store.engine.connect() as conn:
        return [_route_view(row) for row in conn.execute(query)]


def route_view(store: Store, route_id: str) -> RouteView | None:
    """One stored route (the caller checks that the key may see its user)."""
    with store.engine.connect() as conn:
        row = conn.execute(sa.select(*ROUTE_COLUMNS).where(routes.c.id == route_id)).first()
    return _route_view(row) if row is not None else None


def feedback_on(store: Store, route_ids: Sequence[str]) -> dict[str, list[FeedbackView]]:
    """The feedback given on each of these routes, oldest first."""
    if not route_ids:
        return {}
    query = sa.select(feedback).where(feedback.c.route_id.in_(list(route_ids))).order_by(feedback.c.id)
    out: dict[str, list[FeedbackView]] = {}
    with store.engine.connect() as conn:
        for row in conn.execute(query):
            out.setdefault(row.route_id, []).append(_feedback_view(row))
    return out


def user_feedback(store: Store, user: str, limit: int | None = None) -> list[FeedbackView]:
    """A user's stored feedback, newest first."""
    query = sa.select(feedback).where(feedback.c.user == user).order_by(feedback.c.id.desc())
    if limit is not None:
        query = query.limit(limit)
    with store.engine.connect() as conn:
        return [_feedback_view(row) for row in conn.execute(query)]


def user_feedback_times(store: Store, user: str) -> list[float]:
    """When each of a user's stored feedback rows was committed, oldest first."""
    query = sa.select(feedback.c.created).where(feedback.c.user == user).order_by(feedback.c.created)
    with store.engine.connect() as conn:
        return [row[0] for row in conn.execute(query)]
