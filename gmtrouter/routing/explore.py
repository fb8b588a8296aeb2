"""How a route may try an LLM the router is unsure of: the modes and their defaults (light, so the service's
config can name them without loading the model)."""

from __future__ import annotations

import numpy as np

EXPLORE_MODES = ("thompson", "ucb", "off")
# width of a Thompson draw on the parts only this user's or query's later routes learn from, in posterior standard
# deviations (the shared parts are drawn at their full width): benchmarks/explore_scale.py
THOMPSON_SCALE = 0.25


def explore_choice(
    adjusted: np.ndarray, spread: np.ndarray, mode: str, rng: np.random.Generator, ucb_width: float
) -> int:
    """The index to route to under `mode`: the best optimistic score (`ucb`: `ucb_width` standard deviations
    above each expected score) or the best draw (`thompson`: each score drawn with its spread)."""
    if mode == "ucb":
        return int(np.argmax(adjusted + ucb_width * spread))
    return int(np.argmax(adjusted + spread * rng.standard_normal(len(adjusted))))
