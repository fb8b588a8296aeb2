"""Fresh queries sent at once to the real server share one encoder call, and each is routed as if alone."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
import pytest

from gmtrouter.api import Router
from gmtrouter.data.loaders import prepare
from gmtrouter.registry.checkpoint import save_router
from gmtrouter.registry.routers import make_router
from gmtrouter.text.encoders import get_encoder
from tests.serve_support import ADMIN, server

pytestmark = pytest.mark.slow
HEADERS = {"Authorization": f"Bearer {ADMIN}"}


@pytest.fixture(scope="module")
def minilm_model(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> tuple[Path, list[str], list[str]]:
    """GMTRouter with the default text encoder (served on ONNX Runtime) on MT-Bench's four busiest voters, its
    residual kept (`residual_margin=-1`), so that routing reads the query's vector."""
    import torch

    torch.set_num_threads(1)
    records = prepare("mt-bench", data_dir / "mt_bench")
    users = [user for user, _ in Counter(r.user for r in records).most_common(4)]
    records = [r for r in records if r.user in users]
    model = make_router(
        "gmtrouter", encoder="all-MiniLM-L6-v2", steps=20, eval_every=10, progress=False, seed=0, residual_margin=-1
    )
    # the folder the tests' GMTROUTER_CACHE_DIR names (conftest), so the server finds the export made here
    model.use_text_encoder(get_encoder("all-MiniLM-L6-v2", cache_dir=tmp_path_factory.getbasetemp() / "cache"))
    model.fit(records)
    folder = save_router(model, tmp_path_factory.mktemp("minilm") / "model", records)
    return folder, users, sorted({r.query for r in records})


def scrape(base: str) -> dict[str, float]:
    """The route batch counters of the server's /metrics."""
    wanted = ("gmtrouter_route_batch_size_count", "gmtrouter_route_batch_size_sum", "gmtrouter_queries_encoded_total")
    values = {}
    for line in httpx.get(f"{base}/metrics", timeout=30).text.splitlines():
        name, _, value = line.partition(" ")
        if name in wanted:
            values[name] = float(value)
    return values


async def route_all(base: str, asks: list[tuple[str, str]]) -> list[dict]:
    async with httpx.AsyncClient(base_url=base, headers=HEADERS, timeout=120) as client:
        answers = await asyncio.gather(
            *(
                client.post("/v1/route", json={"user": user, "messages": [{"role": "user", "content": query}]})
                for user, query in asks
            )
        )
    assert [a.status_code for a in answers] == [200] * len(asks), [a.text for a in answers if a.status_code != 200]
    return [a.json() for a in answers]


def test_concurrent_fresh_queries_share_a_batch_and_get_their_own_ranking(minilm_model, tmp_path: Path) -> None:
    model, users, questions = minilm_model
    config = tmp_path / "serve.toml"
    config.write_text("batch_wait_ms = 300\n")  # generous, so that a loaded test machine still batches them
    asks = [(users[i % len(users)], f"{q} (asked in test {i})") for i, q in enumerate(questions[:12])]
    with server(model, f"sqlite:///{tmp_path / 'db.sqlite'}", config) as base:
        before = scrape(base)
        answers = asyncio.run(route_all(base, asks))
        after = scrape(base)
    delta = {name: after[name] - before.get(name, 0.0) for name in after}
    assert delta["gmtrouter_route_batch_size_sum"] == 12
    assert delta["gmtrouter_queries_encoded_total"] == 12
    assert delta["gmtrouter_route_batch_size_count"] < 12  # some requests shared an encoder call

    alone = Router.load(model)
    for (user, query), answer in zip(asks, answers, strict=True):
        expected = alone.route(user, query)
        assert [r["llm"] for r in answer["ranking"]] == [r.llm for r in expected.ranking], query
        np.testing.assert_allclose(
            [r["score"] for r in answer["ranking"]], [r.score for r in expected.ranking], atol=1e-4
        )
