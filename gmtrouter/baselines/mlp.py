"""`mlp`: a query-only router, the query embedding through a small MLP to one score per LLM.

The common learned-router baseline (RouteLLM's and RouterBench's query classifiers): it sees the query,
never the user, trained with the pairwise logistic loss on every user's comparisons.
"""

from __future__ import annotations

from typing import Any, ClassVar

from torch import nn

from gmtrouter.baselines.neural import PairwiseNetRouter, QueryMLP
from gmtrouter.text.base import DEFAULT_ENCODER


class MLPRouter(PairwiseNetRouter):
    """Query embedding -> MLP -> per-LLM score; the same for every user."""

    name = "mlp"
    NET_KEYS = ("hidden", "dropout", "weight_decay")
    GRID: ClassVar[dict[str, list[Any]]] = {"hidden": [128, 512], "dropout": [0.1, 0.4], "weight_decay": [0.01, 0.5]}

    def __init__(
        self,
        encoder: str = DEFAULT_ENCODER,
        grid: dict[str, Any] | None = None,
        lr: float = 1e-3,
        batch_size: int = 512,
        max_epochs: int = 200,
        patience: int = 10,
        valid_frac: float = 0.1,
        seed: int = 0,
    ) -> None:
        self.encoder = encoder
        self.grid = grid
        self.lr = lr
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.valid_frac = valid_frac
        self.seed = seed

    def build_net(self, params: dict[str, Any], text_dim: int, n_users: int) -> nn.Module:
        return QueryMLP(text_dim, len(self.llms_), int(params["hidden"]), float(params["dropout"]))
