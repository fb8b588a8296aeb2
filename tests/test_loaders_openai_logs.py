"""OpenAI-style chat logs: rated user turns become records; unrated ones are context."""

import json
from pathlib import Path

import pytest

from gmtrouter.data.loaders import prepare
from gmtrouter.data.prices import estimate_tokens
from gmtrouter.utils.errors import DataError, GmtError
from tests.conftest import FIXTURES

LOGS = FIXTURES / "openai_logs" / "logs.jsonl"


@pytest.fixture(scope="module")
def records():
    return prepare("openai-logs", LOGS)


def test_rated_turns_only_with_turn_numbers_kept(records) -> None:
    assert [(r.user, r.conversation, r.turn) for r in records] == [
        ("u1", "c-100", 1),
        ("u1", "c-100", 3),
        ("u2", "logs.jsonl:2", 1),
        ("u2", "logs.jsonl:2", 2),
        ("u1", "c-101", 1),
    ]
    assert prepare("openai-logs", LOGS.parent) == records


def test_each_record_names_the_model_that_answered_the_turn_before(records) -> None:
    """An unrated answer is still the answer the conversation went on from."""
    assert [r.previous_llm for r in records] == [None, "gpt-4o", None, "gpt-4o-mini", None]


def test_feedback_kinds(records) -> None:
    thumbs_up, preferred, stars, thumbs_down, rated = records
    assert (thumbs_up.llms, thumbs_up.ratings) == (["gpt-4o"], [1.0])
    assert (preferred.llms, preferred.ratings) == (["gpt-4o", "gpt-4o-mini"], [0.0, 1.0])
    assert preferred.query == "Which is faster for a million items?"
    assert (stars.ratings, thumbs_down.ratings) == ([4.0], [0.0])
    assert stars.query == "Translate 'good morning' into French."
    assert rated.llms == ["claude-3-haiku", "gpt-4o", "gpt-4o-mini"]
    assert rated.ratings == [2.0, 5.0, 5.0]
    assert rated.meta == {"app": "helpdesk", "source": "openai_logs"}


def test_tokens_and_costs(records) -> None:
    thumbs_up, preferred, stars, _, rated = records
    # usage given: 25 prompt and 40 completion tokens at gpt-4o's $2.5/$10 per 1M.
    assert thumbs_up.responses[0].tokens == 40
    assert thumbs_up.responses[0].cost == pytest.approx((25 * 2.5 + 40 * 10) / 1e6)
    # No usage: the query is the input and the answer the output, both estimated.
    mini = preferred.responses[1]
    assert mini.tokens == estimate_tokens(mini.text)
    assert mini.cost == pytest.approx((estimate_tokens(preferred.query) * 0.15 + mini.tokens * 0.6) / 1e6)
    assert rated.responses[0].cost is None  # claude-3-haiku has no price here: left out, not guessed
    assert (thumbs_up.timestamp, stars.timestamp) == (1700000000.0, 1700000500.5)


def conversation(*messages: dict, **fields) -> dict:
    return {"user": "u", "messages": list(messages), **fields}


USER = {"role": "user", "content": "q"}
THUMBS_UP = {"role": "assistant", "model": "m", "content": "a", "feedback": "up"}


@pytest.mark.parametrize(
    ("item", "field", "message"),
    [
        (
            conversation(USER, {**THUMBS_UP, "feedback": "meh"}),
            "messages[1].feedback",
            "'meh' is not a number or a thumb",
        ),
        (conversation(USER, {**THUMBS_UP, "feedback": True}), "messages[1].feedback", "True is not a number"),
        (conversation(THUMBS_UP, USER), "messages[0].role", "an assistant message before any user message"),
        (conversation(USER, THUMBS_UP, THUMBS_UP), "messages[2].role", "after another assistant message"),
        (conversation(USER, USER, THUMBS_UP), "messages[1].role", "a second user message in a row"),
        (
            conversation(USER, THUMBS_UP, {"role": "tool", "content": "{}"}),
            "messages[2].role",
            "'tool' is not one of user, assistant, system, developer",
        ),
        (conversation(USER, {**THUMBS_UP, "model": None}), "messages[1].model", "is required"),
        (
            conversation(USER, {**THUMBS_UP, "usage": {"prompt_tokens": 3}}),
            "messages[1].usage",
            "completion_tokens",
        ),
        (
            conversation(
                USER,
                {
                    "role": "assistant",
                    "candidates": [{"model": "a", "content": "x"}, {"model": "b"}],
                    "preferred": "c",
                },
            ),
            "messages[1].preferred",
            "'c' is none of the candidates' models",
        ),
        (
            conversation(
                USER,
                {
                    "role": "assistant",
                    "candidates": [{"model": "a", "rating": 1}, {"model": "b", "content": "y"}],
                },
            ),
            "messages[1].candidates[1].rating",
            "rate every candidate or none",
        ),
        (
            conversation(
                USER,
                {
                    "role": "assistant",
                    "candidates": [{"model": "a", "rating": 1}, {"model": "a", "rating": 0}],
                },
            ),
            "responses",
            "answers twice",
        ),
        (conversation(USER, THUMBS_UP, meta="x"), "meta", "must be an object"),
        ({"messages": [USER, THUMBS_UP]}, "user", "is required"),
    ],
)
def test_bad_line_names_file_line_and_field(tmp_path: Path, item: dict, field: str, message: str) -> None:
    path = tmp_path / "logs.jsonl"
    path.write_text(json.dumps(conversation(USER, THUMBS_UP)) + "\n\n" + json.dumps(item) + "\n")
    with pytest.raises(DataError) as error:
        prepare("openai-logs", path)
    assert str(error.value).startswith(f"{path}:3: field '{field}': ")
    assert message in str(error.value)


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(GmtError, match=r"no \.jsonl log files"):
        prepare("openai-logs", tmp_path)
    path = tmp_path / "logs.jsonl"
    path.write_text(json.dumps(conversation(USER, {**THUMBS_UP, "feedback": None})) + "\n")
    with pytest.raises(GmtError, match="no user turn has feedback"):
        prepare("openai-logs", path)
    line = json.dumps(conversation(USER, THUMBS_UP, conversation="c"))
    path.write_text(f"{line}\n{line}\n")
    with pytest.raises(DataError, match=r"logs\.jsonl:2: field 'conversation': 'c' is also on logs\.jsonl:1"):
        prepare("openai-logs", path)
    path.write_text("{not json\n")
    with pytest.raises(DataError, match=r"logs\.jsonl:1: is not valid JSON"):
        prepare("openai-logs", path)
