"""gmtrouter inside a real LiteLLM Router: three deployments on the MT-Bench replay upstream, routed by a real
`gmtrouter serve` (or a Router in this process), feedback through LiteLLM's callback, and LiteLLM carrying on when
gmtrouter is down."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no download of LiteLLM's price list at import

import httpx
import litellm
import pytest

from gmtrouter.api import Router
from gmtrouter.integrations.client import ServiceClient
from gmtrouter.integrations.litellm import GmtRouting
from gmtrouter.integrations.local import LocalClient
from gmtrouter.utils.errors import GmtError
from tests.conftest import REPO
from tests.serve_support import ADMIN, free_port, served_model, server, upstream_process  # noqa: F401

pytestmark = pytest.mark.slow

HAWAII = (
    "Compose an engaging travel blog post about a recent trip to Hawaii, "
    "highlighting cultural experiences and must-see attractions."
)
CHAT = [{"role": "user", "content": HAWAII}]
DEPLOYED = ("gpt-4", "claude-v1", "vicuna-13b-v1.2")  # taste-3 likes gpt-4 best, taste-1 claude-v1 (serve_support)
LOG = "gmtrouter.integrations.litellm"


@pytest.fixture(scope="module")
def replay_url(data_dir: Path) -> Iterator[str]:
    args = [sys.executable, "-m", "gmtrouter", "serve", "replay-upstream", "--data-dir", str(data_dir / "mt_bench")]
    with upstream_process(args) as url:
        yield url


@pytest.fixture(scope="module")
def service(served_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:  # noqa: F811
    with server(served_model, f"sqlite:///{tmp_path_factory.mktemp('litellm') / 'g.db'}") as base:
        yield base


def deployments(replay_url: str, models: tuple[str, ...] = DEPLOYED, broken: tuple[str, ...] = ()) -> list[dict]:
    """One LiteLLM deployment per LLM in group 'auto'; those in `broken` point at a port nobody listens on."""
    dead = f"http://127.0.0.1:{free_port()}/v1"
    return [
        {
            "model_name": "auto",
            "litellm_params": {"model": f"openai/{m}", "api_base": dead if m in broken else replay_url, "api_key": "-"},
        }
        for m in models
    ]


def litellm_router(model_list: list[dict], gmt: GmtRouting, way: str) -> litellm.Router:
    """A LiteLLM Router that asks gmtrouter through its routing plugin or as its custom routing strategy."""
    if way == "plugin":
        router = litellm.Router(model_list=model_list, plugins=[gmt.plugin], num_retries=0)
    else:
        router = litellm.Router(model_list=model_list, num_retries=0)
        router.register_plugin(gmt.strategy(router))
    return router


@pytest.fixture
def callback() -> Iterator[list]:
    """LiteLLM's global callbacks; those a test adds are removed after it, from every list LiteLLM copied them to."""
    before = list(litellm.callbacks)
    yield litellm.callbacks
    for added in [c for c in litellm.callbacks if c not in before]:
        litellm.logging_callback_manager.remove_callback_from_all_lists(added)


def ask(router: litellm.Router, user: str, way: str):
    """One chat completion to the 'auto' group; the plugin reads the user from metadata, the strategy from `user`."""
    extra = {"metadata": {"user": user}} if way == "plugin" else {"user": user}

    async def completion_and_its_logging():
        answer = await router.acompletion(model="auto", messages=CHAT, **extra)
        await asyncio.gather(*(task for task in asyncio.all_tasks() if task is not asyncio.current_task()))
        return answer

    return asyncio.run(completion_and_its_logging())


def ranking(base: str, user: str) -> list[dict]:
    """gmtrouter's own ranking of the deployed LLMs for this user (the service, asked directly)."""
    body = {"user": user, "messages": CHAT, "candidates": list(DEPLOYED)}
    answer = httpx.post(f"{base}/v1/route", json=body, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=60)
    assert answer.status_code == 200, answer.text
    return answer.json()["ranking"]


