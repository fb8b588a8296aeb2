"""Win-rate routers: one Bradley-Terry ranking for everybody, or each user's ranking shrunk toward it.

`global-winrate` is the always-pick-the-strongest rule (the Chatbot Arena leaderboard's Bradley-Terry
model, Chiang et al. 2024). `user-winrate` adds, for every user with history, a deviation from the global
strengths fitted on that user's own comparisons with a Gaussian prior of strength `prior`: a user with few
comparisons stays near the global ranking, one with many moves to their own. The deviations are computed
from the routing context's history, so a new user adapts from their first interactions with no refit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch

from gmtrouter.baselines.base import BaselineContext, BaselineRouter, RecordTable, pairs_auc, tune
from gmtrouter.data.schema import Interaction
from gmtrouter.model.bradley_terry import bradley_terry


def global_strengths(table: RecordTable, n_llms: int, l2: float) -> np.ndarray:
    """[LLMs] Bradley-Terry strengths from every pair of `table`, all users pooled."""
    zeros = np.zeros(len(table.pair_target), dtype=np.int64)
    return bradley_terry(zeros, table.pair_first, table.pair_second, table.pair_target, 1, n_llms, l2)[0]


def user_deviations(table: RecordTable, strengths: np.ndarray, prior: float) -> np.ndarray:
    """[table users, LLMs] each user's deviation from `strengths`, shrunk by a prior of strength `prior`."""
    offset = strengths[table.pair_first] - strengths[table.pair_second]
    return bradley_terry(
        table.pair_user,
        table.pair_first,
        table.pair_second,
        table.pair_target,
        len(table.users),
        len(strengths),
        prior,
        offset,
    )


class GlobalWinrateRouter(BaselineRouter):
    """Bradley-Terry strengths over all users' comparisons: every request goes to the strongest LLM."""

    name = "global-winrate"
    GRID: ClassVar[dict[str, list[Any]]] = {"l2": [1.0, 0.01, 0.1, 10.0]}

    def __init__(self, grid: dict[str, Any] | None = None, valid_frac: float = 0.1, seed: int = 0) -> None:
        self.grid = grid
        self.valid_frac = valid_frac
        self.seed = seed

    def _fit(self, train, valid, grid):
        n = len(self.llms_)
        fit_table = RecordTable.build(train, self.llms_)
        valid_table = RecordTable.build(valid, self.llms_)

        def run(params: dict[str, Any]) -> tuple[float, None]:
            strengths = global_strengths(fit_table, n, params["l2"])
            return pairs_auc(valid_table, np.tile(strengths, (valid_table.num_records, 1))), None

        params, _, best, trials = tune(grid, run, bool(valid))
        self.strengths_ = global_strengths(RecordTable.build(train + valid, self.llms_), n, params["l2"])
        return params, best, trials

    def _fitted(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        return {}, {"strengths": torch.from_numpy(self.strengths_)}

    def _restore(self, fitted: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        self.strengths_ = tensors["strengths"].numpy().astype(np.float64)

    def llm_scores(self, users, queries, categories=None) -> np.ndarray:
        return np.tile(self.strengths_, (len(users), 1))


class UserWinrateRouter(GlobalWinrateRouter):
    """The global strengths plus each user's own Bradley-Terry deviation, fitted from their history."""

    name = "user-winrate"
    GRID: ClassVar[dict[str, list[Any]]] = {
        "l2": [1.0, 0.01, 0.1, 10.0],
        "prior": [4.0, 0.5, 1.0, 2.0, 8.0, 16.0, 32.0, 64.0],
    }

    def _fit(self, train, valid, grid):
        n = len(self.llms_)
        fit_table = RecordTable.build(train, self.llms_)
        valid_table = RecordTable.build(valid, self.llms_)
        users = {u: i for i, u in enumerate(fit_table.users)}

        def run(params: dict[str, Any]) -> tuple[float, None]:
            strengths = global_strengths(fit_table, n, params["l2"])
            deviation = np.vstack([user_deviations(fit_table, strengths, params["prior"]), np.zeros(n)])
            rows = np.array([users.get(u, -1) for u in valid_table.users], dtype=np.int64)[valid_table.rec_user]
            return pairs_auc(valid_table, strengths + deviation[rows]), None

        params, _, best, trials = tune(grid, run, bool(valid))
        self.strengths_ = global_strengths(RecordTable.build(train + valid, self.llms_), n, params["l2"])
        return params, best, trials

    def context(self, history: Sequence[Interaction]) -> UserWinrateContext:
        return UserWinrateContext(self, history)


class UserWinrateContext(BaselineContext):
    """Each user's deviation from the global strengths, recomputed from the history on every change."""

    router: UserWinrateRouter

    def refresh(self) -> None:
        table = RecordTable.build(self.history, self.router.llms_)
        self.user_ids = {u: i for i, u in enumerate(table.users)}
        self.deviation = user_deviations(table, self.router.strengths_, self.router.params_["prior"])

    def llm_scores(self, users, queries, categories=None) -> np.ndarray:
        rows = np.array([self.user_ids.get(u, len(self.user_ids)) for u in users], dtype=np.int64)
        deviation = np.vstack([self.deviation, np.zeros(len(self.router.llms_))])  # last row: no history
        return self.router.strengths_ + deviation[rows]
