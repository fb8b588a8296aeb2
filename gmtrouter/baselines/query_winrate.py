"""Per-query win-rate routers: what everybody thought of the answers to *this* query, shrunk to the global ranking.

`query-winrate` adds to the global Bradley-Terry strengths a deviation per distinct query text, fitted on every
user's comparisons of that query's answers with a Gaussian prior of strength `query_prior` (few votes stay near
the global ranking). A query nobody has rated takes the deviation of the nearest rated query by text embedding
when their cosine similarity reaches `min_similarity`, else the global ranking. `user-query-winrate` adds the
user's deviation too; both deviations are fitted together by backfitting (each with the other as offset).
Deviations come from the routing context's history, so new feedback counts at once, without a refit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from gmtrouter.baselines.base import BaselineContext, QueryEncoding, RecordTable, pairs_auc, tune
from gmtrouter.baselines.winrate import GlobalWinrateRouter, global_strengths
from gmtrouter.data.schema import Interaction
from gmtrouter.model.bradley_terry import bradley_terry
from gmtrouter.text.base import DEFAULT_ENCODER

BACKFIT_ROUNDS = 3  # user and query deviations alternate this many times (the estimates settle by then)


def _pair_offset(deviation: np.ndarray, group: np.ndarray, table: RecordTable) -> np.ndarray:
    return deviation[group, table.pair_first] - deviation[group, table.pair_second]


def fit_deviations(
    table: RecordTable, strengths: np.ndarray, query_prior: float, user_prior: float | None
) -> tuple[np.ndarray, np.ndarray]:
    """([users, LLMs], [queries, LLMs]) deviations from `strengths`; users' are zero when `user_prior` is None."""
    n = len(strengths)
    base = strengths[table.pair_first] - strengths[table.pair_second]
    users = np.zeros((len(table.users), n))
    args = (table.pair_first, table.pair_second, table.pair_target)
    pair_user, pair_query = table.pair_user, table.pair_query
    queries = bradley_terry(pair_query, *args, len(table.queries), n, query_prior, base)
    if user_prior is None:
        return users, queries
    for _ in range(BACKFIT_ROUNDS):
        users = bradley_terry(
            pair_user, *args, len(table.users), n, user_prior, base + _pair_offset(queries, pair_query, table)
        )
        queries = bradley_terry(
            pair_query, *args, len(table.queries), n, query_prior, base + _pair_offset(users, pair_user, table)
        )
    return users, queries


