"""Records flattened into arrays once, so every graph and every training step is built by indexing.

An `InteractionTable` holds, for a list of records: who asked (user id), what (query id, deduplicated by
text), which LLM answered the conversation's previous turn (`gmtrouter.data.conversation`), and for every
shown response its record, LLM, text embedding, rating features and the response it follows on its track
(turn t of LLM m follows turn t-1 of LLM m in the same conversation). Vocabularies
keep first-seen order, so `extend` appends new records without renumbering anything already there.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

import numpy as np

from gmtrouter.data.schema import Interaction
from gmtrouter.text.base import TextEncoder
from gmtrouter.utils.errors import GmtError

RATING_FEATURES = 3  # rating normalised within its record, rating on the data's global scale, has-text flag
TIE = 0.5  # a tie is half a win for each side: the Bradley-Terry convention every router trains with


def record_pairs(offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(record, response i, response j) of every within-record pair, i < j, in record order.

    `offsets` [R + 1] delimits each record's responses; one pass per record size, not per pair.
    """
    counts = np.diff(offsets)
    parts = []
    for n in np.unique(counts[counts >= 2]):
        records = np.flatnonzero(counts == n)
        i, j = np.triu_indices(int(n), k=1)
        start = offsets[records][:, None]
        parts.append((np.repeat(records, len(i)), (start + i).ravel(), (start + j).ravel()))
    if not parts:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    record, a, b = (np.concatenate(x).astype(np.int64) for x in zip(*parts, strict=True))
    order = np.lexsort((b, a))
    return record[order], a[order], b[order]


def pair_targets(rating_a: np.ndarray, rating_b: np.ndarray) -> np.ndarray:
    """1 where the first response was rated higher, 0 where lower, `TIE` where equal."""
    return np.where(rating_a > rating_b, 1.0, np.where(rating_a < rating_b, 0.0, TIE))


def rating_features(records: Sequence[Interaction], low: float, high: float) -> np.ndarray:
    """[responses, 2]: min-max within the record and on [low, high].

    A tie within a record is 0.5; a lone response (a thumbs up or down) takes its global-scale rating as its
    within-record one, so that it carries a direction like the winner or loser of a comparison.
    """
    if not records:
        return np.zeros((0, 2), np.float32)
    counts = np.array([len(r.responses) for r in records], dtype=np.int64)
    flat = np.array([x.rating for r in records for x in r.responses], dtype=np.float32)
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    lows = np.repeat(np.minimum.reduceat(flat, starts), counts)
    spans = np.repeat(np.maximum.reduceat(flat, starts), counts) - lows
    lone = np.repeat(counts == 1, counts)
    scale = high - low if high > low else 1.0
    global_scale = np.clip((flat - low) / scale, 0.0, 1.0)
    within = np.where(spans > 0, (flat - lows) / np.where(spans > 0, spans, 1), np.where(lone, global_scale, 0.5))
    return np.stack([within, global_scale], axis=1).astype(np.float32)


