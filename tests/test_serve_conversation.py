"""The conversation through the service: routing reads which LLM answered the previous turn.

A real GMTRouter (MiniLM) trained on synthetic multi-turn users, half of whom stay with the previous turn's LLM;
a real `gmtrouter serve` process on a SQLite file, restarted where the test says so; the real `openai` client on
the OpenAI-compatible endpoint, with the echo server (tests/echo_upstream.py) as every LLM's upstream.
"""

from __future__ import annotations

import json
import random
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest

from gmtrouter.data.schema import Interaction, Response
from gmtrouter.serve.config import cached_input_prices, load_config
from gmtrouter.serve.store import Store
from gmtrouter.utils.errors import GmtError
from tests.serve_support import ADMIN, echo_upstream, routes_written, start_server, stop

pytestmark = pytest.mark.slow
ADMIN_HEADERS = {"Authorization": f"Bearer {ADMIN}"}
LLMS = ["alpha-llm", "beta-llm", "gamma-llm"]
COST = {"alpha-llm": 0.02, "beta-llm": 0.01, "gamma-llm": 0.005}  # USD per answer in the history
PRICES = {"alpha-llm": {"input": 10.0, "output": 30.0, "cached_input": 1.0}, "beta-llm": {"input": 2, "output": 6}}
TOPICS = [
    "cooking pasta",
    "tax forms",
    "black holes",
    "learning the piano",
    "training a puppy",
    "growing tomatoes",
    "writing a cover letter",
    "fixing a bike chain",
    "the French revolution",
    "sorting algorithms",
]
USERS, TURNS = 40, 3
STICKY, FREE = "sticky", "free"
FIRST = "Tell me about baking bread at home"
SECOND = "How long should the dough rest?"


