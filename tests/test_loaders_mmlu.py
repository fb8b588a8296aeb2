"""MMLU: RouteLLM's per-subject correctness of two LLMs as one matrix."""

import csv
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from gmtrouter.data.loaders import prepare
from gmtrouter.data.matrix import score_table
from gmtrouter.data.prices import estimate_tokens
from gmtrouter.utils.errors import DataError, GmtError

MIXTRAL, GPT4 = "mistralai/Mixtral-8x7B-Instruct-v0.1", "gpt-4-1106-preview"


@pytest.fixture(scope="module")
def timed(data_dir: Path):
    start = time.perf_counter()
    rows = prepare("mmlu", data_dir / "mmlu")
    return rows, time.perf_counter() - start


@pytest.fixture(scope="module")
def rows(timed):
    return timed[0]


def test_counts_subjects_and_scores(rows) -> None:
    assert len(rows) == 14042
    assert len({row.id for row in rows}) == 14042
    subjects = Counter(row.meta["category"] for row in rows)
    assert len(subjects) == 57
    assert subjects["professional_law"] == 1534
    assert subjects["abstract_algebra"] == 100
    llms, table = score_table(rows)
    assert llms == [MIXTRAL, GPT4]
    # Both right 8,818, only GPT-4 2,497, only Mixtral 742, neither 1,985 (counted from the CSVs).
    pairs = Counter(map(tuple, table.astype(int).tolist()))
    assert pairs == {(1, 1): 8818, (0, 1): 2497, (1, 0): 742, (0, 0): 1985}


def test_row_matches_its_csv_line(rows, data_dir: Path) -> None:
    path = data_dir / "mmlu" / "routellm_responses" / "mmlu_anatomy.csv"
    with path.open(encoding="utf-8", newline="") as handle:
        upstream = list(csv.DictReader(handle))
    anatomy = [row for row in rows if row.meta["category"] == "anatomy"]
    assert len(anatomy) == len(upstream) == 135
    row, line = anatomy[3], upstream[3]
    assert row.id == "mmlu/anatomy/3"
    assert row.query == line["prompt"] and row.query.endswith("Answer:")
    assert (row.responses[MIXTRAL].score, row.responses[GPT4].score) == (0.0, 1.0)
    assert (line[MIXTRAL], line[GPT4]) == ("False", "True")


def test_cost_is_prompt_in_one_token_out(rows) -> None:
    for row in rows[::1000]:
        query_tokens = estimate_tokens(row.query)
        assert row.responses[MIXTRAL].cost == pytest.approx((query_tokens + 1) * 0.6 / 1e6)
        assert row.responses[GPT4].cost == pytest.approx((query_tokens * 10.0 + 30.0) / 1e6)
        assert row.responses[GPT4].tokens == 1 and row.responses[GPT4].text is None
    assert np.mean([row.responses[GPT4].cost for row in rows]) > 10 * np.mean(
        [row.responses[MIXTRAL].cost for row in rows]
    )


def test_responses_folder_or_one_file(rows, data_dir: Path) -> None:
    folder = data_dir / "mmlu" / "routellm_responses"
    assert prepare("mmlu", folder) == rows
    one = prepare("mmlu", folder / "mmlu_virology.csv")
    assert [row.id for row in one] == [row.id for row in rows if row.meta["category"] == "virology"]
    assert one[0].responses[GPT4].cost is not None


def test_fast(timed) -> None:
    assert timed[1] < 3.0


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(GmtError, match=r"no mmlu_<subject>\.csv files"):
        prepare("mmlu", tmp_path)
    bad = tmp_path / "mmlu_anatomy.csv"
    bad.write_text("question,a,b\nq,True,False\n")
    with pytest.raises(DataError, match=r"mmlu_anatomy.csv:1: field 'prompt': no such column"):
        prepare("mmlu", tmp_path)
    bad.write_text('prompt,a,b\nq1,True,False\n"two\nlines",True,yes\n')
    with pytest.raises(DataError, match=r"mmlu_anatomy.csv:3: field 'b': 'yes' is not True or False"):
        prepare("mmlu", tmp_path)
    bad.write_text("prompt,a,b\nq1,True\n")
    with pytest.raises(DataError, match=r"mmlu_anatomy.csv:2: has a different number of cells"):
        prepare("mmlu", tmp_path)
    bad.write_text("prompt,a\nq1,True\n")
    with pytest.raises(DataError, match="at least two models"):
        prepare("mmlu", tmp_path)
