"""The replay upstream as a newcomer uses it: its own process, the OpenAI client, and behind the router with the
shipped config example (examples/replay-upstream.toml)."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import REPO
from tests.serve_support import ADMIN, served_model, server, upstream_process  # noqa: F401

pytestmark = pytest.mark.slow


def replay(data_dir: Path) -> contextlib.AbstractContextManager[str]:
    """`gmtrouter serve replay-upstream` on a free port; yields its /v1 URL."""
    args = [sys.executable, "-m", "gmtrouter", "serve", "replay-upstream", "--data-dir", str(data_dir / "mt_bench")]
    return upstream_process(args)


def recorded(data_dir: Path, model: str, question_id: int) -> list[str]:
    for line in (data_dir / "mt_bench" / "model_answer" / f"{model}.jsonl").read_text().splitlines():
        item = json.loads(line)
        if item["question_id"] == question_id:
            return item["choices"][0]["turns"]
    raise AssertionError(f"no answer of {model} to {question_id}")


HAWAII = (
    "Compose an engaging travel blog post about a recent trip to Hawaii, "
    "highlighting cultural experiences and must-see attractions."
)


def test_replay_answers_with_the_recorded_answers(data_dir: Path) -> None:
    with replay(data_dir) as url:
        client = openai.OpenAI(base_url=url, api_key="not-needed", max_retries=0)
        answer = client.chat.completions.create(model="claude-v1", messages=[{"role": "user", "content": HAWAII}])
        first, second = recorded(data_dir, "claude-v1", 81)
        assert answer.choices[0].message.content == first
        assert answer.system_fingerprint == "mt-bench-replay" and answer.id.startswith("replay-")
        follow_up = [
            {"role": "user", "content": HAWAII},
            {"role": "assistant", "content": first},
            {"role": "user", "content": "Rewrite your previous response. Start every sentence with the letter A."},
        ]
        streamed = client.chat.completions.create(model="claude-v1", messages=follow_up, stream=True)
        assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == second
        with pytest.raises(openai.NotFoundError, match="only the 80 MT-Bench questions"):
            client.chat.completions.create(model="gpt-4", messages=[{"role": "user", "content": "Plan a day in Rome"}])
        with pytest.raises(openai.NotFoundError, match="no recorded answers of model 'gpt-5'"):
            client.chat.completions.create(model="gpt-5", messages=[{"role": "user", "content": HAWAII}])
        assert len(httpx.get(f"{url}/questions").json()) == 80


def test_the_router_in_front_of_the_replay_with_the_example_config(
    data_dir: Path,
    served_model: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    with replay(data_dir) as url:
        example = (REPO / "examples" / "replay-upstream.toml").read_text()
        assert example.count("http://127.0.0.1:9000/v1") == 6
        config = tmp_path / "replay.toml"
        config.write_text(example.replace("http://127.0.0.1:9000/v1", url))
        with server(served_model, f"sqlite:///{tmp_path / 'r.db'}", config) as base:
            made = httpx.post(
                f"{base}/v1/admin/keys", json={"users": ["expert_12"]}, headers={"Authorization": f"Bearer {ADMIN}"}
            )
            client = openai.OpenAI(base_url=f"{base}/v1", api_key=made.json()["key"], max_retries=0)
            answer = client.chat.completions.create(
                model="auto", user="expert_12", messages=[{"role": "user", "content": HAWAII}]
            )
            assert answer.choices[0].message.content == recorded(data_dir, answer.model, 81)[0]
