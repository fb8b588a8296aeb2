"""Which LLM answered a conversation's previous turn: what a switch of LLM is measured against.

A record may say so itself (`previous_llm`: a chat log knows which model produced each assistant turn, rated
or not). Otherwise it is read from the previous turn's record: its single response, or, where it showed
several, the one the user rated highest (the first of equals), the answer the conversation went on from.
"""

from __future__ import annotations

from collections.abc import Sequence

from gmtrouter.data.schema import Interaction


def continued_llm(record: Interaction) -> str:
    """The LLM the conversation went on with after `record`: its top-rated response's (the first of equals)."""
    ratings = record.ratings
    return record.responses[ratings.index(max(ratings))].llm


def previous_llms(records: Sequence[Interaction]) -> list[str | None]:
    """For each record, the LLM that answered its conversation's previous turn (None where nobody knows):
    the record's own `previous_llm`, else `continued_llm` of the previous turn's record among `records`."""
    turns: dict[tuple[str, int], Interaction] = {}
    for record in records:
        turns.setdefault((record.conversation, record.turn), record)  # the first, as the interaction table does
    out: list[str | None] = []
    for record in records:
        before = turns.get((record.conversation, record.turn - 1))
        out.append(record.previous_llm or (continued_llm(before) if before is not None else None))
    return out
