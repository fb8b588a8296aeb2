"""Chatbot Arena battles with the voter's id, as records: one per user turn of each battle.

Upstream: lmsys/chatbot_arena_conversations, one row per battle: `question_id, model_a, model_b, winner`
(`model_a`, `model_b`, `tie`, `tie (bothbad)`), `judge` (the voter), `conversation_a`, `conversation_b`
(each a list of `{role, content}` alternating user, assistant; both sides share the user messages), `turn`,
`anony`, `language`, `tstamp`. Turn t of a battle becomes a record: the t-th user message, then model_a's
and model_b's t-th answers in that order, both rated by the battle's one vote (1/0, a tie 0.5/0.5). The
voter is the user. Reads a local `.jsonl`, `.json` (a list) or, with pyarrow installed, `.parquet` file or a
folder holding one; `hf:OWNER/NAME` downloads from the Hub with `datasets` (or `huggingface_hub` + pyarrow).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from gmtrouter.data.loaders.common import build, dataset_root
from gmtrouter.data.loaders.mt_bench import RATINGS
from gmtrouter.data.prices import PriceBook, estimate_tokens
from gmtrouter.data.schema import Interaction, Response
from gmtrouter.utils.errors import DataError, GmtError

UPSTREAM = "lmsys/chatbot_arena_conversations"
SUFFIXES = (".jsonl", ".json", ".parquet")
SIDES = ("conversation_a", "conversation_b")


@dataclass(frozen=True)
class _Where:
    """A battle's place in its file: a line of JSONL, or an index into a JSON list or parquet table."""

    path: Path
    line: int | None
    index: int

    def field(self, name: str) -> str:
        if self.line is not None:
            return name
        return f"[{self.index}].{name}" if name else f"[{self.index}]"

    def fail(self, name: str, message: str) -> NoReturn:
        raise DataError(str(self.path), self.line, self.field(name), message)


def _data_file(folder: Path) -> Path:
    """`folder` if it is a file, else the one battles file in it."""
    if folder.is_file():
        return folder
    found = sorted(path for path in folder.iterdir() if path.suffix in SUFFIXES and path.is_file())
    if not found:
        raise GmtError(f"{folder}: no .jsonl, .json or .parquet file; download {UPSTREAM} and point --data-dir at it")
    if len(found) > 1:
        names = ", ".join(path.name for path in found)
        raise GmtError(f"{folder}: holds several battle files ({names}); pass the one to read with --data-dir")
    return found[0]


def _parquet_rows(path: Path) -> list[dict[str, Any]]:
    try:
        import pyarrow.parquet as parquet
    except ImportError:
        raise GmtError(f"{path}: reading parquet needs pyarrow (pip install pyarrow); or pass a JSON export") from None
    return parquet.read_table(path).to_pylist()


def _rows(path: Path) -> Iterator[tuple[_Where, Any]]:
    """Every battle of a local file with its place, in file order."""
    if path.suffix == ".parquet":
        yield from ((_Where(path, None, index), row) for index, row in enumerate(_parquet_rows(path)))
        return
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    if text.lstrip().startswith("["):
        try:
            battles = json.loads(text)
        except json.JSONDecodeError as error:
            raise DataError(str(path), error.lineno, None, "is not valid JSON") from None
        yield from ((_Where(path, None, index), row) for index, row in enumerate(battles))
        return
    index = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                raise DataError(str(path), number, None, "is not valid JSON (one battle per line)") from None
            yield _Where(path, number, index), row
            index += 1


def _turns(conversation: Any, side: str, where: _Where) -> list[tuple[str, str]]:
    """(user message, answer) per turn of one side's conversation, which must alternate user, assistant."""
    if not isinstance(conversation, list) or not conversation:
        where.fail(side, "must be a non-empty list of {role, content} messages")
    turns, expected, question = [], "user", ""
    for i, message in enumerate(conversation):
        if not isinstance(message, dict) or not isinstance(message.get("content"), str):
            where.fail(f"{side}[{i}].content", "is required and must be text")
        if message.get("role") != expected:
            where.fail(f"{side}[{i}].role", f"is {message.get('role')!r} where a '{expected}' message belongs")
        if expected == "user":
            question, expected = message["content"], "assistant"
        else:
            turns.append((question, message["content"]))
            expected = "user"
    if expected == "assistant":
        where.fail(side, "ends with a user message that has no answer")
    return turns


