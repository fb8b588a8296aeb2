"""Everything the request handlers share, built once per app: store, engine, keys, upstreams, metrics."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from gmtrouter.registry.checkpoint import read_config
from gmtrouter.serve.auth import KeyRing
from gmtrouter.serve.config import ADMIN_KEY_ENV, ServeConfig, cached_input_prices
from gmtrouter.serve.engine import Engine
from gmtrouter.serve.metrics import Metrics
from gmtrouter.serve.ratelimit import RateLimiter
from gmtrouter.serve.schemas import JobOut
from gmtrouter.serve.store import Store
from gmtrouter.serve.upstream import Upstreams
from gmtrouter.utils.errors import GmtError
from gmtrouter.utils.heap import settle_heap

log = logging.getLogger("gmtrouter.serve")


@dataclass
class Service:
    config: ServeConfig
    store: Store
    engine: Engine
    keys: KeyRing
    upstreams: Upstreams
    metrics: Metrics
    request_limit: RateLimiter
    feedback_limit: RateLimiter
    jobs: dict[str, JobOut] = field(default_factory=dict)


def build_service(config: ServeConfig) -> Service:
    """Open the store (migrating it), load the model with the stored feedback, set up keys and upstreams."""
    if config.model is None:
        raise GmtError("give the model folder: --model DIR (or 'model' in the config file)")
    read_config(config.model)
    admin_key = config.resolved_admin_key()  # a short one is refused before anything starts
    prices = cached_input_prices(config.prices) if config.prices is not None else {}
    store = Store(config.db, config.sqlite_synchronous, create=config.create_db)
    metrics = Metrics()
    engine = Engine(
        store,
        config.model,
        batch_max=config.batch_max,
        batch_wait_ms=config.batch_wait_ms,
        query_cache=config.query_cache,
        sync_seconds=config.sync_seconds,
        torch_threads=config.torch_threads,
        on_batch=metrics.batch,
        on_fold=metrics.fold,
        cached_input_prices=prices,
    )
    keys = KeyRing(store, admin_key, config.key_cache_seconds)
    _log_admin_access(store, admin_key is not None)
    settle_heap()
    limits = RateLimiter(config.rate_requests_per_minute), RateLimiter(config.rate_feedback_per_minute)
    return Service(config, store, engine, keys, Upstreams(config.upstreams), metrics, *limits)


def _log_admin_access(store: Store, from_environment: bool) -> None:
    """Say at start whether anyone can reach the admin endpoints, and with what."""
    stored = sum(1 for row in store.list_keys() if row.admin and row.revoked is None)
    if from_environment or stored:
        ways = ([f"${ADMIN_KEY_ENV} (or admin_key)"] if from_environment else []) + (
            [f"{stored} admin key(s) in the database"] if stored else []
        )
        log.warning("admin endpoints (/v1/admin/*) are reachable with %s", " and ".join(ways))
    else:
        log.warning(
            "admin endpoints (/v1/admin/*) are unreachable: no admin key; set $%s or run "
            "'gmtrouter serve keys create --admin'",
            ADMIN_KEY_ENV,
        )
