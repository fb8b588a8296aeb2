"""`mf`: RouteLLM's matrix-factorisation router (Ong et al. 2024, arXiv 2406.18665).

Each LLM has a learned embedding v_m (L2-normalised, as in RouteLLM); the query embedding q is projected
by W; the score is w^T (v_m ⊙ W q) + b_m, a bilinear form between LLM and query, with a per-LLM bias.
It sees the query, never the user, trained with the pairwise logistic loss.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from gmtrouter.baselines.neural import PairwiseNetRouter
from gmtrouter.text.base import DEFAULT_ENCODER


class MatrixFactorization(nn.Module):
    """score(q, m) = w^T (normalize(v_m) ⊙ W q) + b_m."""

    def __init__(self, text_dim: int, n_llms: int, dim: int) -> None:
        super().__init__()
        self.llm = nn.Embedding(n_llms, dim)
        self.project = nn.Linear(text_dim, dim, bias=False)
        self.classifier = nn.Linear(dim, 1, bias=False)
        self.bias = nn.Parameter(torch.zeros(n_llms))

    def forward(self, query: torch.Tensor, user: torch.Tensor) -> torch.Tensor:
        q = self.project(query)  # [B, dim]
        v = F.normalize(self.llm.weight, dim=1)  # [LLMs, dim]
        return self.classifier(q[:, None, :] * v[None, :, :]).squeeze(-1) + self.bias  # [B, LLMs]


class MFRouter(PairwiseNetRouter):
    """Matrix factorisation of (query, LLM) preferences over a projected query embedding."""

    name = "mf"
    NET_KEYS = ("dim", "weight_decay")
    GRID: ClassVar[dict[str, list[Any]]] = {"dim": [64, 16, 128], "weight_decay": [0.01, 0.5]}

    def __init__(
        self,
        encoder: str = DEFAULT_ENCODER,
        grid: dict[str, Any] | None = None,
        lr: float = 3e-3,
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
        return MatrixFactorization(text_dim, len(self.llms_), int(params["dim"]))
