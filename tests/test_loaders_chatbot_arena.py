"""Chatbot Arena: battles in the upstream schema become one record per user turn."""

import json
import shutil
import sys
from pathlib import Path

import pytest

from gmtrouter.data.loaders import prepare
from gmtrouter.data.prices import estimate_tokens
from gmtrouter.evaluation.stats import record_stats
from gmtrouter.utils.errors import DataError, GmtError
from tests.cli_support import assert_one_line_error, in_child
from tests.conftest import FIXTURES

ARENA = FIXTURES / "chatbot_arena"
BATTLES = json.loads((ARENA / "battles.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def records():
    return prepare("chatbot-arena", ARENA / "battles.jsonl")


def test_both_file_forms_agree(records, tmp_path: Path) -> None:
    assert prepare("chatbot-arena", ARENA / "battles.json") == records
    shutil.copy(ARENA / "battles.json", tmp_path)
    shutil.copytree(FIXTURES / "prices", tmp_path / "prices")
    assert prepare("chatbot-arena", tmp_path) == records


def test_one_record_per_user_turn(records) -> None:
    # Battles of 1, 3, 2 and 1 user turns.
    assert [(r.conversation.removeprefix("chatbot_arena/")[:4], r.turn) for r in records] == [
        ("5f1b", 1),
        ("a0b1", 1),
        ("a0b1", 2),
        ("a0b1", 3),
        ("0c1d", 1),
        ("0c1d", 2),
        ("9e8d", 1),
    ]
    stats = record_stats(records)
    assert (stats["users"], stats["conversations"], stats["multi_turn_records"]) == (3, 4, 3)
    assert stats["ties"] == 5 and stats["rated_pairs"] == 2


def test_turns_pair_each_sides_answer(records) -> None:
    battle = BATTLES[1]
    for record in records[1:4]:
        t = record.turn
        assert record.user == "arena_user_202"
        assert record.query == battle["conversation_a"][2 * t - 2]["content"]
        assert record.llms == ["claude-v1", "gpt-3.5-turbo"]
        assert [r.text for r in record.responses] == [
            battle["conversation_a"][2 * t - 1]["content"],
            battle["conversation_b"][2 * t - 1]["content"],
        ]
        assert record.ratings == [0.5, 0.5]
        assert record.timestamp == battle["tstamp"]


def test_winner_order_and_costs(records) -> None:
    first, last = records[0], records[-1]
    assert first.llms == ["gpt-4", "vicuna-13b"] and first.ratings == [1.0, 0.0]
    # model_b won: the order stays (model_a, model_b); it is never sorted by rating.
    assert last.llms == ["vicuna-13b", "gpt-4"] and last.ratings == [0.0, 1.0]
    gpt4 = first.responses[0]
    assert gpt4.cost == pytest.approx((estimate_tokens(first.query) * 30 + gpt4.tokens * 60) / 1e6)
    # No price for vicuna in the fixture's price list: the cost is left out, not guessed.
    assert first.responses[1].cost is None and first.responses[1].tokens > 0
    assert records[4].meta == {
        "source": "chatbot_arena",
        "question_id": BATTLES[2]["question_id"],
        "language": "German",
        "anony": False,
    }


def write_battles(path: Path, battles: list) -> Path:
    path.write_text("".join(json.dumps(b) + "\n" for b in battles), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("change", "where", "message"),
    [
        (lambda b: b.pop("winner"), ":2: field 'winner'", "is required but missing"),
        (lambda b: b.update(winner="model_c"), ":2: field 'winner'", "'model_c' is not one of"),
        (lambda b: b["conversation_b"].pop(), ":2: field 'conversation_b'", "ends with a user message"),
        (
            lambda b: b["conversation_b"][0].update(content="another question"),
            ":2: field 'conversation_b[0].content'",
            "differs from conversation_a's turn 1",
        ),
        (
            lambda b: b["conversation_a"][0].update(role="assistant"),
            ":2: field 'conversation_a[0].role'",
            "is 'assistant' where a 'user' message belongs",
        ),
        (lambda b: b.update(model_b=b["model_a"]), ":2: field 'responses'", "answers twice"),
        (
            lambda b: b.update(question_id=BATTLES[0]["question_id"]),
            ":2: field 'question_id'",
            "also battle 1",
        ),
    ],
)
def test_bad_battle_names_line_and_field(tmp_path: Path, change, where: str, message: str) -> None:
    battles = json.loads(json.dumps(BATTLES[:2]))
    change(battles[1])
    path = write_battles(tmp_path / "battles.jsonl", battles)
    with pytest.raises(DataError) as error:
        prepare("chatbot-arena", path)
    assert str(error.value).startswith(f"{path}{where}: ")
    assert message in str(error.value)


def test_bad_list_entry_names_its_index(tmp_path: Path) -> None:
    battles = json.loads(json.dumps(BATTLES))
    battles[2]["judge"] = ""
    path = tmp_path / "battles.json"
    path.write_text(json.dumps(battles))
    with pytest.raises(DataError, match=r"battles\.json: field '\[2\]\.judge': must be a non-empty string"):
        prepare("chatbot-arena", path)


def test_folders_without_one_battle_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(GmtError, match=r"no \.jsonl, \.json or \.parquet file"):
        prepare("chatbot-arena", tmp_path)
    with pytest.raises(GmtError, match="holds several battle files"):
        prepare("chatbot-arena", ARENA)
    parquet = tmp_path / "train.parquet"
    parquet.write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(GmtError, match="reading parquet needs pyarrow"):
        prepare("chatbot-arena", parquet)


def test_hub_source_offline_says_what_to_do(tmp_path: Path) -> None:
    output = tmp_path / "arena.jsonl"
    result = in_child(
        "data",
        "prepare",
        "chatbot-arena",
        "--data-dir",
        "hf:lmsys/chatbot_arena_conversations",
        "-o",
        str(output),
    )
    assert_one_line_error(result, "hf:lmsys/chatbot_arena_conversations", "--data-dir")
    assert not output.exists()
    result = in_child("data", "prepare", "gsm8k", "--data-dir", "hf:openai/gsm8k", "-o", str(output))
    assert_one_line_error(result, "'gsm8k' is read from local files only")
