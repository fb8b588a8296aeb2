"""The early-stopping loop GMTRouter and the neural baselines share: when it stops, what it keeps, what it says."""

from __future__ import annotations

import torch
from torch import nn

from gmtrouter.baselines.training import train_early_stopping
from gmtrouter.training.early_stopping import EarlyStopping


def test_stops_after_patience_checks_without_gain_and_keeps_the_best_weights() -> None:
    module = nn.Linear(2, 1)
    stopping = EarlyStopping(module, patience=3)
    scores = [0.60, 0.70, 0.81234, 0.80, 0.81, 0.79, 0.95]
    stopped = None
    for check, score in enumerate(scores, start=1):
        with torch.no_grad():
            module.weight.fill_(float(check))
        if stopping.check(check * 10, score):
            stopped = check
            break
    assert stopped == 6  # three checks after the best (check 3) did not beat it; 0.95 was never seen
    stopping.restore()
    assert module.weight.flatten().tolist() == [3.0, 3.0]
    assert stopping.summary(400) == (
        "stopped at 60/400: validation AUC did not improve for 3 checks; best validation AUC 0.812 at step 30"
    )


def test_says_when_it_ran_every_step_or_had_no_validation() -> None:
    stopping = EarlyStopping(nn.Linear(1, 1), patience=2)
    stopping.check(5, 0.7)
    assert stopping.summary(5) == "ran all 5 steps; best validation AUC 0.700 at step 5"
    assert "without validation" in EarlyStopping(nn.Linear(1, 1), patience=2).summary(5)


def test_baseline_training_uses_the_same_loop() -> None:
    """A score that only falls: training stops after `patience` checks and the first check's weights stay."""
    module = nn.Linear(1, 1)
    with torch.no_grad():
        module.weight.fill_(1.0)
    start = module.weight.item()
    falling = iter([0.9, 0.8, 0.7, 0.6, 0.5])
    best, log = train_early_stopping(
        module,
        lambda rng: (module(torch.ones(4, 1)) ** 2).mean(),
        lambda: next(falling),
        lr=0.1,
        weight_decay=0.0,
        steps=100,
        eval_every=1,
        patience=2,
        seed=0,
    )
    assert best == 0.9 and log == {"steps": 3, "best_step": 1}
    assert module.weight.item() != start  # the weights after step 1, not the initial ones