def _vocab_ids(vocab: dict[Hashable, int], keys: Sequence[Hashable]) -> np.ndarray:
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
    # (user, query) -> id: a user's own verdict on one query is a group of the backbone
    own_vocab: dict[tuple[int, int], int] = field(default_factory=dict)
    rec_own: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # [R]
    rec_conversation: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # [R]
    rec_turn: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # [R]
    rec_prev_llm: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # [R] previous turn's LLM, or -1
    # [R] the table record that previous LLM was read from (its top-rated response), -1 where the record
    # named it itself or it is unknown: a fit may use the previous LLM only when that record is shown too
    rec_prev_from: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    query_emb: np.ndarray | None = None  # [Q, E]
    resp_record: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # [N]
    resp_llm: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # [N]
    resp_rating: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))  # [N]
    resp_text: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # [N] row of text_emb, -1: none
    text_emb: np.ndarray | None = None  # [T, E] each distinct response text's embedding, once
    resp_feats: np.ndarray | None = None  # [N, RATING_FEATURES]: rating in the record, on the global scale, has-text
    resp_prev: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # [N], -1 at a track start
    rec_offsets: np.ndarray = field(default_factory=lambda: np.zeros(1, np.int64))  # [R + 1]
    pair_record: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # [P] record of each pair
    pair_first: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # [P] response i (i < j)
    pair_second: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # [P] response j
    pair_target: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float64))  # [P] 1, 0 or TIE
    conversation_vocab: dict[str, int] = field(default_factory=dict)
    _text_row: dict[str, int] = field(default_factory=dict)

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
        table.text_emb = np.zeros((0, encoder.dim), np.float32)
        table.resp_feats = np.zeros((0, RATING_FEATURES), np.float32)
        table.extend(records)
        return table

    def extend(self, records: Sequence[Interaction]) -> np.ndarray:
        """Append records (encoding only texts not seen before); return their new record ids."""
        records = list(records)
        llm_index = {name: i for i, name in enumerate(self.llms)}
        flat = [resp for r in records for resp in r.responses]
        unknown = sorted({resp.llm for resp in flat} - llm_index.keys())
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
        resp_llm = np.array([llm_index[resp.llm] for resp in flat], dtype=np.int64)

        self.records.extend(records)
        self.rec_user = np.concatenate([self.rec_user, rec_user])
        self.rec_query = np.concatenate([self.rec_query, rec_query])
        own = _vocab_ids(self.own_vocab, list(zip(rec_user.tolist(), rec_query.tolist(), strict=True)))
        self.rec_own = np.concatenate([self.rec_own, own])
        conversations = _vocab_ids(self.conversation_vocab, [r.conversation for r in records])
        self.rec_conversation = np.concatenate([self.rec_conversation, conversations])
        self.rec_turn = np.concatenate([self.rec_turn, np.array([r.turn for r in records], dtype=np.int64)])
        self.query_emb = np.concatenate([self.query_emb, self.encoder.encode(new_queries)])
        owners = first_record + np.repeat(np.arange(len(records)), counts)
        self.resp_record = np.concatenate([self.resp_record, owners])
        self.resp_llm = np.concatenate([self.resp_llm, resp_llm])
        self.resp_rating = np.concatenate([self.resp_rating, np.array([x.rating for x in flat], np.float32)])
        self.resp_text = np.concatenate([self.resp_text, self._text_rows(flat)])
        self.resp_feats = np.concatenate([self.resp_feats, self._rating_features(records, flat)])
        self.rec_offsets = np.concatenate([self.rec_offsets, first_response + np.cumsum(counts)])
        before = self._previous_turns(first_record)
        self.resp_prev = np.concatenate([self.resp_prev, self._track_predecessors(first_record, before)])
        named = [r.previous_llm for r in records]
        prev_llm, prev_from = self._previous_llms(before, named, llm_index)
        self.rec_prev_llm = np.concatenate([self.rec_prev_llm, prev_llm])
        self.rec_prev_from = np.concatenate([self.rec_prev_from, prev_from])
        pair_record, first, second = record_pairs(self.rec_offsets[first_record:] - first_response)
        first, second = first + first_response, second + first_response
        self.pair_record = np.concatenate([self.pair_record, pair_record + first_record])
        self.pair_first = np.concatenate([self.pair_first, first])
        self.pair_second = np.concatenate([self.pair_second, second])
        targets = pair_targets(self.resp_rating[first], self.resp_rating[second])
        self.pair_target = np.concatenate([self.pair_target, targets])
        return np.arange(first_record, self.num_records)

    def response_x(self, responses: np.ndarray) -> np.ndarray:
        """[n, E + RATING_FEATURES] the features of response nodes: text embedding (zeros without a text),
        rating features and the has-text flag. Built on demand: the table keeps each text's embedding once."""
        rows = self.resp_text[responses]
        emb = np.zeros((len(rows), self.encoder.dim), np.float32)
        emb[rows >= 0] = self.text_emb[rows[rows >= 0]]
        return np.concatenate([emb, self.resp_feats[responses]], axis=1).astype(np.float32)

    def _text_rows(self, flat: list) -> np.ndarray:
        """Each response's row in `text_emb` (-1 without a text), encoding only texts not seen before."""
        texts = [resp.text or "" for resp in flat]
        new = [t for t in dict.fromkeys(texts) if t and t not in self._text_row]
        for text in new:
            self._text_row[text] = len(self._text_row)
        self.text_emb = np.concatenate([self.text_emb, self.encoder.encode(new)]) if new else self.text_emb
        return np.array([self._text_row[t] if t else -1 for t in texts], dtype=np.int64)

    def _rating_features(self, records: list[Interaction], flat: list) -> np.ndarray:
        has_text = np.array([bool(resp.text) for resp in flat], dtype=np.float32)
        feats = rating_features(records, *self.rating_range)
        return np.concatenate([feats, has_text[:, None]], axis=1).astype(np.float32)

    def _previous_turns(self, first_record: int) -> np.ndarray:
        """[records from `first_record` on] the record of each one's conversation's previous turn (the first
        record of that turn, wherever it stands in the table), -1 where there is none."""
        if first_record == self.num_records:
            return np.zeros(0, dtype=np.int64)
        # only the records of the new records' conversations can be their previous turns: a few new records
        # (feedback) look among a few records, not the whole table
        conversations = self.rec_conversation
        candidates = (
            np.arange(self.num_records)
            if first_record == 0
            else np.flatnonzero(np.isin(conversations, conversations[first_record:]))
        )
        stride = int(self.rec_turn[candidates].max()) + 2  # turn < stride: a (conversation, turn) key is unique
        keys = conversations[candidates] * stride + self.rec_turn[candidates]
        unique, first = np.unique(keys, return_index=True)
        wanted = conversations[first_record:] * stride + self.rec_turn[first_record:] - 1
        position = np.searchsorted(unique, wanted).clip(max=len(unique) - 1)
        return np.where(unique[position] == wanted, candidates[first[position]], -1)

    def continued_llms(self, records: np.ndarray) -> np.ndarray:
        """[len(records)] the LLM id of each record's top-rated response (the first of equals): the LLM its
        conversation went on with (`gmtrouter.data.conversation.continued_llm`)."""
        if len(records) == 0:
            return np.zeros(0, dtype=np.int64)
        starts, counts = self.rec_offsets[records], np.diff(self.rec_offsets)[records]
        group = np.repeat(np.arange(len(records)), counts)
        group_starts = np.r_[0, np.cumsum(counts)[:-1]]
        responses = np.repeat(starts - group_starts, counts) + np.arange(counts.sum())
        ratings = self.resp_rating[responses]
        top = ratings == np.repeat(np.maximum.reduceat(ratings, group_starts), counts)
        _, first_top = np.unique(group[top], return_index=True)  # groups in order, each at its first top
        return self.resp_llm[responses[np.flatnonzero(top)[first_top]]]

    def _previous_llms(
        self, before: np.ndarray, named: list[str | None], llm_index: dict[str, int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """(LLM id, source record) of the previous turn's LLM for the new records, whose previous turns'
        records are `before`: the record's own `previous_llm` (`named`; source -1), else the LLM the previous
        turn's record went on with."""
        own = np.array([llm_index.get(name, -1) if name is not None else -2 for name in named], dtype=np.int64)
        read = (own == -2) & (before >= 0)
        llm = np.where(own == -2, -1, own)
        llm[read] = self.continued_llms(before[read])
        return llm, np.where(read, before, -1)

    def _track_predecessors(self, first_record: int, before: np.ndarray) -> np.ndarray:
        """For the responses of records from `first_record` on, the response of the previous turn on their track
        (records `before` are their previous turns').

        The track of a response is its conversation and LLM; when the previous turn showed a single response
        (a plain chat log), every response of this turn follows that one.
        """
        offsets = self.rec_offsets
        responses = np.arange(offsets[first_record], offsets[-1])
        previous = before[self.resp_record[responses] - first_record]
        prev = np.full(len(responses), -1, dtype=np.int64)
        has = np.flatnonzero(previous >= 0)
        start, end = offsets[previous[has]], offsets[previous[has] + 1]
        llm = self.resp_llm[responses[has]]
        found = np.where(end - start == 1, start, -1)
        for k in range(int((end - start).max(initial=0))):  # at most one pass per LLM a record can show
            slot = np.minimum(start + k, len(self.resp_llm) - 1)
            match = (found < 0) & (start + k < end) & (self.resp_llm[slot] == llm)
            found[match] = slot[match]
        prev[has] = found
        return prev
