"""A query x LLM matrix: for each query, every LLM's answer quality (and, where known, text, tokens, cost).

Benchmarks such as GSM8K, MMLU and LLMRouter say how good each LLM is on each query but carry no users. The
simulator turns a matrix into records of synthetic users. One JSON object per line:

    {"id": "gsm8k/0", "query": "...", "meta": {"source": "gsm8k", "category": "math"},
     "responses": {"gpt-4-1106-preview": {"score": 1.0, "text": "...", "tokens": 120, "cost": 0.0036}, ...}}
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from gmtrouter.data.schema import FiniteFloat, NonEmpty, read_items, write_jsonl


class Cell(BaseModel):
    """One LLM's result on one query: quality `score` (correctness 0/1 or a score in [0, 1])."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    score: FiniteFloat
    text: str | None = None
    tokens: Annotated[int, Field(ge=0)] | None = None
    cost: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None


class MatrixRow(BaseModel):
    """One query with every LLM's cell."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    id: NonEmpty
    query: NonEmpty
    responses: dict[str, Cell]
    meta: dict[str, Any] = Field(default_factory=dict)

    @field_validator("responses")
    @classmethod
    def _at_least_two(cls, responses: dict[str, Cell]) -> dict[str, Cell]:
        if len(responses) < 2:
            raise ValueError("a matrix row needs the results of at least two LLMs")
        return responses


def read_matrix(path: str | os.PathLike[str]) -> list[MatrixRow]:
    """Read a matrix file, refusing it at the first bad line."""
    return read_items(path, MatrixRow)


def write_matrix(path: str | os.PathLike[str], rows: Iterable[MatrixRow]) -> int:
    """Write a matrix file atomically."""
    return write_jsonl(path, rows)


def matrix_llms(rows: Sequence[MatrixRow]) -> list[str]:
    """The LLMs of a matrix in first-seen order."""
    return list(dict.fromkeys(llm for row in rows for llm in row.responses))


def score_table(rows: Sequence[MatrixRow]) -> tuple[list[str], np.ndarray]:
    """(LLMs, scores[query, llm]) with NaN where an LLM has no result for a query."""
    llms = matrix_llms(rows)
    column = {llm: j for j, llm in enumerate(llms)}
    table = np.full((len(rows), len(llms)), np.nan)
    for i, row in enumerate(rows):
        for llm, cell in row.responses.items():
            table[i, column[llm]] = cell.score
    return llms, table
