"""LLMRouter's benchmark queries with nine LLMs' scores, as a query x LLM matrix.

Upstream: ulab-uiuc/LLMRouter `scores_<split>.json` (a list of `{question, scores: {llm: 0..1}, cluster_id?}`)
and `queries_<split>.jsonl` (`{task_name, query, ground_truth, metric, choices, task_id}` per line), joined on
the question text (whitespace normalised; a question listed under two tasks takes the first). A folder gives
both splits, train then test; a `scores_<split>.json` file gives that split alone. There are no response
texts: the cost is the question's estimated tokens in and `OUTPUT_TOKENS` out, at the candidates' prices.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from gmtrouter.data.loaders.common import build, iter_json_lines, normalise_text, require
from gmtrouter.data.matrix import Cell, MatrixRow
from gmtrouter.data.prices import PriceBook, estimate_tokens
from gmtrouter.utils.errors import DataError, GmtError

# LLMRouter's data pipeline capped every answer at max_tokens=512; true lengths are not published, so the
# cost takes the cap: an upper bound, the same for every LLM, so it ranks LLMs by price alone.
OUTPUT_TOKENS = 512
SPLITS = ("train", "test")


def _score_files(source: Path) -> list[tuple[str, Path]]:
    """(split, scores file) pairs: the one file given, or every `scores_<split>.json` in the folder."""
    if source.is_file():
        split = source.stem.removeprefix("scores_")
        if not source.stem.startswith("scores_") or not split:
            raise GmtError(f"{source}: not a scores_<split>.json file; give it or the folder holding it")
        return [(split, source)]
    found = [(split, source / f"scores_{split}.json") for split in SPLITS]
    found = [(split, path) for split, path in found if path.is_file()]
    if not found:
        raise GmtError(f"{source}: no scores_train.json or scores_test.json; point --data-dir at LLMRouter's data")
    return found


def _tasks(path: Path) -> dict[str, dict[str, Any]]:
    """Normalised query text -> its first queries-file entry."""
    if not path.is_file():
        raise GmtError(f"{path}: no such file; the scores need their queries file beside them")
    tasks: dict[str, dict[str, Any]] = {}
    for line, item in iter_json_lines(path):
        query, task = require(item, "query", path, line), require(item, "task_name", path, line)
        if not isinstance(query, str) or not isinstance(task, str):
            raise DataError(str(path), line, "query/task_name", "must be text")
        tasks.setdefault(normalise_text(query), item)
    return tasks


def _llm_order(folder: Path) -> list[str]:
    """The candidates file's LLM order, which the matrix columns follow (upstream rows vary theirs)."""
    path = folder / "llm_candidates.json"
    return list(json.loads(path.read_text(encoding="utf-8"))) if path.is_file() else []


def _scores(entry: dict[str, Any], path: Path, index: int) -> dict[str, float]:
    scores = require(entry, "scores", path, None)
    if not isinstance(scores, dict):
        raise DataError(str(path), None, f"[{index}].scores", "must map each LLM to its score")
    for llm, score in scores.items():
        if isinstance(score, bool) or not isinstance(score, int | float) or not math.isfinite(score):
            raise DataError(str(path), None, f"[{index}].scores.{llm}", f"{score!r} is not a number")
    return {llm: float(score) for llm, score in scores.items()}


def _split_rows(split: str, path: Path, order: list[str], prices: PriceBook) -> list[MatrixRow]:
    tasks = _tasks(path.with_name(f"queries_{split}.jsonl"))
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise DataError(str(path), error.lineno, None, "is not valid JSON") from None
    if not isinstance(entries, list):
        raise DataError(str(path), None, None, "is not a JSON list of {question, scores}")
    rows = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("question"), str):
            raise DataError(str(path), None, f"[{index}].question", "is required and must be text")
        task = tasks.get(normalise_text(entry["question"]))
        if task is None:
            continue
        scores = _scores(entry, path, index)
        query_tokens = estimate_tokens(entry["question"])
        llms = [llm for llm in order if llm in scores] + [llm for llm in scores if llm not in order]
        meta = {
            "source": "llmrouter",
            "category": task["task_name"],
            "split": split,
            "metric": task.get("metric"),
        }
        if "cluster_id" in entry:
            meta["cluster_id"] = entry["cluster_id"]
        rows.append(
            build(
                MatrixRow,
                path,
                None,
                prefix=f"[{index}].",
                id=f"llmrouter/{split}/{index}",
                query=entry["question"],
                responses={
                    llm: Cell(score=scores[llm], cost=prices.cost(llm, query_tokens, OUTPUT_TOKENS)) for llm in llms
                },
                meta=meta,
            )
        )
    if not rows:
        raise GmtError(f"{path}: no question is in queries_{split}.jsonl; give the files of one LLMRouter split")
    return rows


def load(source: Path) -> list[MatrixRow]:
    """The matrix of the LLMRouter split(s) at `source`, each in its scores file's order."""
    folder = source.parent if source.is_file() else source
    prices, order = PriceBook.discover(folder), _llm_order(folder)
    return [row for split, path in _score_files(source) for row in _split_rows(split, path, order, prices)]
