"""The text encoder as routing uses it (the service and `Router`): history texts through the model's disk-backed
cache, routed queries through a bounded in-memory LRU.

Every routed query must be embedded, but most are never seen again; keeping them all (as the training-time cache
does) would grow memory and the cache file without end. Texts that enter the history (feedback) stay in the
model's cache, because every fold re-reads the whole history. One lock serialises the underlying model: fast
tokenizers refuse concurrent calls.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from gmtrouter.text.base import TextEncoder
from gmtrouter.text.cache import EmbeddingCache


class QueryCacheEncoder(TextEncoder):
    """Wraps the model's encoder (usually a `CachedEncoder`); `encode_queries` fills the LRU.

    A transformer pads every text of a batch to the longest; one batch of many queries of mixed lengths costs
    about three times what the same queries cost sorted by length in chunks of eight (measured on
    all-MiniLM-L6-v2 with MT-Bench questions). An encoder that groups texts by length itself
    (`groups_by_length`, the ONNX one) gets the whole batch in one call; any other gets sorted chunks of eight.
    """

    def __init__(self, cached: TextEncoder, lru_size: int = 100_000, chunk: int = 8) -> None:
        self.cached = cached
        self.raw: TextEncoder = getattr(cached, "inner", cached)
        self.name, self.dim, self.variant = cached.name, cached.dim, cached.variant
        self.lru_size, self.chunk = lru_size, chunk
        self._lru: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def _lookup(self, key: bytes) -> np.ndarray | None:
        vector = self._lru.get(key)
        if vector is not None:
            self._lru.move_to_end(key)
        return vector

    def files(self) -> Path | None:
        return self.cached.files()

    def has(self, text: str) -> bool:
        """Whether `text` is in the LRU (a dict lookup, safe without the lock)."""
        return EmbeddingCache.key(text) in self._lru

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """History texts and single queries: LRU hits first, the rest through the model's own cache."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        keys = [EmbeddingCache.key(t) for t in texts]
        with self._lock:
            found = [self._lookup(k) for k in keys]
            rest = [i for i, v in enumerate(found) if v is None]
            if rest:
                vectors = self.cached.encode([texts[i] for i in rest])
                for i, vector in zip(rest, vectors, strict=True):
                    found[i] = vector
        return np.stack(found).astype(np.float32, copy=False)

    def forget(self, texts: Sequence[str]) -> None:
        """Drop texts from the LRU and from the model's cache (memory and file), e.g. a forgotten user's."""
        with self._lock:
            for text in texts:
                self._lru.pop(EmbeddingCache.key(text), None)
            forget = getattr(self.cached, "forget", None)
            if forget is not None:
                forget(texts)

    def encode_queries(self, texts: Sequence[str]) -> int:
        """Embed the routed queries not in the LRU, all in one call; returns how many were computed."""
        keys = {EmbeddingCache.key(t): t for t in texts}
        with self._lock:
            missing = sorted(((k, t) for k, t in keys.items() if self._lookup(k) is None), key=lambda kt: len(kt[1]))
            step = max(1, len(missing) if getattr(self.raw, "groups_by_length", False) else self.chunk)
            for start in range(0, len(missing), step):  # similar lengths together: little padding
                part = missing[start : start + step]
                vectors = self.raw.encode([t for _, t in part])
                for (key, _), vector in zip(part, vectors, strict=True):
                    self._lru[key] = vector
                while len(self._lru) > self.lru_size:
                    self._lru.popitem(last=False)
        return len(missing)
