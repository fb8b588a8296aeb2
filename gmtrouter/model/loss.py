"""Training losses on padded score matrices: pairwise logistic, plus listwise for records with K > 2."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gmtrouter.graph.build import TargetBatch


def preference_loss(scores: torch.Tensor, batch: TargetBatch) -> torch.Tensor:
    """Mean pairwise logistic loss over every pair (a tie is half a win for each side, as in every baseline),
    plus cross-entropy on the unique best.

    The listwise term applies to records with more than two responses and a unique top rating.
    """
    rating, mask = batch.rating, batch.mask
    k = scores.shape[1]
    target = (torch.sign(rating[:, :, None] - rating[:, None, :]) + 1.0) / 2.0  # 1, 0, or 0.5 for a tie
    upper = torch.ones(k, k, dtype=torch.bool).triu(1)
    valid = mask[:, :, None] & mask[:, None, :] & upper
    diff = scores[:, :, None] - scores[:, None, :]
    terms = F.binary_cross_entropy_with_logits(diff, target, reduction="none")[valid]
    loss = terms.mean() if terms.numel() else scores.sum() * 0.0

    if k > 2:
        masked_rating = rating.masked_fill(~mask, float("-inf"))
        best = masked_rating.max(dim=1, keepdim=True).values
        unique_best = ((masked_rating == best).sum(dim=1) == 1) & (mask.sum(dim=1) > 2)
        if unique_best.any():
            logits = scores.masked_fill(~mask, float("-inf"))[unique_best]
            loss = loss + F.cross_entropy(logits, masked_rating[unique_best].argmax(dim=1))
    return loss
