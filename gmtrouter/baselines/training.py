"""Training the neural baselines: the pairwise logistic loss, and AdamW with early stopping on validation AUC."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


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
    best_auc, best_state, best_step, stale, step = None, None, 0, 0, 0
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
        if best_auc is None or auc > best_auc + 1e-4:
            best_auc, best_step, stale = auc, step, 0
            best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
        else:
            stale += 1
            if stale >= patience:
                break
    if best_state is not None:
        module.load_state_dict(best_state)
    module.eval()
    return best_auc, {"steps": step, "best_step": best_step or step}
