"""gmtrouter as an online policy, through the Python API (`gmtrouter.api.Router`): route, then observe the thumb.

The one place that knows the API's shape. It uses what the installed version has: `Router.cold(llms, ...)` for a
start without logs, `route(..., explore=...)` and a router-level `explore` setting with a `seed`, `add_llm` for
an LLM that joins at run time; where a part is missing, the policy says so (`Unavailable`) instead of running
something else under its name. A warm start needs only `Router.load`, `route` and `observe`.

Routed queries are read from the text encoder's on-disk cache, where the benchmark put every matrix query before
the runs (LinUCB reads the same vectors): the router would compute exactly these vectors, and routes per second
then measure routing and learning, not encoding a query (docs/benchmarks.md measures that apart).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gmtrouter.api import Router
from gmtrouter.bench.online.policies import Policy, Unavailable
from gmtrouter.bench.online.world import Stream
from gmtrouter.data.schema import Interaction
from gmtrouter.text.base import TextEncoder
from gmtrouter.text.querycache import QueryCacheEncoder

EXPLORE = "thompson"  # the router-level exploration of the exploring policy


def _accepts(function: Callable[..., Any], **wanted: Any) -> dict[str, Any]:
    """The keyword arguments of `wanted` that `function` takes (all of them where it takes `**settings`)."""
    parameters = inspect.signature(function).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return dict(wanted)
    return {key: value for key, value in wanted.items() if key in parameters}


def api_capabilities() -> list[str]:
    """Which of the parts this policy can use the installed `Router` has (a job's key includes them, so a result
    made without a part is rerun once it is there)."""
    parts = {
        "cold": hasattr(Router, "cold"),
        "explore": "explore" in inspect.signature(Router.route).parameters,
        "add_llm": hasattr(Router, "add_llm"),
    }
    return [name for name, present in parts.items() if present]


class _CacheFirst(TextEncoder):
    """An encoder seen by the router's query LRU as its model: the disk-cached encoder, read before computing."""

    def __init__(self, cached: TextEncoder) -> None:
        self.cached, self.name, self.dim, self.variant = cached, cached.name, cached.dim, cached.variant

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return self.cached.encode(texts)


def _queries_from_cache(router: Router) -> None:
    encoder = getattr(router.model, "text_encoder", None)
    if encoder is not None and isinstance(encoder(), QueryCacheEncoder):
        router.model.use_text_encoder(QueryCacheEncoder(_CacheFirst(encoder().cached)))  # type: ignore[attr-defined]


class GmtrouterPolicy(Policy):
    """gmtrouter routing each round and observing the feedback on the routed answer as a one-response record
    (rating 1.0 for a thumb up, 0.0 down, or the rating). `explore`: route with the router's exploration;
    `settings`: more of the Router's own (e.g. `thompson_scale`)."""

    def __init__(
        self,
        name: str,
        explore: bool,
        seed: int,
        model_dir: Path | None = None,
        settings: Mapping[str, Any] | None = None,
    ) -> None:
        self.name, self.explore, self.seed, self.model_dir = name, explore, seed, model_dir
        self.settings = dict(settings or {})

    def start(self, stream: Stream, warm: Sequence[Interaction]) -> None:
        super().start(stream, warm)
        setting = {"explore": EXPLORE if self.explore else "off", "seed": self.seed, **self.settings}
        self.route_explore = "explore" in inspect.signature(Router.route).parameters
        if self.explore and not self.route_explore:
            raise Unavailable("Router.route has no explore option in this version")
        if self.model_dir is None:
            if not hasattr(Router, "cold"):
                raise Unavailable("Router.cold (a router without logs) is not in this version")
            self.router = Router.cold(list(stream.llms), **_accepts(Router.cold, **setting))
        else:
            self.router = Router.load(self.model_dir, **_accepts(Router.load, **setting))
        _queries_from_cache(self.router)
        if set(stream.llms) - set(self.router.llms) and not hasattr(self.router, "add_llm"):
            raise Unavailable("Router.add_llm (an LLM joining at run time) is not in this version")
        self.index = {llm: j for j, llm in enumerate(stream.llms)}

    def choose(self, t: int, candidates: np.ndarray) -> int:
        names = [self.stream.llms[j] for j in candidates]
        for name in names:
            if name not in self.router.llms:
                self.router.add_llm(name)  # type: ignore[attr-defined]
        options = {"explore": self.explore} if self.route_explore else {}
        user, query = self.stream.user_names[self.stream.user[t]], self.stream.queries[self.stream.row[t]]
        return self.index[self.router.route(user, query, candidates=names, **options).llm]

    def learn(self, t: int, llm: int, feedback: float) -> None:
        user = self.stream.user_names[self.stream.user[t]]
        self.router.observe(
            {
                "user": user,
                "conversation": f"{user}/round-{t}",
                "turn": 1,
                "query": self.stream.queries[self.stream.row[t]],
                "responses": [{"llm": self.stream.llms[llm], "rating": float(feedback)}],
            }
        )
