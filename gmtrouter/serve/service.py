"""Everything the request handlers share, built once per app: store, engine, keys, upstreams, metrics."""

from __future__ import annotations

from dataclasses import dataclass, field

from gmtrouter.checkpoint import read_config
from gmtrouter.errors import GmtError
from gmtrouter.serve.auth import KeyRing
from gmtrouter.serve.config import ServeConfig
from gmtrouter.serve.engine import Engine, settle_heap
from gmtrouter.serve.metrics import Metrics
from gmtrouter.serve.schemas import JobOut
from gmtrouter.serve.store import Store
from gmtrouter.serve.upstream import Upstreams


@dataclass
class Service:
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
        batch_wait_ms=config.batch_wait_ms,
        query_cache=config.query_cache,
        sync_seconds=config.sync_seconds,
        torch_threads=config.torch_threads,
        on_batch=metrics.batch,
        on_fold=metrics.fold,
    )
    keys = KeyRing(store, config.resolved_admin_key(), config.key_cache_seconds)
    settle_heap()
    return Service(config, store, engine, keys, Upstreams(config.upstreams), metrics)
