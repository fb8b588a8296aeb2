"""Records flattened into arrays once, so every graph and every training step is built by indexing.

An `InteractionTable` holds, for a list of records: who asked (user id), what (query id, deduplicated by
text), and for every shown response its record, LLM, text-embedding row, rating features and the response
it follows on its track (turn t of LLM m follows turn t-1 of LLM m in the same conversation).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from gmtrouter.data.schema import Interaction
from gmtrouter.embed import TextEncoder
from gmtrouter.errors import GmtError

RATING_FEATURES = 3  # rating normalised within its record, rating on the data's global scale, has-text flag


def rating_features(records: Sequence[Interaction], low: float, high: float) -> np.ndarray:
    """[responses, 2]: min-max within the record (0.5 for a lone or all-equal record) and on [low, high]."""
    ratings = [np.asarray(r.ratings, dtype=np.float32) for r in records]
    flat = np.concatenate(ratings)
    lows = np.concatenate([np.full(len(x), x.min()) for x in ratings])
    spans = np.concatenate([np.full(len(x), x.max() - x.min()) for x in ratings])
    within = np.where(spans > 0, (flat - lows) / np.where(spans > 0, spans, 1), 0.5)
    scale = high - low if high > low else 1.0
    return np.stack([within, np.clip((flat - low) / scale, 0.0, 1.0)], axis=1).astype(np.float32)


@dataclass
class InteractionTable:
    """Flat arrays over the records and their responses, with the text embeddings they need."""

    records: list[Interaction]
    users: list[str]  # user vocabulary, index = user id
    rec_user: np.ndarray  # [R]
    rec_query: np.ndarray  # [R] query id
    query_texts: list[str]  # query vocabulary, index = query id
    query_emb: np.ndarray  # [Q, E]
    resp_record: np.ndarray  # [N] record of each response
    resp_llm: np.ndarray  # [N] LLM id (index into the model's LLM list)
    resp_rating: np.ndarray  # [N] the rating as given
    resp_x: np.ndarray  # [N, E + RATING_FEATURES] text embedding, rating features, has-text flag
    resp_prev: np.ndarray  # [N] response this one follows on its track, -1 at a track's start
    rec_offsets: np.ndarray  # [R + 1] responses of record r are rec_offsets[r]:rec_offsets[r+1]

    @property
    def num_records(self) -> int:
        return len(self.records)

    @classmethod
    def build(
        cls,
        records: Sequence[Interaction],
        llms: Sequence[str],
        encoder: TextEncoder,
        rating_range: tuple[float, float],
    ) -> InteractionTable:
        """Flatten `records`; every response's LLM must be in `llms`."""
        records = list(records)
        llm_index = {name: i for i, name in enumerate(llms)}
        unknown = sorted({llm for r in records for llm in r.llms if llm not in llm_index})
        if unknown:
            raise GmtError(
                f"LLM(s) {', '.join(unknown)} are not known to this router (it knows {', '.join(llms)}); "
                "add them to the training data or leave them out"
            )
        users, rec_user = np.unique(np.array([r.user for r in records], dtype=object), return_inverse=True)
        query_texts, rec_query = np.unique(np.array([r.query for r in records], dtype=object), return_inverse=True)
        counts = np.array([len(r.responses) for r in records])
        offsets = np.concatenate([[0], np.cumsum(counts)])
        resp_record = np.repeat(np.arange(len(records)), counts)
        flat = [resp for r in records for resp in r.responses]
        resp_llm = np.array([llm_index[resp.llm] for resp in flat], dtype=np.int64)

        texts = [resp.text or "" for resp in flat]
        has_text = np.array([bool(t) for t in texts], dtype=np.float32)
        unique_texts, text_row = np.unique(np.array(texts, dtype=object), return_inverse=True)
        text_emb = np.zeros((len(unique_texts), encoder.dim), dtype=np.float32)
        written = [i for i, t in enumerate(unique_texts) if t]
        text_emb[written] = encoder.encode([str(unique_texts[i]) for i in written])
        resp_emb = text_emb[text_row]
        feats = rating_features(records, *rating_range) if records else np.zeros((0, 2), np.float32)
        resp_x = np.concatenate([resp_emb, feats, has_text[:, None]], axis=1).astype(np.float32)

        return cls(
            records=records,
            users=[str(u) for u in users],
            rec_user=rec_user.astype(np.int64),
            rec_query=rec_query.astype(np.int64),
            query_texts=[str(q) for q in query_texts],
            query_emb=encoder.encode([str(q) for q in query_texts]),
            resp_record=resp_record,
            resp_llm=resp_llm,
            resp_rating=np.array([resp.rating for resp in flat], dtype=np.float32),
            resp_x=resp_x,
            resp_prev=_track_predecessors(records, offsets, resp_llm),
            rec_offsets=offsets,
        )


def _track_predecessors(records: Sequence[Interaction], offsets: np.ndarray, resp_llm: np.ndarray) -> np.ndarray:
    """For each response, the response of the previous turn on the same track, or -1.

    The track of a response is its conversation and LLM; when the previous turn showed a single response
    (a plain chat log), every response of this turn follows that one.
    """
    prev = np.full(len(resp_llm), -1, dtype=np.int64)
    position = {(r.conversation, r.turn): i for i, r in enumerate(records)}
    for index, record in enumerate(records):
        before = position.get((record.conversation, record.turn - 1))
        if before is None:
            continue
        start, end = offsets[before], offsets[before + 1]
        here = slice(offsets[index], offsets[index + 1])
        if end - start == 1:
            prev[here] = start
            continue
        by_llm = {int(resp_llm[k]): k for k in range(start, end)}
        prev[here] = [by_llm.get(int(m), -1) for m in resp_llm[here]]
    return prev
