"""The shared fit of baselines whose network maps (query embedding, user id) to one score per LLM.

Training draws minibatches of rated pairs, applies the pairwise logistic loss to the two LLMs' scores and
stops early on validation AUC; every point of the grid is trained this way and the best one is kept (the
networks are not refitted on the validation records: their number of epochs was chosen on them).
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from gmtrouter.baselines.base import BaselineRouter, QueryEncoding, RecordTable, pairs_auc, tune
from gmtrouter.baselines.training import pairwise_loss, train_early_stopping
from gmtrouter.data.schema import Interaction

UNKNOWN_USER = 0  # user id 0 is "anyone": users unseen at fit time, and the dropped-out ids in training


class PairwiseNetRouter(QueryEncoding, BaselineRouter):
    """A network over query embeddings (and, when `uses_user`, user ids) trained on pairwise preferences.

    Settings every subclass constructor takes: encoder, grid, lr, batch_size, max_epochs, patience,
    valid_frac, seed (and cold_user_rate when it uses users).
    """

    uses_user: ClassVar[bool] = False
    NET_KEYS: ClassVar[tuple[str, ...]] = ()  # grid keys that shape or train the network
    lr: float
    batch_size: int
    max_epochs: int
    patience: int
    cold_user_rate: float = 0.0

    @abstractmethod
    def build_net(self, params: dict[str, Any], text_dim: int, n_users: int) -> nn.Module:
        """The untrained network for `params`: forward(query [B, dim], user [B]) -> scores [B, LLMs]."""

    def user_ids(self, users: Sequence[str]) -> np.ndarray:
        """Fit-time user ids (1-based); UNKNOWN_USER for users the network never saw."""
        index = getattr(self, "user_index_", {})
        return np.array([index.get(u, UNKNOWN_USER) for u in users], dtype=np.int64)

    def _fit(self, train, valid, grid):
        fit_table = RecordTable.build(train, self.llms_)
        valid_table = RecordTable.build(valid, self.llms_)
        self.text_dim_ = self.text_encoder().dim
        self.users_ = fit_table.users if self.uses_user else []
        self.user_index_ = {u: i + 1 for i, u in enumerate(self.users_)}
        net_grid = {k: v for k, v in grid.items() if k in self.NET_KEYS}
        fit_query = torch.from_numpy(self.encode(fit_table.queries))
        valid_query = torch.from_numpy(self.encode(valid_table.queries))
        valid_users = torch.from_numpy(self.user_ids(valid_table.users))

        query = fit_query[fit_table.pair_query]
        user = torch.from_numpy(self.user_ids(fit_table.users)[fit_table.pair_user])
        first, second = torch.from_numpy(fit_table.pair_first), torch.from_numpy(fit_table.pair_second)
        target = torch.from_numpy(fit_table.pair_target).float()
        n_pairs = len(target)
        batch = min(self.batch_size, max(n_pairs, 1))
        steps_per_epoch = max(1, math.ceil(n_pairs / batch))

        def step_loss(net: nn.Module, rng: np.random.Generator) -> torch.Tensor:
            ids = torch.from_numpy(rng.choice(n_pairs, batch, replace=False)) if n_pairs > batch else slice(None)
            users = user[ids]
            if self.uses_user and self.cold_user_rate > 0:
                drop = torch.from_numpy(rng.random(len(users)) < self.cold_user_rate)
                users = torch.where(drop, UNKNOWN_USER, users)
            scores = net(query[ids], users)
            rows = torch.arange(len(scores))
            return pairwise_loss(scores[rows, first[ids]] - scores[rows, second[ids]], target[ids])

        def run(params: dict[str, Any]) -> tuple[float, tuple[nn.Module, dict[str, int]]]:
            torch.manual_seed(self.seed)
            net = self.build_net(params, self.text_dim_, len(self.users_))

            def validate() -> float:
                scores = net(valid_query[valid_table.rec_query], valid_users[valid_table.rec_user])
                return pairs_auc(valid_table, scores.numpy())

            best, log = train_early_stopping(
                net,
                lambda rng: step_loss(net, rng),
                validate if valid else None,
                lr=self.lr,
                weight_decay=params.get("weight_decay", 0.0),
                steps=self.max_epochs * steps_per_epoch,
                eval_every=steps_per_epoch,
                patience=self.patience,
                seed=self.seed,
            )
            return (best if best is not None else 0.5), (net, log)

        params, (self.net_, steps), best, trials = tune(net_grid, run, bool(valid))
        params = {**params, "epochs": math.ceil(steps["best_step"] / steps_per_epoch)}
        extra, best, extra_trials = self._after_fit(fit_table, valid_table, train, valid, grid, best)
        return {**params, **extra}, best, trials + extra_trials

    def _after_fit(
        self,
        fit_table: RecordTable,
        valid_table: RecordTable,
        train: list[Interaction],
        valid: list[Interaction],
        grid: dict[str, list[Any]],
        best: float | None,
    ) -> tuple[dict[str, Any], float | None, list[dict[str, Any]]]:
        """A second tuning stage on the trained network (none by default)."""
        return {}, best, []

    def net_scores(self, users: Sequence[str], queries: Sequence[str], as_new: bool = False) -> np.ndarray:
        """[n, LLMs] the network's scores, with unseen users (every user when `as_new`) as UNKNOWN_USER."""
        if len(users) == 0:
            return np.zeros((0, len(self.llms_)))
        query = torch.from_numpy(self.encode(queries))
        ids = np.full(len(users), UNKNOWN_USER) if as_new else self.user_ids(users)
        with torch.no_grad():
            return self.net_(query, torch.from_numpy(ids)).numpy().astype(np.float64)

    def llm_scores(self, users, queries, categories=None) -> np.ndarray:
        return self.net_scores(users, queries)

    def _fitted(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        return {"text_dim": self.text_dim_, "users": self.users_}, dict(self.net_.state_dict())

    def _restore(self, fitted: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        self.text_dim_ = int(fitted["text_dim"])
        self.users_ = list(fitted["users"])
        self.user_index_ = {u: i + 1 for i, u in enumerate(self.users_)}
        self.net_ = self.build_net(self.params_, self.text_dim_, len(self.users_))
        self.net_.load_state_dict(tensors)
        self.net_.eval()


class QueryMLP(nn.Module):
    """[query embedding, optional user embedding] -> hidden -> one score per LLM."""

    def __init__(
        self, text_dim: int, n_llms: int, hidden: int, dropout: float, n_users: int = 0, user_dim: int = 0
    ) -> None:
        super().__init__()
        self.users = nn.Embedding(n_users + 1, user_dim) if user_dim else None
        if self.users is not None:
            nn.init.normal_(self.users.weight, std=0.1)
        self.mlp = nn.Sequential(
            nn.Linear(text_dim + user_dim, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, n_llms)
        )

    def forward(self, query: torch.Tensor, user: torch.Tensor) -> torch.Tensor:
        x = query if self.users is None else torch.cat([query, self.users(user)], dim=1)
        return self.mlp(x)
