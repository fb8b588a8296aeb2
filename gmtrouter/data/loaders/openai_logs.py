"""Chat logs with OpenAI-style messages and user feedback, as records: one per rated user turn.

Format (docs/data.md): one conversation per line, `{"user", "conversation"?, "timestamp"?, "meta"?,
"messages": [...]}`. Messages are OpenAI chat messages; `system`/`developer` ones are context. Each `user`
message is answered by one `assistant` message: a single answer (`model`, `content`, `feedback`?) or
alternatives from several models (`candidates: [{model, content, rating?}]`, `preferred`?). Feedback is a
number, or thumbs "up"/"down" (1/0); `preferred` names the best candidate (1, the others 0). A user turn with
feedback becomes a record; one without is context, still counted in the turn numbers, and still says which
model answered: each record names, as `previous_llm`, the model whose answer the conversation went on from
(the single answer, or the preferred or top-rated candidate). OpenAI `usage`
(`prompt_tokens`, `completion_tokens`) on an answer gives its tokens and cost; otherwise both are estimated.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from gmtrouter.data.conversation import continued_llm
from gmtrouter.data.loaders.common import build, dataset_root, iter_json_lines
from gmtrouter.data.prices import PriceBook, estimate_tokens
from gmtrouter.data.schema import Interaction, Response
from gmtrouter.utils.errors import DataError, GmtError

THUMBS = {"up": 1.0, "down": 0.0}
CONTEXT_ROLES = ("system", "developer")


class _Line:
    """One conversation line: raises DataErrors that name its file, line and field."""

    def __init__(self, path: Path, line: int) -> None:
        self.path, self.line = path, line

    def fail(self, field: str | None, message: str) -> DataError:
        return DataError(str(self.path), self.line, field, message)


def _rating(value: Any, at: _Line, field: str) -> float:
    """A feedback value as a rating: a finite number as it is, thumbs up 1, thumbs down 0."""
    if isinstance(value, str) and value.lower() in THUMBS:
        return THUMBS[value.lower()]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise at.fail(field, f"{value!r} is not a number or a thumb ('up'/'down')")
    return float(value)


def _text(content: Any, at: _Line, field: str) -> str:
    """Message content: a string, or OpenAI content parts of which the text parts are kept."""
    if isinstance(content, str):
        return content
    if content is None:
        return ""
    if isinstance(content, list) and all(isinstance(part, dict) for part in content):
        return "\n".join(str(part["text"]) for part in content if "text" in part)
    raise at.fail(field, "must be text or a list of content parts")


def _name(value: Any, at: _Line, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise at.fail(field, "is required and must be a non-empty string")
    return value


def _usage(usage: Any, at: _Line, field: str) -> tuple[int, int]:
    """(prompt tokens, completion tokens) of an OpenAI `usage` object."""
    counts = [usage.get(key) for key in ("prompt_tokens", "completion_tokens")] if isinstance(usage, dict) else []
    if len(counts) != 2 or not all(type(count) is int and count >= 0 for count in counts):
        raise at.fail(field, "needs prompt_tokens and completion_tokens as counts")
    return counts[0], counts[1]


def _response(answer: dict[str, Any], rating: float, query: str, prices: PriceBook, at: _Line, field: str) -> Response:
    """One rated answer with its tokens and cost: from `usage` where the log has it, else estimated."""
    model = _name(answer.get("model"), at, f"{field}.model")
    text = _text(answer.get("content"), at, f"{field}.content")
    if answer.get("usage") is None:
        prompt_tokens, tokens = estimate_tokens(query), estimate_tokens(text)
    else:
        prompt_tokens, tokens = _usage(answer["usage"], at, f"{field}.usage")
    cost = prices.cost(model, prompt_tokens, tokens)
    fields = {"llm": model, "rating": rating, "text": text, "tokens": tokens, "cost": cost}
    return build(Response, at.path, at.line, prefix=f"{field}.", **fields)


def _candidates(message: dict[str, Any], query: str, prices: PriceBook, at: _Line, field: str) -> list[Response]:
    """The rated alternatives of one turn, in the log's order; none if the turn has no feedback."""
    candidates = message["candidates"]
    if not isinstance(candidates, list) or not all(isinstance(c, dict) for c in candidates) or not candidates:
        raise at.fail(f"{field}.candidates", "must be a non-empty list of {model, content, rating?}")
    if "feedback" in message:
        raise at.fail(f"{field}.feedback", "rate candidates with 'preferred' or their own 'rating'")
    rated = ["rating" in candidate for candidate in candidates]
    preferred = message.get("preferred")
    if preferred is not None and any(rated):
        raise at.fail(f"{field}.preferred", "give 'preferred' or candidate ratings, not both")
    if preferred is not None:
        models = [candidate.get("model") for candidate in candidates]
        if preferred not in models:
            raise at.fail(f"{field}.preferred", f"{preferred!r} is none of the candidates' models {models}")
        ratings = [1.0 if model == preferred else 0.0 for model in models]
    elif all(rated):
        ratings = [_rating(c["rating"], at, f"{field}.candidates[{j}].rating") for j, c in enumerate(candidates)]
    elif any(rated):
        missing = rated.index(False)
        raise at.fail(f"{field}.candidates[{missing}].rating", "is missing; rate every candidate or none")
    else:
        return []
    return [
        _response(candidate, rating, query, prices, at, f"{field}.candidates[{j}]")
        for j, (candidate, rating) in enumerate(zip(candidates, ratings, strict=True))
    ]


