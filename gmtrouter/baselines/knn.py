"""`knn`: the nearest training queries vote with their observed preferences.

The kNN router of RouterBench (Hu et al. 2024, arXiv 2403.12031): simple, and strong when queries repeat.

Every distinct training query keeps, per LLM, its (tie-as-half) wins and comparisons over all users. A new
query takes its k nearest training queries by cosine similarity of their embeddings, weights them by
softmax(similarity / temperature), and scores each LLM by the logit of its weighted win rate, smoothed
toward the LLM's global win rate with `smoothing` pseudo-comparisons. It sees the query, never the user.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from scipy.special import logit, softmax

from gmtrouter.baselines.base import BaselineRouter, QueryEncoding, RecordTable, pairs_auc, tune
from gmtrouter.text.base import DEFAULT_ENCODER


def win_counts(table: RecordTable, n_llms: int) -> tuple[np.ndarray, np.ndarray]:
    """([queries, LLMs] wins, [queries, LLMs] comparisons) of each distinct query of `table`."""
    shape = (len(table.queries), n_llms)
    wins, comparisons = np.zeros(shape), np.zeros(shape)
    query = table.pair_query
    np.add.at(wins, (query, table.pair_first), table.pair_target)
    np.add.at(wins, (query, table.pair_second), 1.0 - table.pair_target)
    np.add.at(comparisons, (query, table.pair_first), 1.0)
    np.add.at(comparisons, (query, table.pair_second), 1.0)
    return wins, comparisons


class KNNRouter(QueryEncoding, BaselineRouter):
    """Similarity-weighted win rates of the k nearest training queries."""

    name = "knn"
    GRID: ClassVar[dict[str, list[Any]]] = {
        "k": [10, 5, 20, 50],
        "temperature": [0.05, 0.01, 0.2, 1.0],
        "smoothing": [1.0, 4.0],
    }

    def __init__(
        self,
        encoder: str = DEFAULT_ENCODER,
        grid: dict[str, Any] | None = None,
        valid_frac: float = 0.1,
        seed: int = 0,
    ) -> None:
        self.encoder = encoder
        self.grid = grid
        self.valid_frac = valid_frac
        self.seed = seed

    def _index(self, table: RecordTable) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        wins, comparisons = win_counts(table, len(self.llms_))
        return self.encode(table.queries), wins, comparisons

    def _fit(self, train, valid, grid):
        valid_table = RecordTable.build(valid, self.llms_)
        index = self._index(RecordTable.build(train, self.llms_))
        valid_emb = self.encode(valid_table.queries)

        def run(params: dict[str, Any]) -> tuple[float, None]:
            scores = self._vote(valid_emb, *index, params)[valid_table.rec_query]
            return pairs_auc(valid_table, scores), None

        params, _, best, trials = tune(grid, run, bool(valid))
        self.index_emb_, self.wins_, self.comparisons_ = self._index(RecordTable.build(train + valid, self.llms_))
        return params, best, trials

    @staticmethod
    def _vote(
        query_emb: np.ndarray, index_emb: np.ndarray, wins: np.ndarray, comparisons: np.ndarray, params: dict
    ) -> np.ndarray:
        """[n, LLMs] smoothed win-rate logits for n query embeddings."""
        k = min(int(params["k"]), len(index_emb))
        similarity = query_emb @ index_emb.T  # [n, Q]
        nearest = np.argpartition(-similarity, k - 1, axis=1)[:, :k]  # [n, k]
        weight = softmax(np.take_along_axis(similarity, nearest, axis=1) / params["temperature"], axis=1)
        won = np.einsum("nk,nkm->nm", weight, wins[nearest])
        played = np.einsum("nk,nkm->nm", weight, comparisons[nearest])
        prior = wins.sum(axis=0) / np.maximum(comparisons.sum(axis=0), 1e-9)
        prior = np.clip(np.where(comparisons.sum(axis=0) > 0, prior, 0.5), 1e-3, 1 - 1e-3)
        smoothing = params["smoothing"]
        return logit((won + smoothing * prior) / (played + smoothing))

    def llm_scores(self, users, queries, categories=None) -> np.ndarray:
        if len(queries) == 0:
            return np.zeros((0, len(self.llms_)))
        return self._vote(self.encode(queries), self.index_emb_, self.wins_, self.comparisons_, self.params_)

    def _fitted(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        return {}, {
            "index_emb": torch.from_numpy(np.ascontiguousarray(self.index_emb_)),
            "wins": torch.from_numpy(self.wins_),
            "comparisons": torch.from_numpy(self.comparisons_),
        }

    def _restore(self, fitted: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        self.index_emb_ = tensors["index_emb"].numpy()
        self.wins_ = tensors["wins"].numpy()
        self.comparisons_ = tensors["comparisons"].numpy()
