"""GSM8K: the GPT-3 solutions and RouteLLM's responses joined into one six-LLM matrix."""

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from gmtrouter.data.loaders import prepare
from gmtrouter.data.matrix import score_table
from gmtrouter.data.prices import estimate_tokens
from gmtrouter.utils.errors import DataError, GmtError

LLMS = [
    "gpt3-6b-finetuning",
    "gpt3-6b-verification",
    "gpt3-175b-finetuning",
    "gpt3-175b-verification",
    "mistralai/Mixtral-8x7B-Instruct-v0.1",
    "gpt-4-1106-preview",
]


@pytest.fixture(scope="module")
def rows(data_dir: Path):
    return prepare("gsm8k", data_dir / "gsm8k")


def test_every_test_question_joins(rows) -> None:
    # All 1,319 GSM8K test questions are in both upstream files.
    assert len(rows) == 1319
    assert len({row.id for row in rows}) == 1319
    llms, table = score_table(rows)
    assert llms == LLMS
    assert not np.isnan(table).any()
    assert set(np.unique(table)) == {0.0, 1.0}
    means = dict(zip(llms, table.mean(axis=0), strict=True))
    assert means["gpt-4-1106-preview"] == pytest.approx(1130 / 1319)
    assert means["mistralai/Mixtral-8x7B-Instruct-v0.1"] == pytest.approx(842 / 1319)
    assert means["gpt3-175b-verification"] > means["gpt3-175b-finetuning"] > means["gpt3-6b-finetuning"]


def test_first_row_against_upstream(rows, data_dir: Path) -> None:
    first_line = (data_dir / "gsm8k" / "example_model_solutions.jsonl").read_text().splitlines()[0]
    upstream = json.loads(first_line)
    row = rows[0]
    assert row.id == "gsm8k/0"
    assert row.query == upstream["question"]
    assert row.meta == {"source": "gsm8k", "category": "math", "split": "test"}
    assert row.responses["gpt3-6b-finetuning"].text == upstream["6b_finetuning"]["solution"]
    assert row.responses["gpt3-6b-finetuning"].score == 0.0
    assert row.responses["gpt-4-1106-preview"].score == 1.0
    assert "$18" in row.responses["gpt-4-1106-preview"].text


def test_costs_follow_prices(rows) -> None:
    row = rows[0]
    for cell in row.responses.values():
        assert cell.tokens > 0 and cell.cost > 0
    # The question is the input, the solution the output: gpt3-6b $2 and gpt3-175b $20 per 1M tokens each way.
    for row in rows[:50]:
        query_tokens = estimate_tokens(row.query)
        for llm, price in [("gpt3-6b-verification", 2.0), ("gpt3-175b-finetuning", 20.0)]:
            cell = row.responses[llm]
            assert cell.tokens == estimate_tokens(cell.text)
            assert cell.cost == pytest.approx((query_tokens + cell.tokens) * price / 1e6)
    # Mixtral ($0.6/1M) is the cheapest on average, GPT-4 Turbo ($10/$30) the dearest.
    mean_cost = {llm: np.mean([row.responses[llm].cost for row in rows]) for llm in LLMS}
    assert min(mean_cost, key=mean_cost.get) == "mistralai/Mixtral-8x7B-Instruct-v0.1"
    assert max(mean_cost, key=mean_cost.get) == "gpt-4-1106-preview"


def test_missing_column_and_file(data_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "gsm8k"
    folder.mkdir()
    shutil.copy(data_dir / "gsm8k" / "example_model_solutions.jsonl", folder)
    with pytest.raises(GmtError, match="no file matching"):
        prepare("gsm8k", folder)
    (folder / "routellm_gsm8k_responses.csv").write_text("question,gpt-4,gpt-4_response\nq,True,a\n")
    with pytest.raises(DataError, match=r"routellm_gsm8k_responses.csv:1: field 'prompt': no such column"):
        prepare("gsm8k", folder)
    (folder / "routellm_gsm8k_responses.csv").write_text("prompt,gpt-4,gpt-4_response\nq,True,a\n")
    with pytest.raises(GmtError, match="no question is also in"):
        prepare("gsm8k", folder)
    question = json.loads((folder / "example_model_solutions.jsonl").open().readline())["question"]
    with (folder / "routellm_gsm8k_responses.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows(
            [["prompt", "gpt-4", "gpt-4_response"], ["q", "True", "a"], [question, "maybe", "a"]]
        )
    with pytest.raises(DataError, match=r"responses.csv:3: field 'gpt-4': 'maybe' is not True or False"):
        prepare("gsm8k", folder)
