import json
from pathlib import Path

import pytest

from gmtrouter.data.schema import Interaction, read_records, validate_items, write_records
from gmtrouter.utils.errors import DataError, GmtError
from tests.conftest import make_record

GOOD = {
    "user": "u1",
    "conversation": "c1",
    "turn": 1,
    "query": "hello?",
    "responses": [{"llm": "a", "rating": 1.0, "text": "hi", "cost": 0.01}, {"llm": "b", "rating": 0}],
}


def write_lines(path: Path, *objects: object) -> Path:
    path.write_text("".join((o if isinstance(o, str) else json.dumps(o)) + "\n" for o in objects))
    return path


def test_round_trip_keeps_response_order(tmp_path: Path) -> None:
    records = [
        make_record("u", "q", {"b": 0.0, "a": 1.0, "c": 0.5}),
        make_record("u", "q2", {"a": 0.5, "b": 0.5}),
    ]
    write_records(tmp_path / "r.jsonl", records)
    back = read_records(tmp_path / "r.jsonl")
    assert back == records
    assert back[0].llms == ["b", "a", "c"]


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"user": 5}, "user", "valid string"),
        ({"turn": 0}, "turn", "greater than or equal to 1"),
        ({"responses": []}, "responses", "at least 1"),
        ({"responses": [{"llm": "a", "rating": "high"}]}, "responses.0.rating", "valid number"),
        ({"responses": [{"llm": "a", "rating": True}]}, "responses.0.rating", "valid number"),
        ({"responses": [{"llm": "a", "rating": 1}, {"llm": "a", "rating": 0}]}, "responses", "answers twice"),
        ({"responses": [{"llm": "a", "rating": 1, "cost": -1}]}, "responses.0.cost", "greater than or equal"),
        ({"score": 3}, "score", "not a field"),
        ({"query": "   "}, "", "blank"),
    ],
)
def test_bad_record_names_line_and_field(tmp_path: Path, change: dict, field: str, message: str) -> None:
    bad = {k: v for k, v in {**GOOD, **change}.items() if v is not None}
    path = write_lines(tmp_path / "r.jsonl", GOOD, bad)
    with pytest.raises(DataError) as caught:
        read_records(path)
    assert caught.value.line == 2
    assert (caught.value.field or "") == field
    assert message in str(caught.value)
    assert str(caught.value).startswith(f"{path}:2")


def test_missing_field_is_named(tmp_path: Path) -> None:
    bad = {k: v for k, v in GOOD.items() if k != "query"}
    with pytest.raises(DataError, match="'query': is required but missing"):
        read_records(write_lines(tmp_path / "r.jsonl", bad))


def test_invalid_json_and_empty_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r":1: is not valid JSON"):
        read_records(write_lines(tmp_path / "r.jsonl", "{not json"))
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(GmtError, match="empty"):
        read_records(tmp_path / "empty.jsonl")
    with pytest.raises(GmtError, match="no such file"):
        read_records(tmp_path / "missing.jsonl")


def test_validate_reports_every_bad_line(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "r.jsonl", GOOD, {"user": "x"}, "[]", {**GOOD, "turn": "two"})
    good, errors = validate_items(path, Interaction)
    assert good == 1
    assert [e.line for e in errors] == [2, 3, 4]


def test_conversation_rules(tmp_path: Path) -> None:
    other_user = {**GOOD, "user": "u2", "turn": 2}
    with pytest.raises(DataError, match="belongs to users 'u1' and 'u2'"):
        read_records(write_lines(tmp_path / "a.jsonl", GOOD, other_user))
    with pytest.raises(DataError, match="has turn 1 twice"):
        read_records(write_lines(tmp_path / "b.jsonl", GOOD, GOOD))


def test_failed_write_leaves_no_file(tmp_path: Path) -> None:
    def records():
        yield make_record("u", "q", {"a": 1.0, "b": 0.0})
        raise RuntimeError("source broke")

    with pytest.raises(RuntimeError):
        write_records(tmp_path / "out.jsonl", records())
    assert list(tmp_path.iterdir()) == []
