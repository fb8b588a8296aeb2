"""The on-disk embedding cache: every text becomes a vector once per encoder, so a rerun encodes nothing."""

from __future__ import annotations

import hashlib
import re
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from gmtrouter.text.base import TextEncoder, default_cache_dir

_CHUNK = 256


class EmbeddingCache:
    """A SQLite file of vectors keyed by the SHA-1 of their text; one file per encoder."""

    def __init__(self, path: Path, dim: int) -> None:
        self.path, self.dim = path, dim
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS emb (key BLOB PRIMARY KEY, vec BLOB NOT NULL)")

    @staticmethod
    def key(text: str) -> bytes:
        return hashlib.sha1(text.encode("utf-8")).digest()

    def get(self, keys: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        found: dict[bytes, np.ndarray] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for key, blob in self._db.execute(f"SELECT key, vec FROM emb WHERE key IN ({marks})", chunk):
                found[key] = np.frombuffer(blob, dtype=np.float32)
        return found

    def delete(self, keys: Sequence[bytes]) -> None:
        """Remove vectors (a forgotten user's texts)."""
        with self._db:
            self._db.executemany("DELETE FROM emb WHERE key = ?", [(k,) for k in keys])

    def put(self, keys: Sequence[bytes], vectors: np.ndarray) -> None:
        rows = [(k, np.ascontiguousarray(v, dtype=np.float32).tobytes()) for k, v in zip(keys, vectors, strict=True)]
        with self._db:
            self._db.executemany("INSERT OR REPLACE INTO emb (key, vec) VALUES (?, ?)", rows)


class CachedEncoder(TextEncoder):
    """Wraps an encoder with the on-disk cache; encodes only unseen texts, longest-first in batches."""

    def __init__(self, encoder: TextEncoder, cache_dir: Path | None = None, progress: bool = True) -> None:
        self.inner, self.name, self.dim, self.progress = encoder, encoder.name, encoder.dim, progress
        self.variant = encoder.variant
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", encoder.name + (f".{encoder.variant}" if encoder.variant else ""))
        self.cache = EmbeddingCache((cache_dir or default_cache_dir()) / "embeddings" / f"{slug}.sqlite", self.dim)
        self._memory: dict[bytes, np.ndarray] = {}

    def files(self) -> Path | None:
        return self.inner.files()

    def preload(self, vectors: dict[bytes, np.ndarray]) -> None:
        """Take vectors computed elsewhere (a checkpoint's) into memory, keyed like the cache."""
        self._memory.update(vectors)

    def forget(self, texts: Sequence[str]) -> None:
        """Drop texts from memory and from the cache file: nothing of a forgotten user stays on disk."""
        keys = [EmbeddingCache.key(t) for t in texts]
        for key in keys:
            self._memory.pop(key, None)
        self.cache.delete(keys)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        keys = [EmbeddingCache.key(t) for t in texts]
        missing = list(dict.fromkeys(k for k in keys if k not in self._memory))
        if missing:
            self._memory.update(self.cache.get(missing))
        unseen = list({k: t for k, t in zip(keys, texts, strict=True) if k not in self._memory}.items())
        if unseen:
            unseen.sort(key=lambda kt: len(kt[1]), reverse=True)
            with tqdm(
                total=len(unseen),
                desc=f"encoding ({self.name})",
                unit="text",
                disable=not self.progress or len(unseen) < _CHUNK,
            ) as bar:
                for start in range(0, len(unseen), _CHUNK):
                    chunk = unseen[start : start + _CHUNK]
                    vectors = self.inner.encode([t for _, t in chunk])
                    self.cache.put([k for k, _ in chunk], vectors)
                    self._memory.update(zip((k for k, _ in chunk), vectors, strict=True))
                    bar.update(len(chunk))
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self._memory[k] for k in keys]).astype(np.float32, copy=False)
