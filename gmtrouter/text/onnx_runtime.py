"""A sentence-transformers BERT encoder (all-MiniLM-L6-v2 by default) run by ONNX Runtime with int8 weights.

The PyTorch encoder spends about 27 ms of CPU on one 50-token query; the same network exported to ONNX and
quantised to int8 (per output channel, activations quantised per call) does the same work in a fraction of
that, and its vectors agree with PyTorch's to a cosine of 0.99 on average (docs/benchmarks.md measures both
the vectors and the routing quality). The export is built once from the weights on disk (the bundled model's,
or any local sentence-transformers folder of the same shape), never from a hub, and cached under
`<cache dir>/onnx/` beside a manifest with its SHA-256: a file that is missing, cut short or altered is rebuilt.

Texts are tokenised with the model's own fast tokenizer (`tokenizer.json`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from gmtrouter.text.base import DEFAULT_ENCODER, TextEncoder, bundled_model_path, default_cache_dir, quiet_loading
from gmtrouter.utils.atomic import atomic_write
from gmtrouter.utils.errors import GmtError

log = logging.getLogger("gmtrouter.text")
RECIPE = "int8-dynamic-per-channel-v1"  # change it whenever the export changes: cached files are then rebuilt
VARIANT = "onnx-int8"
THREADS_ENV = "GMTROUTER_ENCODER_THREADS"
_POOLING = "1_Pooling/config.json"


class OnnxUnavailable(Exception):
    """Why a model cannot run on ONNX Runtime here; `tried` says whether an export was attempted and failed."""

    def __init__(self, reason: str, tried: bool = False) -> None:
        super().__init__(reason)
        self.tried = tried


def model_folder(name: str) -> Path:
    """The local sentence-transformers folder of `name` (the bundled model, or a path); hub names have none."""
    bundled = bundled_model_path(name)
    if bundled is not None:
        return bundled
    folder = Path(name).expanduser()
    if not (folder / "modules.json").is_file():
        raise OnnxUnavailable(f"'{name}' is not a local sentence-transformers folder (no modules.json)")
    return folder


def check_exportable(folder: Path) -> None:
    """Refuse what this export does not reproduce: only BERT + mean pooling (+ normalisation) with a fast tokenizer."""
    modules = [m.get("type", "").rsplit(".", 1)[-1] for m in _json(folder / "modules.json")]
    if modules[:2] != ["Transformer", "Pooling"] or not set(modules[2:]) <= {"Normalize"}:
        raise OnnxUnavailable(f"modules {modules} are not Transformer, Pooling[, Normalize]")
    pooling = _json(folder / _POOLING) if (folder / _POOLING).is_file() else {}
    modes = [k for k, v in pooling.items() if k.startswith("pooling_mode") and v]
    if modes != ["pooling_mode_mean_tokens"]:
        raise OnnxUnavailable(f"pooling {modes} is not mean pooling")
    if _json(folder / "config.json").get("model_type") != "bert":
        raise OnnxUnavailable("only BERT models are exported")
    if not (folder / "tokenizer.json").is_file():
        raise OnnxUnavailable("no fast tokenizer (tokenizer.json)")


def fingerprint(folder: Path, recipe: str = RECIPE) -> str:
    """A hash of the weights, the model config and the `recipe` that turns them into a file: a new model or
    recipe gets a new file."""
    digest = hashlib.sha256(recipe.encode())
    for name in ("config.json", "model.safetensors", "pytorch_model.bin"):
        if (folder / name).is_file():
            digest.update(name.encode())
            digest.update(file_sha256(folder / name).encode())
    return digest.hexdigest()[:16]


def export_path(name: str, folder: Path, cache_dir: Path | None = None) -> Path:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(name).name or name)
    return (cache_dir or default_cache_dir()) / "onnx" / f"{slug}-{fingerprint(folder)}.{VARIANT}.onnx"


def ensure_export(name: str, folder: Path, cache_dir: Path | None = None) -> Path:
    """The cached int8 export of `folder`, built (again) if it is missing or does not match its manifest."""
    path = export_path(name, folder, cache_dir)
    if _intact(path):
        return path
    if path.exists():
        log.warning("cached ONNX encoder %s is damaged; rebuilding it", path)
    log.info("exporting %s to ONNX (int8) at %s; once per model", name, path)
    try:
        build_export(folder, path)
    except Exception as error:  # the exporter and quantiser raise many types; all mean "no fast path here"
        raise OnnxUnavailable(f"export failed ({error.__class__.__name__}: {error})", tried=True) from error
    return path


def build_export(folder: Path, path: Path) -> None:
    """Export the network with mean pooling and normalisation to ONNX, quantise it, write file and manifest."""
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import AutoModel

    path.parent.mkdir(parents=True, exist_ok=True)
    with quiet_loading():
        network = AutoModel.from_pretrained(str(folder), attn_implementation="eager").eval()
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".export-") as work:
        fp32, int8 = Path(work) / "fp32.onnx", Path(work) / "int8.onnx"
        ids = torch.ones(2, 8, dtype=torch.long)
        with torch.no_grad(), _quiet_warnings():
            torch.onnx.export(
                _MeanPooled(network),
                (ids, torch.ones_like(ids)),
                str(fp32),
                dynamo=False,
                input_names=["input_ids", "attention_mask"],
                output_names=["embedding"],
                dynamic_axes={"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"}},
                opset_version=17,
            )
        with _quiet_warnings():
            quantize_dynamic(
                str(fp32),
                str(int8),
                weight_type=QuantType.QInt8,
                per_channel=True,  # per-tensor scales lose too much: cosine 0.96 against PyTorch, 0.99 per channel
                extra_options={"MatMulConstBOnly": True},  # weights only; attention's activation products stay float
            )
        digest = file_sha256(int8)
        os.replace(int8, path)
    with atomic_write(path.with_suffix(".json")) as handle:
        json.dump({"sha256": digest, "recipe": RECIPE, "source": str(folder)}, handle, indent=2)


class OnnxEncoder(TextEncoder):
    """The ONNX int8 twin of a sentence-transformers encoder: same name, vectors within cosine ~0.99."""

    variant = VARIANT
    groups_by_length = True  # callers may pass texts of mixed lengths in one call: nothing is padded

    def __init__(self, name: str = DEFAULT_ENCODER, cache_dir: Path | None = None, threads: int | None = None) -> None:
        from tokenizers import Tokenizer

        folder = model_folder(name)
        check_exportable(folder)
        self.name = name
        self.path = ensure_export(name, folder, cache_dir)
        config = folder / "sentence_bert_config.json"
        settings = _json(config) if config.is_file() else {}
        self.max_tokens = int(settings.get("max_seq_length") or 256)
        self.dim = int(_json(folder / _POOLING)["word_embedding_dimension"])
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(self.max_tokens)
        self.threads = threads or encoder_threads()
        self._pool: ThreadPoolExecutor | None = None
        try:
            self.session = self._session()
        except Exception:  # a file that matches its manifest but will not load: rebuild once
            log.warning("cached ONNX encoder %s does not load; rebuilding it", self.path)
            self.path.with_suffix(".json").unlink(missing_ok=True)
            self.path = ensure_export(name, folder, cache_dir)
            self.session = self._session()

    def _session(self) -> Any:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # texts run side by side instead (see encode)
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # shared cores: do not spin
        return ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors [len(texts), dim]; each text tokenised and run on its own, `threads` texts at a time.

        Activations are quantised with one scale per run, so a text run beside others would get a vector that
        depends on them (up to 0.04 per component); one run per text keeps every vector its own, and costs no
        more CPU than padded groups of similar length (measured on MT-Bench questions). Runs on separate
        threads, each single-threaded, never wait for each other, unlike one run split over threads, whose
        threads wait at every operator for the slowest one (costly on cores shared with other work).
        """
        out = np.zeros((len(texts), self.dim), dtype=np.float32)

        def run(rows: range) -> None:
            for row in rows:  # tokenised here, not with encode_batch, whose own thread pool would compete
                ids = np.asarray([self.tokenizer.encode(texts[row]).ids], dtype=np.int64)
                out[row] = self.session.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids)})[0][0]

        workers = min(self.threads, len(texts))
        if workers <= 1:
            run(range(len(texts)))
            return out
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="gmtrouter-encode")
        for done in [self._pool.submit(run, range(k, len(texts), workers)) for k in range(workers)]:
            done.result()
        return out


