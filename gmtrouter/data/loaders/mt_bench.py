"""MT-Bench human pairwise votes joined with the questions and the judged models' answers.

Upstream: lmsys/mt_bench_human_judgments (`question_id, judge, model_a, model_b, winner`, optionally `turn`)
and FastChat's `question.jsonl` and `model_answer/*.jsonl`. Each vote becomes one record of its own battle,
responses in (model_a, model_b) order: winner 1/0, tie 0.5/0.5. A turn-2 vote continues its battle.
"""

from __future__ import annotations

from pathlib import Path

from gmtrouter.data.loaders.common import find_file, iter_json_lines, require
from gmtrouter.data.prices import PriceBook, estimate_tokens
from gmtrouter.data.schema import Interaction, Response
from gmtrouter.utils.errors import DataError

RATINGS = {"model_a": (1.0, 0.0), "model_b": (0.0, 1.0), "tie": (0.5, 0.5), "tie (bothbad)": (0.5, 0.5)}


def _int(value: object, field: str, path: Path, line: int) -> int:
    """An integer id from an upstream file, or a DataError naming the field."""
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise DataError(str(path), line, field, f"{value!r} is not an integer") from None


def _questions(path: Path) -> dict[int, dict]:
    questions = {}
    for line, item in iter_json_lines(path):
        questions[_int(require(item, "question_id", path, line), "question_id", path, line)] = item
    return questions


def _answers(folder: Path) -> dict[tuple[str, int], list[str]]:
    answers = {}
    for path in sorted(folder.glob("*.jsonl")):
        for line, item in iter_json_lines(path):
            model = require(item, "model_id", path, line)
            turns = require(item, "choices", path, line)[0]["turns"]
            answers[model, _int(require(item, "question_id", path, line), "question_id", path, line)] = turns
    return answers


def load(folder: Path) -> list[Interaction]:
    """Records of the human votes in `folder` (an MT-Bench data directory), in file order."""
    votes_path = find_file(folder, "human_judgments*.jsonl", "*judgments*.jsonl")
    questions = _questions(find_file(folder, "question.jsonl"))
    answers = _answers(folder / "model_answer")
    prices = PriceBook.discover(folder)
    records = []
    for line, vote in iter_json_lines(votes_path):
        qid = _int(require(vote, "question_id", votes_path, line), "question_id", votes_path, line)
        judge, winner = require(vote, "judge", votes_path, line), require(vote, "winner", votes_path, line)
        models = [require(vote, "model_a", votes_path, line), require(vote, "model_b", votes_path, line)]
        turn = vote.get("turn", 1)
        if winner not in RATINGS:
            raise DataError(str(votes_path), line, "winner", f"'{winner}' is not one of {sorted(RATINGS)}")
        if qid not in questions:
            raise DataError(str(votes_path), line, "question_id", f"{qid} is not in question.jsonl")
        question = questions[qid]
        if isinstance(turn, bool) or not isinstance(turn, int) or not 1 <= turn <= len(question["turns"]):
            raise DataError(
                str(votes_path), line, "turn", f"{turn!r} is not a turn of question {qid} (1..{len(question['turns'])})"
            )
        query = question["turns"][turn - 1]
        responses = []
        for model, rating in zip(models, RATINGS[winner], strict=True):
            if (model, qid) not in answers:
                raise DataError(
                    str(votes_path),
                    line,
                    "model_a/model_b",
                    f"no answer of '{model}' to question {qid} in model_answer/",
                )
            text = answers[model, qid][turn - 1]
            tokens = estimate_tokens(text)
            responses.append(
                Response(
                    llm=model,
                    rating=rating,
                    text=text,
                    tokens=tokens,
                    cost=prices.cost(model, estimate_tokens(query), tokens),
                )
            )
        records.append(
            Interaction(
                user=judge,
                conversation=f"mt_bench/{qid}/{judge}/{models[0]}/{models[1]}",
                turn=turn,
                query=query,
                responses=responses,
                timestamp=vote.get("tstamp"),
                meta={"source": "mt_bench", "category": question.get("category"), "question_id": qid},
            )
        )
    if not records:
        raise DataError(str(votes_path), None, None, "holds no votes; point --data-dir at MT-Bench's human judgments")
    return records