@pytest.mark.parametrize("way", ["plugin", "strategy"])
def test_routes_follow_gmtrouters_ranking_per_user(replay_url, service, callback, way) -> None:
    gmt = GmtRouting(ServiceClient(service, ADMIN, timeout=30))
    callback.append(gmt.callback)
    router = litellm_router(deployments(replay_url), gmt, way)
    chosen = {}
    for user in ("taste-1", "taste-3"):
        answer = ask(router, user, way)
        chosen[user] = answer.model
        assert answer.model == ranking(service, user)[0]["llm"], user  # the replay answers as the deployed LLM
        headers = asyncio.run(gmt.callback.async_post_call_response_headers_hook({}, None, answer))
        assert headers is not None and headers["x-gmtrouter-llm"] == answer.model  # what a proxy client sees
    assert chosen["taste-1"] != chosen["taste-3"], chosen  # two histories, two routes
    if way == "strategy":  # LiteLLM's synchronous calls take the strategy's sync pick
        answer = router.completion(model="auto", messages=CHAT, user="taste-1")
        assert answer.model == chosen["taste-1"]


@pytest.mark.parametrize("backend", ["service", "in-process"])
def test_thumbs_down_through_the_callback_moves_the_next_route(replay_url, service, served_model, callback, backend):  # noqa: F811
    user = f"newcomer-{backend}"
    client = (
        ServiceClient(service, ADMIN, timeout=30) if backend == "service" else LocalClient(Router.load(served_model))
    )
    gmt = GmtRouting(client)
    callback.append(gmt.callback)
    router = litellm_router(deployments(replay_url), gmt, "plugin")
    answer = ask(router, user, "plugin")
    first, downs = answer.model, 0
    while answer.model == first:
        assert downs < 8, f"eight thumbs down on {first} never moved {user} away from it"
        assert gmt.feedback(answer, thumbs="down") is True
        downs += 1
        answer = ask(router, user, "plugin")
    assert answer.model in DEPLOYED
    with pytest.raises(GmtError, match="was not routed by gmtrouter"):
        gmt.feedback("chatcmpl-unknown", thumbs="up")


@pytest.mark.parametrize("way", ["plugin", "strategy"])
def test_gmtrouter_down_leaves_the_pick_to_litellm(replay_url, callback, caplog, way) -> None:
    gmt = GmtRouting(ServiceClient(f"http://127.0.0.1:{free_port()}", ADMIN, timeout=2))
    callback.append(gmt.callback)
    router = litellm_router(deployments(replay_url), gmt, way)
    with caplog.at_level(logging.WARNING, logger=LOG):
        answers = {ask(router, "taste-1", way).model for _ in range(3)}
    assert answers <= set(DEPLOYED)  # answered, by LiteLLM's own pick
    warned = [r.getMessage() for r in caplog.records if r.name == LOG]
    assert any("gmtrouter could not route" in m and "LiteLLM's own strategy picks" in m for m in warned), warned
    assert len(warned) == 1  # once a minute, not once a request


def test_feedback_waits_while_gmtrouter_is_down_and_arrives_after(replay_url, service, callback, caplog) -> None:
    client = ServiceClient(service, ADMIN, timeout=30)
    gmt = GmtRouting(client)
    callback.append(gmt.callback)
    router = litellm_router(deployments(replay_url), gmt, "plugin")
    answer = ask(router, "patient-user", "plugin")
    client.url = f"http://127.0.0.1:{free_port()}"  # gmtrouter goes away
    with caplog.at_level(logging.WARNING, logger=LOG):
        assert gmt.feedback(answer, thumbs="up") is False
    assert len(gmt.callback.pending) == 1 and "feedback kept" in caplog.text
    client.url = service  # and comes back: the kept feedback goes first, then the new one
    assert gmt.callback.flush() == 0
    stored = httpx.get(f"{service}/v1/users/patient-user", headers={"Authorization": f"Bearer {ADMIN}"}).json()
    assert stored["stored_feedback"] == 1


