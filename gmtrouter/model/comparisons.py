"""Rated comparisons among records: the data every part of the backbone is fitted to.

A pair of rated responses is a comparison; a lone rated response (a thumbs up or down) is a comparison against
a virtual opponent of average strength, with its rating on the data's global scale as the outcome, so a thumb
carries direction. The previous turn's LLM enters a fit only when the record it was read from is shown too
(or the record named it itself), so no hidden rating reaches a deviation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gmtrouter.graph.table import InteractionTable

GLOBAL_SCALE = 1  # column of the table's `resp_feats` with the rating on the data's global scale


@dataclass(frozen=True)
class Comparisons:
    """Rated comparisons among a set of records: pairs of responses, and lone responses against the average.

    `second` is `num_llms` (the virtual average opponent) for a lone response.
    """

    record: np.ndarray  # [C] table record id
    first: np.ndarray  # [C] LLM id
    second: np.ndarray  # [C] LLM id, or num_llms for the virtual opponent
    target: np.ndarray  # [C] 1, 0, 0.5 (tie) for pairs; the global-scale rating in [0, 1] for a lone response

    def margin(self, scores: np.ndarray) -> np.ndarray:
        """[C] each comparison's score difference, first minus second, from `scores` [C, L + 1] (every LLM's
        score for the comparison's record, the virtual average opponent last)."""
        rows = np.arange(len(self.record))
        return scores[rows, self.first] - scores[rows, self.second]

    def subset(self, keep: np.ndarray | slice) -> Comparisons:
        """The comparisons `keep` selects."""
        return Comparisons(self.record[keep], self.first[keep], self.second[keep], self.target[keep])

    def stay(self, previous: np.ndarray) -> np.ndarray:
        """[C] +1 where the first side is the LLM that answered the previous turn (`previous` [table records],
        -1: unknown), -1 where the second is, 0 where neither (the virtual opponent never is)."""
        prev = previous[self.record]
        known = prev >= 0
        return (known & (self.first == prev)).astype(np.float64) - (known & (self.second == prev))

    @classmethod
    def of(cls, table: InteractionTable, records: np.ndarray) -> Comparisons:
        """The comparisons inside table records `records`."""
        shown = np.zeros(table.num_records, dtype=bool)
        shown[np.asarray(records, dtype=np.int64)] = True
        pairs = shown[table.pair_record]
        sizes = np.diff(table.rec_offsets)
        lone = np.flatnonzero(shown & (sizes == 1))
        lone_response = table.rec_offsets[lone]
        num_llms = len(table.llms)
        return cls(
            record=np.concatenate([table.pair_record[pairs], lone]),
            first=np.concatenate([table.resp_llm[table.pair_first[pairs]], table.resp_llm[lone_response]]),
            second=np.concatenate(
                [table.resp_llm[table.pair_second[pairs]], np.full(len(lone), num_llms, dtype=np.int64)]
            ),
            target=np.concatenate(
                [table.pair_target[pairs], table.resp_feats[lone_response, GLOBAL_SCALE].astype(np.float64)]
            ),
        )


def with_average(scores: np.ndarray) -> np.ndarray:
    """[n, L] scores -> [n, L + 1] with the average LLM's score (the virtual opponent of a lone response) last."""
    return np.concatenate([scores, scores.mean(axis=1, keepdims=True)], axis=1)


def usable_previous(table: InteractionTable, records: np.ndarray) -> np.ndarray:
    """[table records] the previous turn's LLM where a fit on `records` may use it: named by the record itself,
    or read from a record that is among `records` as well; -1 elsewhere."""
    shown = np.zeros(table.num_records + 1, dtype=bool)
    shown[np.asarray(records, dtype=np.int64)] = True
    source = table.rec_prev_from
    return np.where((source < 0) | shown[np.where(source < 0, -1, source)], table.rec_prev_llm, -1)


def stay_bonus(previous: np.ndarray, amount: np.ndarray | float, width: int) -> np.ndarray:
    """[B, width] `amount` (one per row, or one for all) in the column of each row's previous LLM, 0 elsewhere
    and in rows whose previous LLM is unknown (-1): how stickiness enters a row of scores."""
    previous = np.asarray(previous, dtype=np.int64)
    out = np.zeros((len(previous), width))
    known = np.flatnonzero(previous >= 0)
    out[known, previous[known]] = np.broadcast_to(amount, previous.shape)[known]
    return out


def refit_scope(table: InteractionTable, users: np.ndarray) -> np.ndarray:
    """The table records that fitting the deviations of table users `users`, and of every query they asked,
    reads: their records, and every record of those queries."""
    theirs = np.isin(table.rec_user, users)
    return np.flatnonzero(theirs | np.isin(table.rec_query, np.unique(table.rec_query[theirs])))
