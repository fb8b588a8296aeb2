"""Query x LLM matrices for the simulator tests: small hand-made ones, and GSM8K built from the real files."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from gmtrouter.data.matrix import Cell, MatrixRow
from gmtrouter.data.prices import PriceBook, estimate_tokens

ROUTELLM_LLMS = ("mistralai/Mixtral-8x7B-Instruct-v0.1", "gpt-4-1106-preview")
# The four GPT-3 systems of openai/grade-school-math, priced as the model size they ran on.
GPT3_SYSTEMS = {
    "6b_finetuning": "gpt3-6b",
    "6b_verification": "gpt3-6b",
    "175b_finetuning": "gpt3-175b",
    "175b_verification": "gpt3-175b",
}


def _cell(prices: PriceBook, price_name: str, query: str, correct: bool, text: str) -> Cell:
    tokens = estimate_tokens(text)
    return Cell(
        score=1.0 if correct else 0.0,
        text=text,
        tokens=tokens,
        cost=prices.cost(price_name, estimate_tokens(query), tokens),
    )


def gsm8k_matrix(data_dir: Path, with_gpt3: bool = False) -> list[MatrixRow]:
    """GSM8K test questions x (Mixtral-8x7B, GPT-4-1106) from RouteLLM's responses file: correctness as
    the score, the response text, its estimated tokens and the list-price cost. With `with_gpt3`, the four
    GPT-3 systems of the GSM8K release join as four more LLMs (matched by question text)."""
    prices = PriceBook.discover(data_dir / "gsm8k")
    csv.field_size_limit(1 << 26)
    gpt3: dict[str, dict] = {}
    if with_gpt3:
        with open(data_dir / "gsm8k" / "example_model_solutions.jsonl", encoding="utf-8") as handle:
            gpt3 = {item["question"].strip(): item for item in map(json.loads, handle)}
    rows = []
    with open(data_dir / "gsm8k" / "routellm_gsm8k_responses.csv", encoding="utf-8", newline="") as handle:
        for index, line in enumerate(csv.DictReader(handle)):
            query = line["prompt"]
            cells = {
                llm: _cell(prices, llm, query, line[llm] == "True", line[f"{llm}_response"].strip())
                for llm in ROUTELLM_LLMS
            }
            if with_gpt3 and query.strip() in gpt3:
                item = gpt3[query.strip()]
                for system, price_name in GPT3_SYSTEMS.items():
                    answer = item[system]
                    cells[f"gpt3-{system}"] = _cell(
                        prices, price_name, query, bool(answer["is_correct"]), answer["solution"].strip()
                    )
            rows.append(
                MatrixRow(
                    id=f"gsm8k/{index}",
                    query=query,
                    responses=cells,
                    meta={"source": "gsm8k", "category": "math"},
                )
            )
    return rows


def toy_matrix(n_rows: int = 60, categories: int = 3) -> list[MatrixRow]:
    """Three LLMs with clear profiles: 'big' is right and dear and wordy, 'small' cheap, short and often
    wrong, 'mid' in between; queries in a few topics so neighbours share words."""
    topics = ["algebra equations", "poetry rhymes", "python code", "history wars", "cooking recipes"]
    rows = []
    for i in range(n_rows):
        topic = topics[i % categories]
        rows.append(
            MatrixRow(
                id=f"toy/{i}",
                query=f"question {i} about {topic} number {i % 7}",
                meta={"source": "toy", "category": topic.split()[0]},
                responses={
                    "big": Cell(score=1.0, text=f"A long careful {topic} answer " * 8, tokens=80, cost=0.02),
                    "mid": Cell(score=float(i % 3 != 0), text=f"A fair {topic} answer " * 4, tokens=40, cost=0.002),
                    "small": Cell(score=float(i % 2 == 0), text="short answer", tokens=5, cost=0.0001),
                },
            )
        )
    return rows
