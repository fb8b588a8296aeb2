"""Training the neural baselines: the pairwise logistic loss, and AdamW with early stopping on validation AUC
(the loop GMTRouter's training shares, `gmtrouter.early_stopping`)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gmtrouter.training.early_stopping import EarlyStopping


def pairwise_loss(diff: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Logistic loss of score differences s_i - s_j against targets 1, 0 or 0.5 (a tie)."""
    if diff.numel() == 0:
        return diff.sum() * 0.0
    return F.binary_cross_entropy_with_logits(diff, target)


def train_early_stopping(
    module: nn.Module,
    step_loss: Callable[[np.random.Generator], torch.Tensor],
    validate: Callable[[], float] | None,
    *,
    lr: float,
    weight_decay: float,
    steps: int,
    eval_every: int,
    patience: int,
    seed: int,
) -> tuple[float | None, dict[str, int]]:
    """Train `module` in place; keep the weights of the best validation AUC.

    `step_loss(rng)` draws one training batch and returns its loss; `validate()` (run under no_grad in eval
    mode) returns the validation AUC. Without `validate`, all `steps` are run. Returns (best AUC, steps log).
    """
    rng = np.random.default_rng(seed)
    optimizer = torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=weight_decay)
    stopping = EarlyStopping(module, patience)
    step = 0
    for step in range(1, steps + 1):
        module.train()
        loss = step_loss(rng)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
        optimizer.step()
        if validate is None or (step % eval_every and step != steps):
            continue
        module.eval()
        with torch.no_grad():
            auc = validate()
        if stopping.check(step, auc):
            break
    stopping.restore()
    module.eval()
    return stopping.best_score, {"steps": step, "best_step": stopping.best_step or step}
