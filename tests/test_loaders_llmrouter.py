"""LLMRouter: nine LLMs' scores on 14 tasks, joined with the queries for their task names."""

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from gmtrouter.data.loaders import prepare
from gmtrouter.data.matrix import score_table
from gmtrouter.data.prices import estimate_tokens
from gmtrouter.utils.errors import DataError, GmtError


@pytest.fixture(scope="module")
def rows(data_dir: Path):
    return prepare("llmrouter", data_dir / "llmrouter")


def test_both_splits_join(rows, data_dir: Path) -> None:
    splits = Counter(row.meta["split"] for row in rows)
    assert splits == {"train": 5608, "test": 500}
    assert len({row.id for row in rows}) == 6108
    assert len({row.meta["category"] for row in rows}) == 14
    test_tasks = Counter(row.meta["category"] for row in rows if row.meta["split"] == "test")
    assert set(test_tasks.values()) == {50} and len(test_tasks) == 10
    llms, table = score_table(rows)
    candidates = list(json.loads((data_dir / "llmrouter" / "llm_candidates.json").read_text()))
    assert len(llms) == 9 and llms == [llm for llm in candidates if llm in llms]
    assert all(list(row.responses) == llms for row in rows)
    assert not np.isnan(table).any() and table.min() == 0.0 and table.max() == 1.0


def test_one_split_file(rows, data_dir: Path) -> None:
    test = prepare("llmrouter", data_dir / "llmrouter" / "scores_test.json")
    assert test == [row for row in rows if row.meta["split"] == "test"]


def test_row_against_upstream(rows, data_dir: Path) -> None:
    upstream = json.loads((data_dir / "llmrouter" / "scores_test.json").read_text())
    row = next(row for row in rows if row.id == "llmrouter/test/0")
    assert row.query == upstream[0]["question"]
    assert row.meta["category"] == "agentverse-logicgrid" and row.meta["metric"] == "em_mc"
    assert {llm: cell.score for llm, cell in row.responses.items()} == upstream[0]["scores"]


def test_costs_from_candidate_prices(rows) -> None:
    row = rows[0]
    query_tokens = estimate_tokens(row.query)
    # $0.10 (gemma-2-9b-it) < $0.20 (7-8B models) < $0.90 (49-70B models) per 1M tokens, 512 tokens out.
    assert row.responses["gemma-2-9b-it"].cost == pytest.approx((query_tokens + 512) * 0.10 / 1e6)
    assert row.responses["llama3-chatqa-1.5-70b"].cost == pytest.approx((query_tokens + 512) * 0.90 / 1e6)
    assert row.responses["gemma-2-9b-it"].cost < row.responses["qwen2.5-7b-instruct"].cost
    assert row.responses["qwen2.5-7b-instruct"].cost < row.responses["llama-3.3-nemotron-super-49b-v1"].cost
    assert all(cell.tokens is None and cell.text is None for cell in row.responses.values())


def test_bad_inputs(tmp_path: Path, data_dir: Path) -> None:
    with pytest.raises(GmtError, match=r"no scores_train\.json or scores_test\.json"):
        prepare("llmrouter", tmp_path)
    shutil.copy(data_dir / "llmrouter" / "scores_test.json", tmp_path)
    with pytest.raises(GmtError, match=r"queries_test\.jsonl: no such file"):
        prepare("llmrouter", tmp_path)
    (tmp_path / "queries_test.jsonl").write_text(json.dumps({"task_name": "x", "question": "q"}) + "\n")
    with pytest.raises(DataError, match=r"queries_test\.jsonl:1: field 'query': is required"):
        prepare("llmrouter", tmp_path)
    (tmp_path / "queries_test.jsonl").write_text(json.dumps({"task_name": "x", "query": "q"}) + "\n")
    (tmp_path / "scores_test.json").write_text(json.dumps([{"question": "q", "scores": {"a": 1, "b": "high"}}]))
    with pytest.raises(DataError, match=r"scores_test\.json: field '\[0\]\.scores\.b': 'high' is not a number"):
        prepare("llmrouter", tmp_path)
    (tmp_path / "scores_test.json").write_text(json.dumps([{"question": "other", "scores": {"a": 1, "b": 0}}]))
    with pytest.raises(GmtError, match=r"no question is in queries_test\.jsonl"):
        prepare("llmrouter", tmp_path)
