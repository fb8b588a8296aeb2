"""Any sentence-transformers model on PyTorch: the bundled all-MiniLM-L6-v2 offline, or a hub name or path."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from gmtrouter.text.base import DEFAULT_ENCODER, TextEncoder, bundled_model_path, quiet_loading
from gmtrouter.utils.errors import GmtError


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
