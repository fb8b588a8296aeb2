"""MMLU test questions with two LLMs' correctness, as a query x LLM matrix.

Upstream: RouteLLM's `mmlu/responses/mmlu_<subject>.csv`, one file per subject: `prompt` (the question, its
choices A-D and "Answer:") and one True/False column per model. The subject, from the file name, becomes the
category. There are no response texts: RouteLLM generated one token (the answer letter) per question, so the
cost is the prompt's estimated tokens as input plus `OUTPUT_TOKENS` as output.
"""

from __future__ import annotations

from pathlib import Path

from gmtrouter.data.loaders.common import build, dataset_root, parse_bool, read_csv
from gmtrouter.data.matrix import Cell, MatrixRow
from gmtrouter.data.prices import PriceBook, estimate_tokens
from gmtrouter.utils.errors import DataError, GmtError

# RouteLLM asked each model for max_new_tokens=1: the answer letter.
OUTPUT_TOKENS = 1
PREFIX = "mmlu_"


def _files(folder: Path) -> list[Path]:
    """The subject files: `folder` itself, or `mmlu_*.csv` in it or in its `routellm_responses/`."""
    if folder.is_file():
        return [folder]
    for place in (folder / "routellm_responses", folder):
        files = sorted(place.glob(f"{PREFIX}*.csv"))
        if files:
            return files
    raise GmtError(f"{folder}: no {PREFIX}<subject>.csv files; point --data-dir at RouteLLM's MMLU responses")


def _subject_rows(path: Path, prices: PriceBook) -> list[MatrixRow]:
    header, lines = read_csv(path, ("prompt",))
    models = [column for column in header if column != "prompt"]
    if len(models) < 2:
        raise DataError(str(path), 1, None, "needs a True/False column for each of at least two models")
    subject = path.stem.removeprefix(PREFIX)
    rows = []
    for index, (line, row) in enumerate(lines):
        query_tokens = estimate_tokens(row["prompt"])
        cells = {
            model: Cell(
                score=1.0 if parse_bool(row[model], path, line, model) else 0.0,
                tokens=OUTPUT_TOKENS,
                cost=prices.cost(model, query_tokens, OUTPUT_TOKENS),
            )
            for model in models
        }
        rows.append(
            build(
                MatrixRow,
                path,
                line,
                id=f"mmlu/{subject}/{index}",
                query=row["prompt"],
                responses=cells,
                meta={"source": "mmlu", "category": subject, "split": "test"},
            )
        )
    return rows


def load(folder: Path) -> list[MatrixRow]:
    """The matrix of every subject file, subjects in name order, questions in file order."""
    files = _files(folder)
    root = dataset_root(folder)
    prices = PriceBook.discover(root.parent if root.name == "routellm_responses" else root)
    return [row for path in files for row in _subject_rows(path, prices)]