class _MeanPooled:
    """The transformer followed by sentence-transformers' mean pooling and L2 normalisation (built lazily)."""

    def __new__(cls, network: Any) -> Any:
        import torch

        class MeanPooled(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.network = network

            def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
                hidden = self.network(
                    input_ids=input_ids, attention_mask=attention_mask, token_type_ids=torch.zeros_like(input_ids)
                ).last_hidden_state  # [batch, tokens, dim]
                weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
                return torch.nn.functional.normalize(pooled, p=2.0, dim=1)

        return MeanPooled()


def _intact(path: Path) -> bool:
    manifest = path.with_suffix(".json")
    if not (path.is_file() and manifest.is_file()):
        return False
    try:
        expected = json.loads(manifest.read_text(encoding="utf-8")).get("sha256")
    except (OSError, ValueError):
        return False
    return expected == file_sha256(path)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def encoder_threads() -> int:
    """Texts encoded side by side: $GMTROUTER_ENCODER_THREADS, else the cores this process may use."""
    value = os.environ.get(THREADS_ENV, "").strip()
    if value:
        if not value.isdigit() or int(value) < 1:
            raise GmtError(f"{THREADS_ENV}={value!r} is not a positive whole number; give e.g. 2")
        return int(value)
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


@contextmanager
def _quiet_warnings():
    """The exporter's tracer warnings and the quantiser's advice are about its internals, not the user's input."""
    import warnings

    quantiser = logging.getLogger()
    level = quantiser.level
    quantiser.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        quantiser.setLevel(level)