def multi_turn_users(seed: int = 0) -> list[Interaction]:
    """Conversations of 3 turns over 3 LLMs. From turn 2 on, each comparison puts the previous turn's winner
    against another LLM; the first half of the users pick the previous winner 90% of the time, the others 50/50."""
    rng = random.Random(seed)
    records = []
    for u in range(USERS):
        user = f"{STICKY if u < USERS // 2 else FREE}-{u}"
        for c, topic in enumerate(TOPICS):
            previous = None
            for turn in range(1, TURNS + 1):
                if previous is None:
                    pair = rng.sample(LLMS, 2)
                    winner = rng.choice(pair)
                else:
                    other = rng.choice([m for m in LLMS if m != previous])
                    pair = rng.sample([previous, other], 2)
                    stays = rng.random() < (0.9 if user.startswith(STICKY) else 0.5)
                    winner = previous if stays else other
                records.append(
                    Interaction(
                        user=user,
                        conversation=f"{user}/{c}",
                        turn=turn,
                        query=f"Turn {turn} of a chat about {topic}: question {rng.randrange(1000)}",
                        responses=[Response(llm=m, rating=float(m == winner), cost=COST[m]) for m in pair],
                        previous_llm=previous,
                    )
                )
                previous = winner
    return records


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's embedding cache (conftest's), set here too because module fixtures run before its."""
    return tmp_path_factory.getbasetemp() / "cache"


@pytest.fixture(scope="module")
def sticky_model(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Path:
    import torch

    from gmtrouter.model.gmtrouter import GMTRouter
    from gmtrouter.registry.checkpoint import save_router

    records = multi_turn_users()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GMTROUTER_CACHE_DIR", str(cache_dir))
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            model = GMTRouter(progress=False, residual=False, seed=0).fit(records)
        finally:
            torch.set_num_threads(threads)
        return save_router(model, tmp_path_factory.mktemp("sticky") / "model", records)


@dataclass
class Service:
    """A `gmtrouter serve` process that a test can restart on the same database."""

    model: Path
    folder: Path
    env: dict[str, str]
    upstream: str
    process: subprocess.Popen | None = None
    base: str = ""

    @property
    def db(self) -> str:
        return f"sqlite:///{self.folder / 'service.db'}"

    def start(self, **settings: object) -> None:
        """Start with every LLM on the echo upstream, the price file, and `settings` (TOML values)."""
        (self.folder / "prices.json").write_text(json.dumps(PRICES))
        lines = [f"prices = {json.dumps(str(self.folder / 'prices.json'))}"]
        lines += [f"{name} = {json.dumps(value)}" for name, value in settings.items()]
        for llm in LLMS:
            lines += [f'[upstreams."{llm}"]', f'base_url = "{self.upstream}"', 'api_key_env = "ECHO_KEY"']
        config = self.folder / "serve.toml"
        config.write_text("\n".join(lines) + "\n")
        self.process, self.base = start_server(self.model, self.db, config, self.env)

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)
            self.process = None

    def counts(self) -> tuple[int, int]:
        """(routes, feedback) stored, once every route answered so far is committed."""
        with httpx.Client(base_url=self.base, timeout=60) as client:
            routes_written(client)
        store = Store(self.db)
        try:
            return store.count("routes"), store.count("feedback")
        finally:
            store.close()

    def key_for(self, user: str) -> str:
        answer = httpx.post(f"{self.base}/v1/admin/keys", json={"users": [user]}, headers=ADMIN_HEADERS, timeout=60)
        assert answer.status_code == 201, answer.text
        return answer.json()["key"]

    def openai(self, user: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.base}/v1", api_key=self.key_for(user), max_retries=0, timeout=60)

    def route(self, user: str, messages: list[dict], **extra: object) -> dict:
        body = {"user": user, "messages": messages, **extra}
        answer = httpx.post(f"{self.base}/v1/route", json=body, headers=ADMIN_HEADERS, timeout=60)
        assert answer.status_code == 200, answer.text
        return answer.json()


@pytest.fixture(scope="module")
def service(sticky_model: Path, tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Iterator[Service]:
    env = {"ECHO_KEY": "upstream-secret", "GMTROUTER_CACHE_DIR": str(cache_dir)}
    with echo_upstream() as upstream:
        running = Service(sticky_model, tmp_path_factory.mktemp("conversation"), env, upstream)
        running.start()
        try:
            yield running
        finally:
            running.stop()


def chat(*turns: tuple[str, str | None], last: str = SECOND) -> list[dict]:
    """A chat of (user text, the model that answered it or None: an unnamed answer) turns, then `last`."""
    messages: list[dict] = []
    for text, model in turns:
        answer = {"role": "assistant", "content": f"An answer to: {text}"}
        messages += [{"role": "user", "content": text}, {**answer, "model": model} if model else answer]
    return [*messages, {"role": "user", "content": last}]


def order(route: dict) -> list[str]:
    return [r["llm"] for r in route["ranking"]]


def test_a_sticky_user_stays_with_the_llm_the_chat_names(service: Service) -> None:
    user = f"{STICKY}-0"
    client = service.openai(user)
    chosen = {}
    for previous in LLMS:
        raw = client.chat.completions.with_raw_response.create(
            model="auto", user=user, messages=chat((FIRST, previous))
        )
        answer = raw.parse()
        chosen[previous] = answer.model
        assert raw.headers["x-gmtrouter-previous-llm"] == answer.model_extra["previous_llm"] == previous
        assert raw.headers["x-gmtrouter-switch-cost"] == "0" and answer.model_extra["switch_cost"] == 0
        assert answer.choices[0].message.content == f"{answer.model} says: {SECOND}"
        assert "model" not in answer.model_extra["received"]["message_fields"]  # ours, not forwarded
    assert chosen == {m: m for m in LLMS}, chosen  # the same message, a different LLM after each first turn
    assert len(set(chosen.values())) == len(LLMS)

    chunks = list(
        client.chat.completions.create(model="auto", user=user, messages=chat((FIRST, "beta-llm")), stream=True)
    )
    assert {(c.model, c.model_extra["previous_llm"]) for c in chunks} == {("beta-llm", "beta-llm")}
    first_turn = client.chat.completions.with_raw_response.create(model="auto", user=user, messages=chat(last=FIRST))
    assert (
        "x-gmtrouter-previous-llm" not in first_turn.headers and first_turn.parse().model_extra["previous_llm"] is None
    )


def test_staying_saves_the_prompt_cache_where_the_llm_prices_it(service: Service) -> None:
    long_first = "Tell me everything about baking bread at home. " * 80  # ~1000 tokens of cached prefix
    for previous, saved in (("alpha-llm", True), ("beta-llm", False), (None, False)):
        ranking = service.route(f"{FREE}-21", chat((long_first, previous)))["ranking"]
        costs = {r["llm"]: r["expected_cost"] for r in ranking}
        for llm in LLMS:
            if llm == previous and saved:  # 1,000+ prefix tokens at 1 instead of 10 USD per 1M
                assert costs[llm] < COST[llm] - 0.009, costs
            else:
                assert costs[llm] == pytest.approx(COST[llm]), (previous, costs)


def test_switch_cost_keeps_the_previous_llm_for_a_user_who_is_not_sticky(service: Service) -> None:
    moves = (
        (user, previous, routed)
        for user in (f"{FREE}-{u}" for u in range(USERS // 2, USERS))
        for previous in LLMS
        if (routed := service.route(user, chat((FIRST, previous))))["llm"] != previous
    )
    found = next(moves, None)
    assert found is not None, "every user who is not sticky stayed with every previous LLM"
    user, previous, free = found
    assert free["previous_llm"] == previous and free["switch_cost"] == 0

    zero = service.route(user, chat((FIRST, previous)), switch_cost=0)
    assert zero["ranking"] == free["ranking"] and zero["switch_cost"] == 0

    kept = service.route(user, chat((FIRST, previous)), switch_cost=5)
    assert (kept["llm"], kept["previous_llm"], kept["switch_cost"]) == (previous, previous, 5)
    before = {r["llm"]: r["adjusted"] for r in free["ranking"]}
    after = {r["llm"]: r["adjusted"] for r in kept["ranking"]}
    assert after == pytest.approx({m: before[m] - (5 if m != previous else 0) for m in LLMS})

    raw = service.openai(user).chat.completions.with_raw_response.create(
        model="auto", user=user, messages=chat((FIRST, previous)), extra_body={"switch_cost": 5}
    )
    assert (raw.parse().model, raw.headers["x-gmtrouter-switch-cost"]) == (previous, "5")


def test_one_users_conversation_id_never_reaches_another_user(service: Service) -> None:
    a, b = f"{STICKY}-2", f"{STICKY}-3"
    alone = service.route(b, chat((FIRST, None)))
    forced = alone["ranking"][-1]["llm"]  # what b would take only after it answered the previous turn
    assert service.route(a, chat(last=FIRST), conversation="shared-id", candidates=[forced])["llm"] == forced
    assert service.route(a, chat((FIRST, None)), conversation="shared-id")["previous_llm"] == forced

    raw = service.openai(b).chat.completions.with_raw_response.create(
        model="auto", user=b, messages=chat((FIRST, None)), extra_body={"conversation": "shared-id"}
    )
    assert "x-gmtrouter-previous-llm" not in raw.headers and raw.parse().model == alone["llm"]
    # b's next turn follows b's own route in that conversation, never a's
    same_id = service.route(b, chat((FIRST, None), (SECOND, None)), conversation="shared-id")
    assert same_id["previous_llm"] == alone["llm"] != forced


def test_the_settings_refuse_a_bad_switch_cost_or_price_file(tmp_path: Path) -> None:
    assert load_config(None).switch_cost == 0 and load_config(None).prices is None
    for bad in (-1, float("inf"), 1e9, "high"):
        with pytest.raises(GmtError, match="setting 'switch_cost'"):
            load_config(None, switch_cost=bad)
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps(PRICES))
    assert cached_input_prices(prices) == {"alpha-llm": (10.0, 1.0)}
    with pytest.raises(GmtError, match="no such price file"):
        cached_input_prices(tmp_path / "missing.json")
    for text, words in (
        ("{not json", "not a price file"),
        ('{"alpha-llm": 3}', "not a price file"),
        ('{"alpha-llm": {"input": "ten", "cached_input": 1}}', "'alpha-llm': input and cached_input must be numbers"),
        ('{"alpha-llm": {"input": 10, "cached_input": -1}}', "must be numbers, 0 or more"),
    ):
        prices.write_text(text)
        with pytest.raises(GmtError, match=words):
            cached_input_prices(prices)


BAD = [
    ({"switch_cost": -1}, "switch_cost"),
    ({"switch_cost": "high"}, "switch_cost"),
    ({"switch_cost": 1e9}, "switch_cost"),
    ({"switch_cost": float("nan")}, "switch_cost"),
    ({"switch_cost": float("inf")}, "switch_cost"),
    ({"conversation": ""}, "conversation"),
    ({"conversation": "c" * 257}, "conversation"),
    ({"conversation": 7}, "conversation"),
    ({"messages": [*chat((FIRST, None))[:1], {"role": "assistant", "content": "x", "model": 5}]}, "messages.1.model"),
]


@pytest.mark.parametrize("path", ["/v1/route", "/v1/chat/completions"])
@pytest.mark.parametrize(("bad", "field"), BAD)
def test_bad_switch_cost_or_conversation_is_422_naming_it(service: Service, path: str, bad: dict, field: str) -> None:
    body = {"user": f"{FREE}-30", "messages": chat((FIRST, "alpha-llm")), **bad}
    if path.endswith("completions"):
        body["model"] = "auto"
    before = service.counts()
    answer = httpx.post(
        f"{service.base}{path}",
        content=json.dumps(body).encode(),  # NaN and Infinity as Python writes them
        headers={**ADMIN_HEADERS, "Content-Type": "application/json"},
        timeout=60,
    )
    assert answer.status_code == 422, answer.text
    detail = answer.json()["detail"]
    assert detail.startswith(f"{field}:") and len(detail.splitlines()) == 1, detail
    assert service.counts() == before


def test_the_openai_client_hears_which_field_was_bad(service: Service) -> None:
    client = service.openai(f"{FREE}-31")
    before = service.counts()
    for extra, field in (({"switch_cost": -0.5}, "switch_cost"), ({"conversation": "x" * 300}, "conversation")):
        with pytest.raises(openai.UnprocessableEntityError, match=field):
            client.chat.completions.create(model="auto", messages=chat(last=FIRST), extra_body=extra)
    assert service.counts() == before


def test_a_conversation_id_follows_what_the_service_routed_also_after_a_restart(service: Service) -> None:
    """Last in this module: it restarts the service, with a default switch cost."""
    user, conversation = f"{STICKY}-1", "trip-plan-1"
    first = service.route(user, chat(last=FIRST), conversation=conversation)
    assert first["previous_llm"] is None
    stayed = first["llm"]

    client = service.openai(user)
    raw = client.chat.completions.with_raw_response.create(
        model="auto", user=user, messages=chat((FIRST, None)), extra_body={"conversation": conversation}
    )
    second = raw.parse()
    assert (second.model, raw.headers["x-gmtrouter-previous-llm"]) == (stayed, stayed)

    thumbs = {"kind": "thumbs", "route_id": second.model_extra["route_id"], "thumbs": "up"}
    record = httpx.post(f"{service.base}/v1/feedback", json=thumbs, headers=ADMIN_HEADERS, timeout=60).json()["record"]
    assert record["previous_llm"] == stayed and record["turn"] == 2
    assert record["conversation"] == f"route/{second.model_extra['route_id']}"
    assert record["meta"]["conversation"] == conversation

    elsewhere = [m for m in LLMS if m != stayed]
    third = service.route(user, chat((FIRST, None), (SECOND, None)), conversation=conversation, candidates=elsewhere)
    assert third["previous_llm"] == stayed and third["llm"] in elsewhere
    moved = third["llm"]

    service.stop()
    service.start(switch_cost=0.5)
    fourth = service.route(user, chat((FIRST, None), (SECOND, None), ("And then?", None)), conversation=conversation)
    assert (fourth["previous_llm"], fourth["llm"], fourth["switch_cost"]) == (moved, moved, 0.5)
    with httpx.Client(base_url=service.base, timeout=60) as client:
        routes_written(client)
    store = Store(service.db)
    try:
        stored = store.get_route(fourth["route_id"])
    finally:
        store.close()
    assert (stored.conversation, stored.previous_llm, stored.switch_cost, stored.turn) == (conversation, moved, 0.5, 4)

    page = httpx.get(f"{service.base}/ui/decisions/{fourth['route_id']}", headers=ADMIN_HEADERS, timeout=60)
    assert f'id="previous-llm">{moved} (switch cost 0.5)' in page.text
    assert "<dt>cost weight</dt><dd>0</dd>" in page.text  # the switch cost is not mistaken for a cost weight
