"""A bag-of-words hashing encoder: deterministic and instant, for unit tests only."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from gmtrouter.text.base import TextEncoder

HASHING_PREFIX = "hashing"


class HashingEncoder(TextEncoder):
    """Deterministic bag-of-words hashing vectors: for fast unit tests only, not for real routing."""

    def __init__(self, dim: int = 64) -> None:
        from sklearn.feature_extraction.text import HashingVectorizer

        self.dim = dim
        self.name = f"{HASHING_PREFIX}-{dim}"
        words = r"(?u)\b\w+\b"  # one-letter words too: LLM names like "a" must not vanish
        self._vectorizer = HashingVectorizer(n_features=dim, ngram_range=(1, 2), norm="l2", token_pattern=words)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self._vectorizer.transform(list(texts)).toarray().astype(np.float32)