def test_unknown_deployment_is_named_and_never_picked(replay_url, service, callback, caplog) -> None:
    gmt = GmtRouting(ServiceClient(service, ADMIN, timeout=30), llms={"openai/house-model": "house-model"})
    router = litellm_router(deployments(replay_url, (*DEPLOYED, "house-model")), gmt, "plugin")
    with caplog.at_level(logging.WARNING, logger=LOG):
        answers = [ask(router, user, "plugin").model for user in ("taste-1", "taste-3", "taste-1")]
    assert set(answers) <= set(DEPLOYED)
    warned = [r.getMessage() for r in caplog.records if r.name == LOG]
    assert len(warned) == 1 and "'house-model'" in warned[0] and "'llms' table" in warned[0], warned


def test_a_failed_deployment_is_a_thumbs_down_and_the_retry_goes_elsewhere(replay_url, service, callback) -> None:
    """taste-1's favourite, claude-v1, is unreachable: its failure is fed back, and LiteLLM's retry is routed by
    gmtrouter among the LLMs this request has not tried."""
    gmt = GmtRouting(ServiceClient(service, ADMIN, timeout=30))
    callback.append(gmt.callback)
    router = litellm.Router(model_list=deployments(replay_url, broken=("claude-v1",)), plugins=[gmt.plugin])
    headers = {"Authorization": f"Bearer {ADMIN}"}
    before = httpx.get(f"{service}/v1/users/taste-1", headers=headers).json()
    assert ranking(service, "taste-1")[0]["llm"] == "claude-v1"
    answer = ask(router, "taste-1", "plugin")
    assert answer.model in DEPLOYED and answer.model != "claude-v1"
    after = httpx.get(f"{service}/v1/users/taste-1", headers=headers).json()
    assert after["stored_feedback"] == before["stored_feedback"] + 1  # the failed attempt's thumbs down


def test_the_proxy_config_example_resolves_with_litellms_own_loader(monkeypatch) -> None:
    """examples/litellm/config.yaml names the plugin and the callback as the proxy loads them (`get_instance_fn`),
    and both come from one GmtRouting built from examples/litellm/gmtrouter.yaml."""
    import importlib

    import yaml
    from litellm.integrations.custom_logger import CustomLogger
    from litellm.proxy.types_utils.utils import get_instance_fn
    from litellm.types.router import RoutingPlugin

    example = REPO / "examples" / "litellm"
    config = yaml.safe_load((example / "config.yaml").read_text())
    monkeypatch.setenv("GMTROUTER_LITELLM_SETTINGS", str(example / "gmtrouter.yaml"))
    monkeypatch.setenv("GMTROUTER_API_KEY", "gmt_example_key")
    sys.modules.pop("gmtrouter.integrations.litellm_proxy", None)
    (plugin_path,) = config["router_settings"]["plugins"]
    (callback_path,) = config["litellm_settings"]["callbacks"]
    plugin = get_instance_fn(plugin_path, config_file_path=str(example / "config.yaml"))
    callback = get_instance_fn(callback_path, config_file_path=str(example / "config.yaml"))
    assert isinstance(plugin, RoutingPlugin) and isinstance(callback, CustomLogger)
    assert plugin.routing is callback.routing
    assert plugin.routing.llm_of("anthropic/claude-3-5-sonnet-20240620") == "claude-3-5-sonnet"
    assert plugin.routing.model_groups == {"auto"}
    monkeypatch.delenv("GMTROUTER_LITELLM_SETTINGS")
    sys.modules.pop("gmtrouter.integrations.litellm_proxy", None)
    with pytest.raises(GmtError, match="set GMTROUTER_LITELLM_SETTINGS"):
        importlib.import_module("gmtrouter.integrations.litellm_proxy")


def test_bad_settings_are_one_line_naming_the_setting(tmp_path: Path) -> None:
    from gmtrouter.integrations.litellm import Settings

    bad = tmp_path / "gmtrouter.yaml"
    bad.write_text("url: http://127.0.0.1:8000\ntimeout: -1\n")
    with pytest.raises(GmtError, match=r"gmtrouter.yaml: 'timeout': Input should be greater than 0"):
        Settings.read(bad)
    bad.write_text("url: http://127.0.0.1:8000\nllm: {a: b}\n")
    with pytest.raises(GmtError, match="'llm': Extra inputs are not permitted"):
        Settings.read(bad)
    with pytest.raises(GmtError, match="give either 'url'"):
        GmtRouting.from_settings(llms={})