def _battle(row: Any, where: _Where, prices: PriceBook) -> list[Interaction]:
    """The records of one battle, turn 1 first."""
    if not isinstance(row, dict):
        where.fail("", "a battle must be a JSON object")
    for name in ("question_id", "model_a", "model_b", "winner", "judge", *SIDES):
        if name not in row:
            where.fail(name, "is required but missing")
    for name in ("question_id", "model_a", "model_b", "judge"):
        if not isinstance(row[name], str) or not row[name]:
            where.fail(name, "must be a non-empty string")
    if row["winner"] not in RATINGS:
        where.fail("winner", f"{row['winner']!r} is not one of {sorted(RATINGS)}")
    sides = [_turns(row[side], side, where) for side in SIDES]
    if len(sides[0]) != len(sides[1]):
        where.fail("conversation_b", f"has {len(sides[1])} turns where conversation_a has {len(sides[0])}")
    models, ratings = (row["model_a"], row["model_b"]), RATINGS[row["winner"]]
    meta = {"source": "chatbot_arena", "question_id": row["question_id"]}
    meta.update({key: row[key] for key in ("language", "anony") if row.get(key) is not None})
    records = []
    for turn, ((query, answer_a), (query_b, answer_b)) in enumerate(zip(*sides, strict=True), start=1):
        if query_b != query:
            where.fail(f"conversation_b[{2 * turn - 2}].content", f"differs from conversation_a's turn {turn}")
        responses = []
        for model, answer, rating in zip(models, (answer_a, answer_b), ratings, strict=True):
            tokens = estimate_tokens(answer)
            cost = prices.cost(model, estimate_tokens(query), tokens)
            responses.append(Response(llm=model, rating=rating, text=answer, tokens=tokens, cost=cost))
        records.append(
            build(
                Interaction,
                where.path,
                where.line,
                prefix="" if where.line is not None else f"[{where.index}].",
                user=row["judge"],
                conversation=f"chatbot_arena/{row['question_id']}",
                turn=turn,
                query=query,
                responses=responses,
                timestamp=row.get("tstamp"),
                meta=meta,
            )
        )
    return records


def _convert(battles: Iterable[tuple[_Where, Any]], prices: PriceBook) -> list[Interaction]:
    """Records of every battle in order; a question_id may appear once."""
    records: list[Interaction] = []
    seen: dict[str, int] = {}
    for where, row in battles:
        battle = _battle(row, where, prices)
        qid = row["question_id"]
        if qid in seen:
            where.fail("question_id", f"{qid} is also battle {seen[qid] + 1}; give each battle its own id")
        seen[qid] = where.index
        records.extend(battle)
    if not records:
        raise GmtError("no battles found; give the chatbot_arena_conversations file")
    return records


def load(folder: Path) -> list[Interaction]:
    """Records of the battles in a local file (or the one battles file in a folder), in file order."""
    path = _data_file(folder)
    return _convert(_rows(path), PriceBook.discover(dataset_root(path)))


def _hub_rows(repo_id: str) -> list[dict[str, Any]]:
    """Every row of the dataset's train split from the Hugging Face Hub."""
    try:
        from datasets import load_dataset  # type: ignore[import-not-found]

        return list(load_dataset(repo_id, split="train"))
    except ImportError:
        pass
    try:
        import pyarrow.parquet as parquet
        from huggingface_hub import snapshot_download
    except ImportError:
        raise GmtError(
            f"hf:{repo_id}: downloading needs the 'datasets' package (pip install datasets); or download the "
            f"dataset's file yourself and pass its path with --data-dir"
        ) from None
    folder = Path(snapshot_download(repo_id, repo_type="dataset", allow_patterns=["*.parquet", "**/*.parquet"]))
    return [row for path in sorted(folder.rglob("*.parquet")) for row in parquet.read_table(path).to_pylist()]


def load_hub(repo_id: str) -> list[Interaction]:
    """Records of a Hub dataset in the upstream schema (lmsys/chatbot_arena_conversations; gated: log in)."""
    try:
        rows = _hub_rows(repo_id)
    except GmtError:
        raise
    except Exception as error:
        reason = " ".join(str(error).split())[:200]
        raise GmtError(
            f"hf:{repo_id}: download failed ({type(error).__name__}: {reason}); accept the dataset's terms "
            f"on huggingface.co and log in (hf auth login), or download it and pass the file with --data-dir"
        ) from None
    label = Path(f"hf:{repo_id}")
    return _convert(((_Where(label, None, i), row) for i, row in enumerate(rows)), PriceBook())
