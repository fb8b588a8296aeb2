"""`gmtrouter data prepare` as a user runs it: outputs that validate, one-line errors, no partial files."""

import json
from pathlib import Path

from tests.cli_support import assert_one_line_error, in_child
from tests.conftest import FIXTURES


def test_prepare_matrix_and_records(tmp_path: Path, data_dir: Path) -> None:
    matrix = tmp_path / "gsm8k.jsonl"
    result = in_child("data", "prepare", "gsm8k", "--data-dir", str(data_dir / "gsm8k"), "-o", str(matrix))
    assert result.returncode == 0, result.stderr
    assert "wrote 1319 rows" in result.stderr
    stats = json.loads(in_child("data", "stats", str(matrix), "--json").stdout)
    assert (stats["queries"], stats["llms"], stats["best_single_llm"]) == (1319, 6, "gpt-4-1106-preview")
    for dataset, source, count in [
        ("chatbot-arena", FIXTURES / "chatbot_arena" / "battles.jsonl", 7),
        ("openai-logs", FIXTURES / "openai_logs", 5),
    ]:
        records = tmp_path / f"{dataset}.jsonl"
        result = in_child("data", "prepare", dataset, "--data-dir", str(source), "-o", str(records))
        assert result.returncode == 0, result.stderr
        assert f"wrote {count} records" in result.stderr
        assert in_child("data", "validate", str(records)).returncode == 0


def test_bad_inputs_leave_no_output(tmp_path: Path) -> None:
    output = tmp_path / "out.jsonl"
    result = in_child("data", "prepare", "arena", "--data-dir", str(tmp_path), "-o", str(output))
    assert_one_line_error(result, "unknown dataset 'arena'", "chatbot-arena", "gsm8k", "llmrouter", "openai-logs")
    result = in_child("data", "prepare", "mmlu", "--data-dir", str(tmp_path), "-o", str(output))
    assert_one_line_error(result, str(tmp_path), "no mmlu_<subject>.csv files")
    (tmp_path / "mmlu_virology.csv").write_text("question,gpt-4\nq,True\n")
    result = in_child("data", "prepare", "mmlu", "--data-dir", str(tmp_path), "-o", str(output))
    assert_one_line_error(result, f"{tmp_path / 'mmlu_virology.csv'}:1: field 'prompt'")
    logs = tmp_path / "logs.jsonl"
    good = {
        "user": "u",
        "messages": [
            {"role": "user", "content": "q"},
            {"role": "assistant", "model": "m", "content": "a", "feedback": 1},
        ],
    }
    bad = {
        "user": "u",
        "messages": [
            {"role": "user", "content": "q"},
            {"role": "assistant", "model": "m", "content": "a", "feedback": "great"},
        ],
    }
    logs.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    result = in_child("data", "prepare", "openai-logs", "--data-dir", str(logs), "-o", str(output))
    assert_one_line_error(result, f"{logs}:2: field 'messages[1].feedback'", "'great'")
    assert not output.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
