"""A static embedding table distilled from the bundled all-MiniLM-L6-v2 with model2vec: a text's vector is the
mean of its tokens' rows, a lookup instead of a transformer.

model2vec runs every token of the vocabulary through the transformer once and keeps the outputs as a table
(reduced by PCA and weighted by token frequency); encoding a text then costs a tokenisation and a mean, about a
hundredth of the int8 transformer's CPU. The vectors are not MiniLM's (docs/results.md measures what that does
to routing), so a model trained on one must route with the same one: a model folder keeps its table
(`files()`), and loading the model reads it from there.

The table is distilled offline from the bundled model's folder on first use (minutes, with a progress bar) and
cached under `<cache dir>/static/`, named by a hash of the source weights and the recipe; `make install` builds
it, and `python -m gmtrouter.text.static` builds it by hand.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from gmtrouter.text.base import DEFAULT_ENCODER, TextEncoder, default_cache_dir, quiet_loading
from gmtrouter.text.onnx_runtime import file_sha256, fingerprint, model_folder
from gmtrouter.utils.atomic import atomic_folder
from gmtrouter.utils.errors import GmtError

log = logging.getLogger("gmtrouter.text")
STATIC_ENCODER = "static"
SOURCE = DEFAULT_ENCODER  # the transformer the table is distilled from
PCA_DIMS = 256
SIF_COEFFICIENT = 1e-4
RECIPE = f"model2vec-distill-pca{PCA_DIMS}-sif{SIF_COEFFICIENT:g}-v1"  # change it when the distillation changes
TABLE_FILE = "model.safetensors"  # where model2vec keeps the table inside its folder


def table_dir(cache_dir: Path | None = None) -> Path:
    """Where the table distilled from the bundled model is cached."""
    folder = model_folder(SOURCE)
    return (cache_dir or default_cache_dir()) / "static" / f"{SOURCE}-{fingerprint(folder, RECIPE)}"


def ensure_table(cache_dir: Path | None = None) -> Path:
    """The cached table's folder, distilled (once, a few minutes) if it is not there yet."""
    target = table_dir(cache_dir)
    if (target / TABLE_FILE).is_file():
        return target
    try:
        from model2vec.distill import distill
    except ImportError as error:
        raise GmtError(
            f"the '{STATIC_ENCODER}' encoder needs model2vec to distil its table ({error.name} is missing); "
            "install it with: pip install -e '.[static]'"
        ) from None
    log.warning(
        "distilling the '%s' encoder's table from %s into %s (once; a few minutes)", STATIC_ENCODER, SOURCE, target
    )
    with quiet_loading():
        model = distill(str(model_folder(SOURCE)), pca_dims=PCA_DIMS, sif_coefficient=SIF_COEFFICIENT, device="cpu")
    with atomic_folder(target) as folder:
        model.save_pretrained(str(folder))
    return target


class StaticEncoder(TextEncoder):
    """Texts to the mean of their tokens' rows in a model2vec table, L2-normalised.

    `variant` names the table by its hash: vectors of two tables never share a cache file. Texts go in one call
    each way (no padding), so any batch of mixed lengths is fine (`groups_by_length`).
    """

    name = STATIC_ENCODER
    groups_by_length = True

    def __init__(self, table: Path | None = None, cache_dir: Path | None = None) -> None:
        try:
            from model2vec import StaticModel
        except ImportError as error:
            raise GmtError(
                f"the '{STATIC_ENCODER}' encoder needs model2vec ({error.name} is missing); "
                "install it with: pip install -e '.[static]'"
            ) from None
        self.folder = Path(table) if table is not None else ensure_table(cache_dir)
        if not (self.folder / TABLE_FILE).is_file():
            raise GmtError(f"{self.folder}: no {TABLE_FILE}; the static encoder's table is missing, retrain the model")
        self.model = StaticModel.from_pretrained(str(self.folder), normalize=True, force_download=False)
        self.dim = int(self.model.dim)
        self.variant = f"model2vec-{file_sha256(self.folder / TABLE_FILE)[:16]}"

    def files(self) -> Path:
        return self.folder

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self.model.encode(list(texts), use_multiprocessing=False)
        return np.asarray(vectors, dtype=np.float32)


if __name__ == "__main__":  # `python -m gmtrouter.text.static`: build the cached table (what `make install` runs)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    print(ensure_table())
