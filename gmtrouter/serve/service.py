"""Everything the request handlers share, built once per app: store, engine, keys, upstreams, metrics."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from gmtrouter.registry.checkpoint import read_config
from gmtrouter.serve.arms import ControlArm
from gmtrouter.serve.auth import KeyRing
from gmtrouter.serve.catalog import CatalogEntry
from gmtrouter.serve.config import ADMIN_KEY_ENV, GLOBAL_CONTROL, ServeConfig, cached_input_prices
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
    """Open the store (migrating it), load the model (or start with no logs over the configured LLMs) with the
    stored LLMs and feedback, set up keys and upstreams."""
    if config.model is None and not config.llms:
        raise GmtError(
            "give the model folder (--model DIR) or, to start with no logs, the LLMs to route among "
            "(--llms NAME,NAME or [llms.NAME] tables in the config file)"
        )
    if config.model is not None:
        read_config(config.model)
    admin_key = config.resolved_admin_key()  # a short one is refused before anything starts
    prices = cached_input_prices(config.prices) if config.prices is not None else {}
    store = Store(config.db, config.sqlite_synchronous, create=config.create_db)
    metrics = Metrics()
    upstreams = Upstreams(config.all_upstreams())

    def serve_stored(entries: dict[str, CatalogEntry]) -> None:
        """LLMs added at run time with an upstream are served by it (a later add wins over the config)."""
        added = {name: e.spec.upstream for name, e in entries.items() if e.added is not None and e.spec.upstream}
        upstreams.config = {**config.all_upstreams(), **added}

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
        llms=config.llms,
        encoder=config.encoder,
        explore=config.explore,
        explore_seed=config.explore_seed,
        ucb_width=config.ucb_width,
        thompson_scale=config.thompson_scale,
        arms=ControlArm(config.control_share, config.control, config.control_seed),
        on_llms=serve_stored,
    )
    if config.control != GLOBAL_CONTROL and config.control not in engine.router.llms:
        engine.close()
        store.close()
        raise GmtError(
            f"setting 'control': '{config.control}' is not an LLM the router knows; use 'global' or one of: "
            f"{', '.join(engine.router.llms)}"
        )
    keys = KeyRing(store, admin_key, config.key_cache_seconds)
    _log_admin_access(store, admin_key is not None)
    settle_heap()
    limits = RateLimiter(config.rate_requests_per_minute), RateLimiter(config.rate_feedback_per_minute)
    return Service(config, store, engine, keys, upstreams, metrics, *limits)


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
