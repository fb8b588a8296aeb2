"""The preference head: each candidate LLM attends over the user and the query, and an MLP scores it."""

from __future__ import annotations

import torch
from torch import nn


class PreferenceHead(nn.Module):
    r"""Score candidate LLMs for a (user, query) pair.

    With projections :math:`u = W_u h_{user}`, :math:`q = W_q x_{query}`, :math:`g = W_g h_{query}` (the query's
    node state when other interactions put it in the graph, a learned vector otherwise) and
    :math:`l_m = W_l h_{llm_m}`, the LLM attends over the context :math:`C = [u, q, g]`:

    .. math::
        a_m = \mathrm{MHA}(l_m, C, C), \qquad s_m = \mathrm{MLP}([a_m \,\|\, l_m])

    Scores are logits of a Bradley-Terry model: :math:`P(m \succ m') = \sigma(s_m - s_{m'})`.
    """

    def __init__(self, hidden: int, dim: int = 64, heads: int = 4, dropout: float = 0.1, products: bool = True) -> None:
        super().__init__()
        self.products = products
        self.user_proj = nn.Linear(hidden, dim)
        self.query_proj = nn.Linear(hidden, dim)
        self.graph_query_proj = nn.Linear(hidden, dim)
        self.llm_proj = nn.Linear(hidden, dim)
        self.absent_query = nn.Parameter(torch.zeros(hidden))
        self.attention = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        width = (5 if products else 2) * dim
        self.mlp = nn.Sequential(nn.Linear(width, dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(dim, 1))
        # The head starts at zero: a new network adds nothing to the Bradley-Terry backbone it sits on, and
        # training keeps (by validation) only the residual that helps.
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(
        self,
        user: torch.Tensor,  # [B, H]
        query: torch.Tensor,  # [B, H] projected query text
        graph_query: torch.Tensor | None,  # [B, H] query node state, None where absent (see mask)
        graph_query_mask: torch.Tensor,  # [B] True where the query is in the graph
        llm: torch.Tensor,  # [B, K, H] candidate LLM states
    ) -> torch.Tensor:  # [B, K]
        absent = self.absent_query.expand_as(query)
        seen = absent if graph_query is None else torch.where(graph_query_mask[:, None], graph_query, absent)
        context = torch.stack([self.user_proj(user), self.query_proj(query), self.graph_query_proj(seen)], dim=1)
        target = self.llm_proj(llm)  # [B, K, D]
        attended, _ = self.attention(target, context, context, need_weights=False)  # [B, K, D]
        features = [attended, target]
        if self.products:  # user, query and graph-query x LLM interactions, one linear step from the score
            features += [context[:, None, i] * target for i in range(3)]
        return self.mlp(torch.cat(features, dim=-1)).squeeze(-1)
