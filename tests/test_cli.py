"""The command line as a user meets it: real subprocesses (in this process where a test calls it many
times: `tests.cli_support`), one-line errors, no partial files."""

import json
from pathlib import Path

from tests.cli_support import assert_one_line_error, in_child, in_process


def test_prepare_stats_validate_split(tmp_path: Path, data_dir: Path) -> None:
    records = tmp_path / "mt.jsonl"
    assert (
        in_child("data", "prepare", "mt-bench", "--data-dir", str(data_dir / "mt_bench"), "-o", str(records)).returncode
        == 0
    )
    stats = json.loads(in_child("data", "stats", str(records), "--json").stdout)
    assert (stats["records"], stats["users"], stats["llms"], stats["ties"]) == (1689, 65, 6, 405)
    assert in_child("data", "validate", str(records)).returncode == 0
    result = in_child(
        "data",
        "split",
        str(records),
        "--by",
        "user",
        "--test-frac",
        "0.2",
        "--seed",
        "0",
        "-o",
        str(tmp_path / "split"),
    )
    assert result.returncode == 0, result.stderr
    train = (tmp_path / "split" / "train.jsonl").read_text().splitlines()
    test = (tmp_path / "split" / "test.jsonl").read_text().splitlines()
    assert len(train) + len(test) == 1689


def test_bad_inputs_give_one_line(tmp_path: Path, data_dir: Path) -> None:
    output = tmp_path / "out.jsonl"
    assert_one_line_error(
        in_child("data", "prepare", "nope", "--data-dir", str(data_dir), "-o", str(output)),
        "unknown dataset 'nope'",
    )
    assert_one_line_error(
        in_child("data", "prepare", "mt-bench", "--data-dir", str(tmp_path / "none"), "-o", str(output)),
        "no such data directory",
    )
    assert_one_line_error(in_child("data", "stats", str(tmp_path / "missing.jsonl")), "no such file")
    (tmp_path / "empty.jsonl").write_text("")
    assert_one_line_error(in_child("data", "stats", str(tmp_path / "empty.jsonl")), "empty")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        json.dumps(
            {
                "user": "u",
                "conversation": "c",
                "turn": 1,
                "query": "q",
                "responses": [{"llm": "a", "rating": "good"}],
            }
        )
        + "\n"
    )
    assert_one_line_error(
        in_child("data", "split", str(bad), "-o", str(tmp_path / "split")), f"{bad}:1", "responses.0.rating"
    )
    assert not (tmp_path / "split").exists()
    assert_one_line_error(in_child("data", "stats"), "Missing argument")
    assert not output.exists()


def test_validate_lists_every_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    good = {
        "user": "u",
        "conversation": "c",
        "turn": 1,
        "query": "q",
        "responses": [{"llm": "a", "rating": 1}, {"llm": "b", "rating": 0}],
    }
    bad.write_text("\n".join([json.dumps(good), "{oops", json.dumps({**good, "turn": 2, "responses": []})]) + "\n")
    result = in_child("data", "validate", str(bad))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith(f"{bad}:2")
    assert lines[1].startswith(f"{bad}:3: field 'responses'")
    assert lines[-1].startswith("error: ") and "2 problem(s)" in lines[-1]


def test_split_by_query_and_eval_refuses_records_it_has_seen(tmp_path: Path, data_dir: Path) -> None:
    records = tmp_path / "mt.jsonl"
    prepared = in_process("data", "prepare", "mt-bench", "--data-dir", str(data_dir / "mt_bench"), "-o", str(records))
    assert prepared.returncode == 0, prepared.stderr
    split = tmp_path / "split"
    result = in_process("data", "split", str(records), "--by", "query", "--seed", "1", "-o", str(split))
    assert result.returncode == 0, result.stderr
    train = [json.loads(line) for line in (split / "train.jsonl").read_text().splitlines()]
    test = [json.loads(line) for line in (split / "test.jsonl").read_text().splitlines()]
    assert len(train) + len(test) == 1689 and 0.15 <= len(test) / 1689 <= 0.3
    assert not {r["query"] for r in train} & {r["query"] for r in test}
    model = tmp_path / "model"
    trained = in_process("train", "--data", str(split / "train.jsonl"), "-o", str(model), "--router", "global-winrate")
    assert trained.returncode == 0, trained.stderr
    assert in_process("eval", "--model", str(model), "--data", str(split / "test.jsonl"), "--json").returncode == 0
    seen = in_process("eval", "--model", str(model), "--data", str(split / "train.jsonl"), "--json")
    assert seen.returncode == 2
    assert_one_line_error(seen, "in the model's history", "--allow-overlap")
    allowed = in_process(
        "eval", "--model", str(model), "--data", str(split / "train.jsonl"), "--json", "--allow-overlap"
    )
    assert allowed.returncode == 0 and json.loads(allowed.stdout)["n_pairs"] > 0