def _answer(message: dict[str, Any], query: str, prices: PriceBook, at: _Line, field: str) -> list[Response]:
    """The rated responses of one assistant message: its candidates, or itself if it has feedback."""
    if "candidates" in message:
        return _candidates(message, query, prices, at, field)
    if message.get("feedback") is None:
        return []
    rating = _rating(message["feedback"], at, f"{field}.feedback")
    return [_response(message, rating, query, prices, at, field)]


def _conversation(item: dict[str, Any], at: _Line, prices: PriceBook) -> list[Interaction]:
    """The records of one logged conversation, in turn order."""
    user = _name(item.get("user"), at, "user")
    conversation = item.get("conversation", f"{at.path.name}:{at.line}")
    conversation = _name(conversation, at, "conversation")
    messages = item.get("messages")
    if not isinstance(messages, list):
        raise at.fail("messages", "is required and must be a list of chat messages")
    meta = item.get("meta", {})
    if not isinstance(meta, dict):
        raise at.fail("meta", "must be an object")
    records, turn, query = [], 0, None
    answered_by: str | None = None  # the LLM whose answer the conversation went on from
    for i, message in enumerate(messages):
        field = f"messages[{i}]"
        role = message.get("role") if isinstance(message, dict) else None
        if role in CONTEXT_ROLES:
            continue
        if role == "user":
            if query is not None:
                raise at.fail(f"{field}.role", "a second user message in a row; add the answer between them")
            turn, query = turn + 1, _text(message.get("content"), at, f"{field}.content")
        elif role == "assistant":
            if query is None:
                where = "before any user message" if turn == 0 else "after another assistant message"
                raise at.fail(f"{field}.role", f"an assistant message {where}; each answers one user message")
            responses = _answer(message, query, prices, at, field)
            if responses:
                record = build(
                    Interaction,
                    at.path,
                    at.line,
                    user=user,
                    conversation=conversation,
                    turn=turn,
                    query=query,
                    responses=responses,
                    timestamp=message.get("timestamp", item.get("timestamp")),
                    previous_llm=answered_by,
                    meta={**meta, "source": "openai_logs"},
                )
                records.append(record)
                answered_by = continued_llm(record)
            else:  # an unrated turn: a single answer still says who answered; unrated candidates do not
                model = message.get("model") if "candidates" not in message else None
                answered_by = model if isinstance(model, str) and model else None
            query = None
        else:
            roles = ", ".join(("user", "assistant", *CONTEXT_ROLES))
            raise at.fail(f"{field}.role", f"{role!r} is not one of {roles}")
    return records


def _files(source: Path) -> list[Path]:
    if source.is_file():
        return [source]
    files = sorted(source.glob("*.jsonl"))
    if not files:
        raise GmtError(f"{source}: no .jsonl log files; point --data-dir at a log file or its folder")
    return files


def load(source: Path) -> list[Interaction]:
    """Records of every rated turn in a log file (or every `*.jsonl` of a folder), in file order."""
    prices = PriceBook.discover(dataset_root(source))
    records: list[Interaction] = []
    owners: dict[str, tuple[Path, int]] = {}
    for path in _files(source):
        for line, item in iter_json_lines(path):
            at = _Line(path, line)
            found = _conversation(item, at, prices)
            if found:
                conversation = found[0].conversation
                if conversation in owners:
                    other, other_line = owners[conversation]
                    raise at.fail("conversation", f"{conversation!r} is also on {other.name}:{other_line}")
                owners[conversation] = (path, line)
            records.extend(found)
    if not records:
        raise GmtError(f"{source}: no user turn has feedback; nothing to learn preferences from")
    return records
