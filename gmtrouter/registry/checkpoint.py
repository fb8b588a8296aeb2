"""A saved router: a folder with `config.json`, `weights.safetensors`, the training history and its embeddings.

The history is kept because known users are whatever their interactions say: scoring a known user means
putting their training interactions into the graph. The embeddings of its texts travel with it, so a
machine without the encoder cache loads a router without re-encoding anything; an encoder with data of its
own (the static encoder's distilled table) keeps it in `encoder/`, so that routing encodes as training did.
Where the router has a routing context worth keeping (GMTRouter's fitted backbone and node states over the
history), `context.safetensors` keeps it, so that loading does not refit it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

from gmtrouter.data.schema import Interaction, read_records, write_records
from gmtrouter.registry.routers import router_classes
from gmtrouter.routing.base import PreferenceRouter
from gmtrouter.text.cache import CachedEncoder, EmbeddingCache
from gmtrouter.text.encoders import get_encoder
from gmtrouter.utils.atomic import atomic_folder, atomic_write
from gmtrouter.utils.errors import GmtError
from gmtrouter.utils.version import __version__

FORMAT = 2  # 2: the Bradley-Terry backbone (strengths and priors) in the router state
CONFIG, WEIGHTS, HISTORY, EMBEDDINGS = "config.json", "weights.safetensors", "history.jsonl", "embeddings.safetensors"
CONTEXT = "context.safetensors"  # the routing context over the history, where the router has one to keep
ENCODER_FILES = "encoder"  # the text encoder's own data (a distilled table), where it has any


def records_hash(records: Sequence[Interaction]) -> str:
    """SHA-256 of the records' canonical JSON: which data a model was trained on."""
    digest = hashlib.sha256()
    for record in records:
        digest.update(record.model_dump_json(exclude_none=True).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def _history_texts(router: PreferenceRouter, history: Sequence[Interaction]) -> list[str]:
    """The texts whose embeddings travel with the checkpoint: the router says which, else queries and responses."""
    own = getattr(router, "history_texts", None)
    if own is not None:
        return sorted(set(own(history)))
    texts = {r.query for r in history} | {x.text for r in history for x in r.responses if x.text}
    return sorted(texts | set(getattr(router, "llm_text_", [])))


def check_model_target(directory: str | Path) -> Path:
    """The folder a model may be saved to: new, empty, or a model (replaced whole); refused before any work."""
    target = Path(directory)
    if target.is_dir() and any(target.iterdir()) and not (target / CONFIG).is_file():
        raise GmtError(f"{target}: exists and is not a model folder; give a new or empty folder for the model")
    if target.exists() and not target.is_dir():
        raise GmtError(f"{target}: is a file; give a folder for the model")
    return target


def save_router(router: PreferenceRouter, directory: str | Path, history: Sequence[Interaction]) -> Path:
    """Write a fitted router and the history it scores known users from into `directory`.

    Everything is written to a temp folder that then takes the place of `directory`: a crash midway leaves the
    previous model (or none), never half of one. A folder that is neither empty nor a model is not replaced.
    """
    target = check_model_target(directory)
    with atomic_folder(target) as folder:
        _write_checkpoint(router, folder, history)
    return target


def _write_checkpoint(router: PreferenceRouter, folder: Path, history: Sequence[Interaction]) -> None:
    config, tensors = router.get_state()
    meta = {
        "format": FORMAT,
        "gmtrouter_version": __version__,
        "router": router.name,
        "llms": list(router.llms_),
        "encoder": getattr(router, "encoder", None),
        "data_hash": records_hash(history),
        "history_records": len(history),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "state": config,
    }
    with atomic_write(folder / WEIGHTS, "wb") as handle:
        handle.write(safetensors_bytes({k: v.contiguous() for k, v in tensors.items()}))
    encoder = getattr(router, "text_encoder", None)
    if encoder is not None:
        texts = _history_texts(router, history)
        vectors = encoder().encode(texts) if texts else np.zeros((0, 1), np.float32)
        keys = [EmbeddingCache.key(t).hex() for t in texts]
        stored = {k: torch.from_numpy(np.array(v)) for k, v in zip(keys, vectors, strict=True)}
        with atomic_write(folder / EMBEDDINGS, "wb") as handle:
            handle.write(safetensors_bytes(stored))
        files = encoder().files()
        if files is not None:
            shutil.copytree(files, folder / ENCODER_FILES, copy_function=shutil.copyfile)  # usual modes
    if router.saves_context:
        with atomic_write(folder / CONTEXT, "wb") as handle:
            handle.write(safetensors_bytes(router.context(history).state()))
    write_records(folder / HISTORY, history)
    with atomic_write(folder / CONFIG) as handle:
        json.dump(meta, handle, indent=2)


def read_config(directory: str | Path) -> dict[str, Any]:
    """The checkpoint's config, refusing a folder that is not a checkpoint of this version."""
    folder = Path(directory)
    try:
        found = (folder / CONFIG).is_file()
        text = (folder / CONFIG).read_bytes() if found else b""
    except (OSError, ValueError) as error:  # a name too long, a NUL, a folder that may not be read
        reason = getattr(error, "strerror", None) or str(error)
        raise GmtError(f"{str(folder)[:200]}: cannot be read as a model folder ({reason}); check the path") from None
    if not found:
        raise GmtError(f"{folder}: not a gmtrouter model folder (no {CONFIG}); train one with 'gmtrouter train'")
    try:
        meta = json.loads(text)
    except ValueError:
        raise GmtError(f"{folder / CONFIG}: is not valid JSON; retrain the model") from None
    if meta.get("format") != FORMAT or meta.get("gmtrouter_version") != __version__:
        raise GmtError(
            f"{folder}: made by gmtrouter {meta.get('gmtrouter_version', '?')} (format {meta.get('format', '?')}), "
            f"this is {__version__} (format {FORMAT}); retrain it with this version"
        )
    return meta


def model_identity(directory: str | Path) -> dict[str, str]:
    """What names a model without naming where it lives: a version (SHA-256 of its config and weights, 16 hex
    digits) and the hash of the data it was trained on."""
    folder = Path(directory)
    meta = read_config(folder)
    digest = hashlib.sha256((folder / CONFIG).read_bytes())
    with open(folder / WEIGHTS, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return {"model_version": digest.hexdigest()[:16], "data_hash": str(meta.get("data_hash", ""))}


def load_context_state(directory: str | Path) -> dict[str, torch.Tensor] | None:
    """The routing context saved over the checkpoint's history (None where the router keeps none)."""
    path = Path(directory) / CONTEXT
    return load_file(str(path)) if path.is_file() else None


def load_router(directory: str | Path) -> tuple[PreferenceRouter, list[Interaction]]:
    """(fitted router, its history) from a checkpoint folder."""
    folder = Path(directory)
    meta = read_config(folder)
    classes = router_classes()
    if meta["router"] not in classes:
        raise GmtError(f"{folder}: unknown router '{meta['router']}'; choose one of: {', '.join(sorted(classes))}")
    if not (folder / WEIGHTS).is_file():
        raise GmtError(f"{folder}: {WEIGHTS} is missing; retrain the model")
    if not (folder / HISTORY).is_file():
        raise GmtError(f"{folder}: {HISTORY} is missing; retrain the model (a model folder is written whole)")
    try:
        router = classes[meta["router"]].from_state(meta["state"], load_file(str(folder / WEIGHTS)))
    except (TypeError, KeyError, ValueError, RuntimeError, AttributeError) as error:
        raise GmtError(
            f"{folder}: its settings or weights do not fit this version of router '{meta['router']}' "
            f"({error.__class__.__name__}: {str(error).splitlines()[0] if str(error) else '?'}); retrain it"
        ) from None
    if (folder / ENCODER_FILES).is_dir() and hasattr(router, "use_text_encoder"):
        router.use_text_encoder(get_encoder(router.encoder, files=folder / ENCODER_FILES))
    if (folder / EMBEDDINGS).is_file() and hasattr(router, "text_encoder"):
        encoder = router.text_encoder()
        if isinstance(encoder, CachedEncoder):
            stored = load_file(str(folder / EMBEDDINGS))
            encoder.preload({bytes.fromhex(k): v.numpy() for k, v in stored.items()})
    history = read_records(folder / HISTORY) if (folder / HISTORY).stat().st_size else []
    return router, history
