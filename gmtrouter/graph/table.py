"""Records flattened into arrays once, so every graph and every training step is built by indexing.

An `InteractionTable` holds, for a list of records: who asked (user id), what (query id, deduplicated by
text), and for every shown response its record, LLM, text embedding, rating features and the response it
follows on its track (turn t of LLM m follows turn t-1 of LLM m in the same conversation). Vocabularies
keep first-seen order, so `extend` appends new records without renumbering anything already there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from gmtrouter.data.schema import Interaction
from gmtrouter.embed import TextEncoder
from gmtrouter.errors import GmtError

RATING_FEATURES = 3  # rating normalised within its record, rating on the data's global scale, has-text flag


def rating_features(records: Sequence[Interaction], low: float, high: float) -> np.ndarray:
    """[responses, 2]: min-max within the record (0.5 for a lone or all-equal record) and on [low, high]."""
    if not records:
        return np.zeros((0, 2), np.float32)
    ratings = [np.asarray(r.ratings, dtype=np.float32) for r in records]
    flat = np.concatenate(ratings)
    lows = np.concatenate([np.full(len(x), x.min()) for x in ratings])
    spans = np.concatenate([np.full(len(x), x.max() - x.min()) for x in ratings])
    within = np.where(spans > 0, (flat - lows) / np.where(spans > 0, spans, 1), 0.5)
    scale = high - low if high > low else 1.0
    return np.stack([within, np.clip((flat - low) / scale, 0.0, 1.0)], axis=1).astype(np.float32)


def _vocab_ids(vocab: dict[str, int], keys: Sequence[str]) -> np.ndarray:
    """Ids of `keys`, adding unseen ones to `vocab` in first-seen order."""
    return np.array([vocab.setdefault(key, len(vocab)) for key in keys], dtype=np.int64)


@dataclass
class InteractionTable:
    """Flat arrays over the records and their responses, with the text embeddings they need."""

    llms: list[str]
    encoder: TextEncoder
    rating_range: tuple[float, float]
    records: list[Interaction] = field(default_factory=list)
    user_vocab: dict[str, int] = field(default_factory=dict)
    query_vocab: dict[str, int] = field(default_factory=dict)
    rec_user: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # [R]
    rec_query: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # [R]
    query_emb: np.ndarray | None = None  # [Q, E]
    resp_record: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # [N]
    resp_llm: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # [N]
    resp_rating: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))  # [N]
    resp_x: np.ndarray | None = None  # [N, E + RATING_FEATURES]: text embedding, rating features, has-text
    resp_prev: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # [N], -1 at a track start
    rec_offsets: np.ndarray = field(default_factory=lambda: np.zeros(1, np.int64))  # [R + 1]
    _turn_position: dict[tuple[str, int], int] = field(default_factory=dict)

    @property
    def num_records(self) -> int:
        return len(self.records)

    @property
    def users(self) -> list[str]:
        return list(self.user_vocab)

    @property
    def query_texts(self) -> list[str]:
        return list(self.query_vocab)

    @classmethod
    def build(
        cls,
        records: Sequence[Interaction],
        llms: Sequence[str],
        encoder: TextEncoder,
        rating_range: tuple[float, float],
    ) -> InteractionTable:
        """Flatten `records`; every response's LLM must be in `llms`."""
        table = cls(list(llms), encoder, rating_range)
        table.query_emb = np.zeros((0, encoder.dim), np.float32)
        table.resp_x = np.zeros((0, encoder.dim + RATING_FEATURES), np.float32)
        table.extend(records)
        return table

    def extend(self, records: Sequence[Interaction]) -> np.ndarray:
        """Append records (encoding only texts not seen before); return their new record ids."""
        records = list(records)
        llm_index = {name: i for i, name in enumerate(self.llms)}
        unknown = sorted({llm for r in records for llm in r.llms if llm not in llm_index})
        if unknown:
            raise GmtError(
                f"LLM(s) {', '.join(unknown)} are not known to this router (it knows {', '.join(self.llms)}); "
                "add them to the training data or leave them out"
            )
        first_record, first_response = self.num_records, len(self.resp_llm)
        known_queries = len(self.query_vocab)
        rec_user = _vocab_ids(self.user_vocab, [r.user for r in records])
        rec_query = _vocab_ids(self.query_vocab, [r.query for r in records])
        new_queries = list(self.query_vocab)[known_queries:]
        counts = np.array([len(r.responses) for r in records], dtype=np.int64)
        flat = [resp for r in records for resp in r.responses]
        resp_llm = np.array([llm_index[resp.llm] for resp in flat], dtype=np.int64)

        self.records.extend(records)
        self.rec_user = np.concatenate([self.rec_user, rec_user])
        self.rec_query = np.concatenate([self.rec_query, rec_query])
        self.query_emb = np.concatenate([self.query_emb, self.encoder.encode(new_queries)])
        owners = first_record + np.repeat(np.arange(len(records)), counts)
        self.resp_record = np.concatenate([self.resp_record, owners])
        self.resp_llm = np.concatenate([self.resp_llm, resp_llm])
        self.resp_rating = np.concatenate([self.resp_rating, np.array([x.rating for x in flat], np.float32)])
        self.resp_x = np.concatenate([self.resp_x, self._response_features(records, flat)])
        self.rec_offsets = np.concatenate([self.rec_offsets, first_response + np.cumsum(counts)])
        self.resp_prev = np.concatenate([self.resp_prev, self._track_predecessors(first_record)])
        return np.arange(first_record, self.num_records)

    def _response_features(self, records: list[Interaction], flat: list) -> np.ndarray:
        texts = [resp.text or "" for resp in flat]
        has_text = np.array([bool(t) for t in texts], dtype=np.float32)
        unique = list(dict.fromkeys(t for t in texts if t))
        row = {t: i for i, t in enumerate(unique)}
        vectors = np.concatenate([self.encoder.encode(unique), np.zeros((1, self.encoder.dim), np.float32)])
        emb = vectors[[row.get(t, len(unique)) for t in texts]]
        feats = rating_features(records, *self.rating_range)
        return np.concatenate([emb, feats, has_text[:, None]], axis=1).astype(np.float32)

    def _track_predecessors(self, first_record: int) -> np.ndarray:
        """For the responses of records from `first_record` on, the response of the previous turn on their track.

        The track of a response is its conversation and LLM; when the previous turn showed a single response
        (a plain chat log), every response of this turn follows that one.
        """
        offsets, resp_llm = self.rec_offsets, self.resp_llm
        prev = np.full(offsets[-1] - offsets[first_record], -1, dtype=np.int64)
        base = offsets[first_record]
        for index in range(first_record, self.num_records):
            record = self.records[index]
            self._turn_position.setdefault((record.conversation, record.turn), index)
            before = self._turn_position.get((record.conversation, record.turn - 1))
            if before is None:
                continue
            start, end = offsets[before], offsets[before + 1]
            here = slice(offsets[index] - base, offsets[index + 1] - base)
            if end - start == 1:
                prev[here] = start
                continue
            by_llm = {int(resp_llm[k]): k for k in range(start, end)}
            prev[here] = [by_llm.get(int(m), -1) for m in resp_llm[offsets[index] : offsets[index + 1]]]
        return prev
