"""`personalized-mlp`: a learned user-id embedding joined to the query embedding, an MLP to per-LLM scores.

Users seen at fit time have their own embedding. Every other user gets the embedding of "anyone" (id 0),
which training learns by replacing a `cold_user_rate` share of the ids in each batch with it, so it is the
population's preference rather than an untrained vector. On top of the network, and without retraining,
each user's history adapts the scores: a per-user Bradley-Terry deviation fitted on the network's residuals
over that user's past comparisons, shrunk by a prior of strength `adapt_prior` (None turns it off). This is
what lets a new user, who has only id 0, move away from the population after a few interactions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from torch import nn

from gmtrouter.baselines.base import BaselineContext, RecordTable, pairs_auc, tune
from gmtrouter.baselines.neural import PairwiseNetRouter, QueryMLP
from gmtrouter.data.schema import Interaction
from gmtrouter.model.bradley_terry import bradley_terry
from gmtrouter.text.base import DEFAULT_ENCODER


class PersonalizedMLPRouter(PairwiseNetRouter):
    """[query embedding, user embedding] -> MLP -> per-LLM score, plus a residual adaptation from history."""

    name = "personalized-mlp"
    uses_user = True
    NET_KEYS = ("user_dim", "hidden", "dropout", "weight_decay")
    GRID: ClassVar[dict[str, list[Any]]] = {
        "user_dim": [16, 64],
        "hidden": [256],
        "dropout": [0.1, 0.4],
        "weight_decay": [0.01, 0.5],
        "adapt_prior": [8.0, None, 2.0, 32.0],
    }

    def __init__(
        self,
        encoder: str = DEFAULT_ENCODER,
        grid: dict[str, Any] | None = None,
        lr: float = 1e-3,
        batch_size: int = 512,
        max_epochs: int = 200,
        patience: int = 10,
        cold_user_rate: float = 0.1,
        valid_frac: float = 0.1,
        seed: int = 0,
    ) -> None:
        self.encoder = encoder
        self.grid = grid
        self.lr = lr
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.cold_user_rate = cold_user_rate
        self.valid_frac = valid_frac
        self.seed = seed

    def build_net(self, params: dict[str, Any], text_dim: int, n_users: int) -> nn.Module:
        return QueryMLP(
            text_dim,
            len(self.llms_),
            int(params["hidden"]),
            float(params["dropout"]),
            n_users=n_users,
            user_dim=int(params["user_dim"]),
        )

    def adaptation(
        self, history: Sequence[Interaction], prior: float | None, as_new: bool = False
    ) -> tuple[dict[str, int], np.ndarray]:
        """(user -> row, [users, LLMs] deviations) fitted on the network's residuals over `history`."""
        if prior is None or not history:
            return {}, np.zeros((0, len(self.llms_)))
        table = RecordTable.build(history, self.llms_)
        users = [table.users[u] for u in table.rec_user]
        base = self.net_scores(users, [table.queries[q] for q in table.rec_query], as_new)
        deviation = bradley_terry(
            table.pair_user,
            table.pair_first,
            table.pair_second,
            table.pair_target,
            len(table.users),
            len(self.llms_),
            float(prior),
            table.pair_diff(base),
        )
        return {u: i for i, u in enumerate(table.users)}, deviation

    def adapted_scores(
        self,
        users: Sequence[str],
        queries: Sequence[str],
        rows: dict[str, int],
        deviation: np.ndarray,
        as_new: bool = False,
    ) -> np.ndarray:
        """The network's scores plus each user's deviation (none for users without history)."""
        index = np.array([rows.get(u, len(rows)) for u in users], dtype=np.int64)
        padded = np.vstack([deviation, np.zeros(len(self.llms_))])
        return self.net_scores(users, queries, as_new) + padded[index]

    def _after_fit(self, fit_table, valid_table, train, valid, grid, best):
        """Tune `adapt_prior` where it is the only personalization: validation users scored as if unseen
        (the shared embedding), from their fitted records as history."""
        valid_users = [valid_table.users[u] for u in valid_table.rec_user]
        valid_queries = [valid_table.queries[q] for q in valid_table.rec_query]

        def run(params: dict[str, Any]) -> tuple[float, None]:
            rows, deviation = self.adaptation(train, params["adapt_prior"], as_new=True)
            scores = self.adapted_scores(valid_users, valid_queries, rows, deviation, as_new=True)
            return pairs_auc(valid_table, scores), None

        params, _, _, trials = tune({"adapt_prior": grid["adapt_prior"]}, run, bool(valid))
        for trial in trials:
            trial["view"] = "validation users as new users"
        return params, best, trials

    def context(self, history: Sequence[Interaction]) -> PersonalizedMLPContext:
        return PersonalizedMLPContext(self, history)


class PersonalizedMLPContext(BaselineContext):
    """The network's scores plus each user's residual deviation, recomputed from the history on every change."""

    router: PersonalizedMLPRouter

    def refresh(self) -> None:
        self.rows, self.deviation = self.router.adaptation(self.history, self.router.params_["adapt_prior"])

    def llm_scores(self, users, queries, categories=None) -> np.ndarray:
        return self.router.adapted_scores(users, queries, self.rows, self.deviation)
