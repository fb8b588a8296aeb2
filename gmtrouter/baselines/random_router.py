"""The floor: scores drawn at random, but fixed per (seed, user, query, LLM) so repeated scoring agrees."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import torch

from gmtrouter.baselines.base import BaselineRouter
from gmtrouter.data.schema import Interaction


def hashed_uniform(seed: int, user: str, query: str, llm: str) -> float:
    """A uniform number in [0, 1) that depends only on its four arguments."""
    key = "\x1f".join((str(seed), user, query, llm)).encode("utf-8")
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") / 2.0**64


class RandomRouter(BaselineRouter):
    """Random scores: what any router must beat (pairwise accuracy and AUC near 0.5)."""

    name = "random"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.grid = None
        self.valid_frac = 0.0

    def settings(self) -> dict[str, Any]:
        return {"seed": self.seed}

    def _fit(self, train: list[Interaction], valid: list[Interaction], grid: dict[str, list[Any]]):
        return {}, None, []

    def _fitted(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        return {}, {}

    def _restore(self, fitted: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        pass

    def llm_scores(self, users, queries, categories=None) -> np.ndarray:
        return np.array(
            [[hashed_uniform(self.seed, u, q, m) for m in self.llms_] for u, q in zip(users, queries, strict=True)]
        )
