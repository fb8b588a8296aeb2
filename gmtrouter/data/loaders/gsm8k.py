"""GSM8K test questions with six LLMs' graded solutions, as a query x LLM matrix.

Upstream: openai/grade-school-math `example_model_solutions.jsonl` (per test question `question` and, under
`6b_finetuning`, `6b_verification`, `175b_finetuning`, `175b_verification`, one GPT-3 system's
`{is_correct, solution}`) and RouteLLM's `gsm8k_responses.csv` (`prompt`, and per model a True/False
column `M` with its answer in `M_response`). The two join on the question text, whitespace normalised; a
question missing from either file is left out. Score = correctness 1/0; cost = the question as input, the
solution as output.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gmtrouter.data.loaders.common import (
    build,
    dataset_root,
    find_file,
    iter_json_lines,
    normalise_text,
    parse_bool,
    read_csv,
    require,
)
from gmtrouter.data.matrix import Cell, MatrixRow
from gmtrouter.data.prices import PriceBook, estimate_tokens
from gmtrouter.utils.errors import DataError, GmtError

# Upstream key -> (LLM name in the matrix, price key in prices/public_list_prices.json).
GPT3_SYSTEMS = {
    "6b_finetuning": ("gpt3-6b-finetuning", "gpt3-6b"),
    "6b_verification": ("gpt3-6b-verification", "gpt3-6b"),
    "175b_finetuning": ("gpt3-175b-finetuning", "gpt3-175b"),
    "175b_verification": ("gpt3-175b-verification", "gpt3-175b"),
}
RESPONSE_SUFFIX = "_response"


def _cell(prices: PriceBook, price_key: str, query_tokens: int, correct: bool, text: str) -> Cell:
    tokens = estimate_tokens(text)
    return Cell(
        score=1.0 if correct else 0.0,
        text=text,
        tokens=tokens,
        cost=prices.cost(price_key, query_tokens, tokens),
    )


def _routellm(path: Path) -> tuple[list[str], dict[str, tuple[int, dict[str, str]]]]:
    """(models, normalised prompt -> (line, row)) of RouteLLM's responses; a prompt's first copy wins."""
    header, rows = read_csv(path, ("prompt",))
    models = [column for column in header if column + RESPONSE_SUFFIX in header]
    if not models:
        raise DataError(str(path), 1, None, "has no model columns (a column M with its answers in M_response)")
    by_prompt: dict[str, tuple[int, dict[str, str]]] = {}
    for line, row in rows:
        by_prompt.setdefault(normalise_text(row["prompt"]), (line, row))
    return models, by_prompt


def _gpt3_cells(item: dict[str, Any], path: Path, line: int, prices: PriceBook, query_tokens: int) -> dict[str, Cell]:
    cells = {}
    for key, (llm, price_key) in GPT3_SYSTEMS.items():
        result = require(item, key, path, line)
        if not isinstance(result, dict) or not isinstance(result.get("is_correct"), bool):
            raise DataError(str(path), line, f"{key}.is_correct", "must be true or false")
        if not isinstance(result.get("solution"), str):
            raise DataError(str(path), line, f"{key}.solution", "must be the solution text")
        cells[llm] = _cell(prices, price_key, query_tokens, result["is_correct"], result["solution"])
    return cells


def load(folder: Path) -> list[MatrixRow]:
    """The matrix of the GSM8K test questions answered in both upstream files, in the GPT-3 file's order."""
    if folder.is_file():
        raise GmtError(f"{folder}: is a file; give the folder holding both GSM8K files")
    solutions = find_file(folder, "example_model_solutions.jsonl")
    responses = find_file(folder, "*gsm8k_responses.csv")
    prices = PriceBook.discover(dataset_root(folder))
    models, by_prompt = _routellm(responses)
    rows = []
    for index, (line, item) in enumerate(iter_json_lines(solutions)):
        question = require(item, "question", solutions, line)
        if not isinstance(question, str):
            raise DataError(str(solutions), line, "question", "must be the question text")
        match = by_prompt.get(normalise_text(question))
        if match is None:
            continue
        query_tokens = estimate_tokens(question)
        cells = _gpt3_cells(item, solutions, line, prices, query_tokens)
        csv_line, row = match
        for model in models:
            correct = parse_bool(row[model], responses, csv_line, model)
            cells[model] = _cell(prices, model, query_tokens, correct, row[model + RESPONSE_SUFFIX])
        rows.append(
            build(
                MatrixRow,
                solutions,
                line,
                id=f"gsm8k/{index}",
                query=question,
                responses=cells,
                meta={"source": "gsm8k", "category": "math", "split": "test"},
            )
        )
    if not rows:
        raise GmtError(f"{solutions}: no question is also in {responses}; give the GSM8K test files of both")
    return rows