def nearest(query_emb: np.ndarray, index_emb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index of the most similar row of `index_emb`, its cosine similarity) for each query embedding."""
    if len(index_emb) == 0 or len(query_emb) == 0:
        return np.full(len(query_emb), -1, dtype=np.int64), np.full(len(query_emb), -np.inf)
    similarity = query_emb @ index_emb.T
    best = similarity.argmax(axis=1)
    return best.astype(np.int64), similarity[np.arange(len(query_emb)), best]


def query_rows(
    queries: Sequence[str], seen: dict[str, int], neighbour: tuple[np.ndarray, np.ndarray], min_similarity: float
) -> np.ndarray:
    """Row of each query's deviation: its own when seen, the nearest seen query's when similar enough, else -1.

    `neighbour` is `nearest()` for the same queries (only its unseen entries are read).
    """
    index, similarity = neighbour
    own = np.array([seen.get(q, -1) for q in queries], dtype=np.int64)
    borrowed = np.where(similarity >= min_similarity, index, -1)
    return np.where(own >= 0, own, borrowed)


class QueryWinrateRouter(QueryEncoding, GlobalWinrateRouter):
    """The global strengths plus the query's deviation from other users' verdicts on its answers."""

    name = "query-winrate"
    USES_USERS: ClassVar[bool] = False
    GRID: ClassVar[dict[str, list[Any]]] = {
        "l2": [1.0, 0.1, 10.0],
        "query_prior": [1.0, 0.5, 2.0, 4.0, 16.0, 64.0],
        "min_similarity": [0.9, 0.7, 0.8, 2.0],  # 2.0: never borrow (cosine similarity is at most 1)
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

    def _fit(self, train, valid, grid):
        n = len(self.llms_)
        fit_table = RecordTable.build(train, self.llms_)
        valid_table = RecordTable.build(valid, self.llms_)
        seen = {q: i for i, q in enumerate(fit_table.queries)}
        users = {u: i for i, u in enumerate(fit_table.users)}
        unseen = [q not in seen for q in valid_table.queries]
        neighbour = np.full(len(valid_table.queries), -1, dtype=np.int64), np.full(len(valid_table.queries), -np.inf)
        if any(unseen):  # embeddings only when some validation query was never rated in the fit part
            found = nearest(
                self.encode(list(np.array(valid_table.queries, dtype=object)[unseen])), self.encode(fit_table.queries)
            )
            neighbour[0][np.array(unseen)], neighbour[1][np.array(unseen)] = found
        user_rows = np.array([users.get(u, -1) for u in valid_table.users], dtype=np.int64)[valid_table.rec_user]
        strengths_by_l2: dict[float, np.ndarray] = {}

        def run(params: dict[str, Any]) -> tuple[float, None]:
            if params["l2"] not in strengths_by_l2:
                strengths_by_l2[params["l2"]] = global_strengths(fit_table, n, params["l2"])
            strengths = strengths_by_l2[params["l2"]]
            user_dev, query_dev = fit_deviations(
                fit_table, strengths, params["query_prior"], params.get("user_prior") if self.USES_USERS else None
            )
            rows = query_rows(valid_table.queries, seen, neighbour, params["min_similarity"])[valid_table.rec_query]
            scores = strengths + _with_zero_row(query_dev)[rows] + _with_zero_row(user_dev)[user_rows]
            return pairs_auc(valid_table, scores), None

        params, _, best, trials = tune(grid, run, bool(valid))
        self.strengths_ = global_strengths(RecordTable.build(train + valid, self.llms_), n, params["l2"])
        return params, best, trials

    def context(self, history: Sequence[Interaction]) -> QueryWinrateContext:
        return QueryWinrateContext(self, history)


class UserQueryWinrateRouter(QueryWinrateRouter):
    """The global strengths plus the user's deviation and the query's deviation, fitted together."""

    name = "user-query-winrate"
    USES_USERS: ClassVar[bool] = True
    GRID: ClassVar[dict[str, list[Any]]] = {
        "l2": [1.0, 0.1],
        "query_prior": [1.0, 0.5, 4.0, 16.0],
        "user_prior": [4.0, 1.0, 16.0, 64.0],
        "min_similarity": [0.9, 0.8, 2.0],
    }


def _with_zero_row(deviation: np.ndarray) -> np.ndarray:
    """`deviation` with a last row of zeros, which index -1 picks (no evidence: the global ranking)."""
    return np.vstack([deviation, np.zeros((1, deviation.shape[1]))])


class QueryWinrateContext(BaselineContext):
    """Query (and user) deviations from the history; embeddings of its queries only once an unseen query comes."""

    router: QueryWinrateRouter

    def refresh(self) -> None:
        router, params = self.router, self.router.params_
        table = RecordTable.build(self.history, router.llms_)
        self.queries = table.queries
        self.query_ids = {q: i for i, q in enumerate(table.queries)}
        self.user_ids = {u: i for i, u in enumerate(table.users)}
        user_prior = params.get("user_prior") if router.USES_USERS else None
        user_dev, query_dev = fit_deviations(table, router.strengths_, params["query_prior"], user_prior)
        self.user_dev, self.query_dev = _with_zero_row(user_dev), _with_zero_row(query_dev)
        self._query_emb: np.ndarray | None = None

    def _neighbours(self, queries: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        unseen = np.array([q not in self.query_ids for q in queries], dtype=bool)
        index, similarity = np.full(len(queries), -1, dtype=np.int64), np.full(len(queries), -np.inf)
        if unseen.any() and self.queries:
            if self._query_emb is None:
                self._query_emb = self.router.encode(self.queries)
            texts = [q for q, new in zip(queries, unseen, strict=True) if new]
            index[unseen], similarity[unseen] = nearest(self.router.encode(texts), self._query_emb)
        return index, similarity

    def llm_scores(self, users, queries, categories=None) -> np.ndarray:
        queries = list(queries)
        rows = query_rows(queries, self.query_ids, self._neighbours(queries), self.router.params_["min_similarity"])
        user_rows = np.array([self.user_ids.get(u, -1) for u in users], dtype=np.int64)
        return self.router.strengths_ + self.query_dev[rows] + self.user_dev[user_rows]
