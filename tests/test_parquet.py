"""Records in Parquet: the same records as JSONL, the same one-line errors, and every command that reads records."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gmtrouter.data.columnar import SCHEMA
from gmtrouter.data.schema import Interaction, Response, read_records, validate_items, write_records
from gmtrouter.utils.errors import DataError, GmtError
from tests.cli_support import assert_one_line_error, in_child
from tests.conftest import FIXTURES

letters = st.characters(codec="utf-8", exclude_categories=["Cs"], exclude_characters="\x00")  # the contract's text
names = st.text(letters, min_size=1, max_size=8)
responses = st.lists(
    st.builds(
        Response,
        llm=st.sampled_from(["a", "b", "c"]),
        rating=st.floats(-5, 5, allow_nan=False),
        text=st.one_of(st.none(), st.text(letters, max_size=20)),
        cost=st.one_of(st.none(), st.floats(0, 1)),
        tokens=st.one_of(st.none(), st.integers(0, 10_000)),
    ),
    min_size=1,
    max_size=3,
    unique_by=lambda r: r.llm,
)
records = st.builds(
    Interaction,
    user=names,
    conversation=names,
    turn=st.integers(1, 50),
    query=names.filter(lambda q: q.strip() != ""),
    responses=responses,
    timestamp=st.one_of(st.none(), st.floats(0, 2e9)),
    previous_llm=st.one_of(st.none(), st.sampled_from(["a", "b"])),
    meta=st.dictionaries(st.sampled_from(["source", "n", "tags"]), st.integers() | st.text(letters, max_size=5)),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.lists(records, min_size=1, max_size=6, unique_by=lambda r: (r.conversation, r.turn)))
def test_parquet_round_trip_is_the_jsonl_round_trip(tmp_path: Path, batch: list[Interaction]) -> None:
    owners = {r.conversation: r.user for r in batch}
    batch = [r.model_copy(update={"user": owners[r.conversation]}) for r in batch]  # one user a conversation
    write_records(tmp_path / "r.parquet", batch)
    write_records(tmp_path / "r.jsonl", batch)
    assert read_records(tmp_path / "r.parquet") == read_records(tmp_path / "r.jsonl") == batch


def test_mt_bench_votes_survive_parquet(tmp_path: Path, data_dir: Path) -> None:
    from gmtrouter.data.loaders import prepare

    mt_bench_records = prepare("mt-bench", data_dir / "mt_bench")
    write_records(tmp_path / "mt.parquet", mt_bench_records)
    assert read_records(tmp_path / "mt.parquet") == mt_bench_records
    assert (tmp_path / "mt.parquet").stat().st_size < 0.5 * len(
        "".join(r.model_dump_json(exclude_none=True) + "\n" for r in mt_bench_records)
    )


def _table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=SCHEMA)


GOOD = {
    "user": "u",
    "conversation": "c",
    "turn": 1,
    "query": "q?",
    "responses": [{"llm": "a", "rating": 1.0}, {"llm": "b", "rating": 0.0}],
}


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"turn": 0}, "turn", "greater than or equal to 1"),
        ({"responses": []}, "responses", "at least 1"),
        ({"responses": [{"llm": "a", "rating": float("nan")}]}, "responses.0.rating", "finite"),
        ({"responses": [{"llm": "a", "rating": 1.0}, {"llm": "a", "rating": 0.0}]}, "responses", "answers twice"),
        ({"user": None}, "user", "required"),
        ({"meta": "{not json"}, "meta", "JSON object"),
    ],
)
def test_a_bad_row_is_named_by_its_number_and_field(tmp_path: Path, change: dict, field: str, message: str) -> None:
    path = tmp_path / "r.parquet"
    pq.write_table(_table([GOOD, {**GOOD, "conversation": "c2", **change}]), path)
    with pytest.raises(DataError) as caught:
        read_records(path)
    assert caught.value.line == 2 and (caught.value.field or "") == field
    assert message in str(caught.value)
    good, errors = validate_items(path, Interaction)
    assert good == 1 and len(errors) == 1


@pytest.mark.parametrize(
    ("table", "words"),
    [
        (pa.table({"user": ["u"], "query": ["q"]}), ["has no column(s) conversation, turn, responses"]),
        (_table([GOOD]).append_column("score", pa.array([3])), ["has column(s) score", "meta"]),
    ],
)
def test_a_file_with_other_columns_is_refused_whole(tmp_path: Path, table: pa.Table, words: list[str]) -> None:
    path = tmp_path / "r.parquet"
    pq.write_table(table, path)
    with pytest.raises(GmtError) as caught:
        read_records(path)
    for word in words:
        assert word in str(caught.value)


def test_commands_read_and_write_parquet(tmp_path: Path) -> None:
    logs = tmp_path / "logs.parquet"
    result = in_child("data", "prepare", "openai-logs", "--data-dir", str(FIXTURES / "openai_logs"), "-o", str(logs))
    assert result.returncode == 0, result.stderr
    assert read_records(logs) == read_records(_prepared_jsonl(tmp_path))
    assert in_child("data", "validate", str(logs)).returncode == 0
    split = in_child("data", "split", str(logs), "--by", "record", "-o", str(tmp_path / "split"))
    assert split.returncode == 0, split.stderr
    assert len(read_records(tmp_path / "split" / "train.jsonl")) + len(
        read_records(tmp_path / "split" / "test.jsonl")
    ) == len(read_records(logs))
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 not really")
    assert_one_line_error(in_child("data", "stats", str(tmp_path / "broken.parquet")), "not a readable Parquet file")
    matrix = in_child("data", "prepare", "llmrouter", "--data-dir", str(tmp_path), "-o", str(tmp_path / "m.parquet"))
    assert_one_line_error(matrix, "written as JSONL")


def _prepared_jsonl(tmp_path: Path) -> Path:
    path = tmp_path / "logs.jsonl"
    assert (
        in_child(
            "data", "prepare", "openai-logs", "--data-dir", str(FIXTURES / "openai_logs"), "-o", str(path)
        ).returncode
        == 0
    )
    return path
