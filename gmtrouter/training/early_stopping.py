"""Early stopping on a validation score, shared by GMTRouter's training and the neural baselines'.

Each check compares the score with the best so far; the weights of the best check are kept in memory, and
training stops once `patience` checks in a row have not beaten it by `min_delta`. What happened is said in
one sentence, so a run that stops early tells the user so and why.
"""

from __future__ import annotations

from torch import nn


class EarlyStopping:
    """Tracks the best validation score of `module` and keeps its weights."""

    def __init__(self, module: nn.Module, patience: int, min_delta: float = 1e-4, start_margin: float = 0.0) -> None:
        self.module = module
        self.patience = patience
        self.min_delta = min_delta
        self.start_margin = start_margin  # what a later check must add to a check at step 0 to replace it
        self.best_score: float | None = None
        self.best_step = 0
        self.stale = 0
        self.stopped_at: int | None = None
        self._best_state: dict | None = None

    def check(self, step: int, score: float) -> bool:
        """Record the score of a check at `step`; True when training should stop."""
        margin = self.min_delta + (self.start_margin if self.best_score is not None and self.best_step == 0 else 0.0)
        if self.best_score is None or score > self.best_score + margin:
            self.best_score, self.best_step, self.stale = score, step, 0
            self._best_state = {k: v.detach().clone() for k, v in self.module.state_dict().items()}
            return False
        self.stale += 1
        if self.stale >= self.patience:
            self.stopped_at = step
            return True
        return False

    def restore(self) -> None:
        """Put the best check's weights back (nothing to do when no check ran)."""
        if self._best_state is not None:
            self.module.load_state_dict(self._best_state)

    def summary(self, steps: int) -> str:
        """One sentence: where training ended, why, and the best validation AUC (rounded)."""
        if self.best_score is None:
            return f"trained {steps} steps without validation (too few records to hold some out)"
        best = f"best validation AUC {self.best_score:.3f} at step {self.best_step}"
        if self.best_step == 0 and self.start_margin:
            best += f" (no later check beat step 0 by {self.start_margin}: step 0's weights are kept)"
        if self.stopped_at is None:
            return f"ran all {steps} steps; {best}"
        return (
            f"stopped at {self.stopped_at}/{steps}: validation AUC did not improve for {self.patience} checks; {best}"
        )
