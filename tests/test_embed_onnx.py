"""The ONNX Runtime encoder: the same vectors as PyTorch's all-MiniLM-L6-v2, an export built once and rebuilt
when damaged, and the backend setting with its fallback."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest

from gmtrouter.data.loaders import prepare
from gmtrouter.text.base import bundled_model_path
from gmtrouter.text.cache import CachedEncoder
from gmtrouter.text.encoders import BACKEND_ENV, get_encoder
from gmtrouter.text.onnx_runtime import OnnxEncoder, export_path
from gmtrouter.text.sentence import SentenceTransformerEncoder
from gmtrouter.utils.errors import GmtError

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def questions(data_dir: Path) -> list[str]:
    return sorted({r.query for r in prepare("mt-bench", data_dir / "mt_bench")})


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One export for the module (the test session's cache folder is not shared with other modules' checks)."""
    folder = tmp_path_factory.mktemp("onnx-cache")
    OnnxEncoder(cache_dir=folder)
    return folder


def test_onnx_vectors_agree_with_pytorch_on_mt_bench_questions(questions, export_dir) -> None:
    fast = OnnxEncoder(cache_dir=export_dir).encode(questions)
    exact = SentenceTransformerEncoder().encode(questions)
    cosine = np.sum(fast * exact, axis=1)
    assert fast.shape == exact.shape == (80, 384)
    np.testing.assert_allclose(np.linalg.norm(fast, axis=1), 1.0, atol=1e-4)
    assert cosine.mean() > 0.99, cosine.mean()
    assert cosine.min() > 0.975, (cosine.min(), questions[int(cosine.argmin())])  # 0.980: a Chinese quote


def test_a_texts_vector_does_not_depend_on_the_others_in_its_call(questions, export_dir) -> None:
    encoder = OnnxEncoder(cache_dir=export_dir, threads=3)  # three texts at a time
    together = encoder.encode(questions[:12])
    alone = np.concatenate([encoder.encode([q]) for q in questions[:12]])
    np.testing.assert_array_equal(together, alone)


def test_the_export_is_cached_and_reused(export_dir) -> None:
    path = export_path("all-MiniLM-L6-v2", bundled_model_path("all-MiniLM-L6-v2"), export_dir)
    before = path.stat()
    encoder = OnnxEncoder(cache_dir=export_dir)
    assert encoder.path == path
    assert path.stat().st_mtime_ns == before.st_mtime_ns and path.stat().st_ino == before.st_ino
    assert [p.name for p in (export_dir / "onnx").iterdir() if p.suffix == ".onnx"] == [path.name]


@pytest.mark.parametrize("damage", ["cut short", "missing", "manifest missing"])
def test_a_damaged_or_missing_export_is_rebuilt(questions, export_dir, tmp_path, damage) -> None:
    good = OnnxEncoder(cache_dir=export_dir)
    expected = good.encode(questions[:3])
    (tmp_path / "onnx").mkdir()
    path = tmp_path / "onnx" / good.path.name
    path.write_bytes(good.path.read_bytes())
    path.with_suffix(".json").write_text(good.path.with_suffix(".json").read_text())
    if damage == "cut short":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    elif damage == "missing":
        path.unlink()
    else:
        path.with_suffix(".json").unlink()
    rebuilt = OnnxEncoder(cache_dir=tmp_path)
    assert rebuilt.path == path and path.stat().st_size == good.path.stat().st_size
    assert json.loads(path.with_suffix(".json").read_text())["sha256"]
    np.testing.assert_allclose(rebuilt.encode(questions[:3]), expected, atol=1e-6)


def test_backend_setting_selects_and_caches_apart(monkeypatch, export_dir, tmp_path) -> None:
    monkeypatch.setenv("GMTROUTER_CACHE_DIR", str(export_dir))
    monkeypatch.delenv(BACKEND_ENV, raising=False)
    default = get_encoder("all-MiniLM-L6-v2", cache_dir=export_dir)
    assert isinstance(default, CachedEncoder) and isinstance(default.inner, OnnxEncoder)
    monkeypatch.setenv(BACKEND_ENV, "torch")
    exact = get_encoder("all-MiniLM-L6-v2", cache_dir=export_dir)
    assert isinstance(exact.inner, SentenceTransformerEncoder)
    assert default.cache.path != exact.cache.path  # int8 and float vectors never share a cache file
    monkeypatch.setenv(BACKEND_ENV, "fast")
    with pytest.raises(GmtError, match=f"{BACKEND_ENV}='fast' is not a backend; use one of: auto, onnx, torch"):
        get_encoder("all-MiniLM-L6-v2", cache_dir=export_dir)
    monkeypatch.setenv(BACKEND_ENV, "onnx")
    monkeypatch.setenv("GMTROUTER_ENCODER_THREADS", "two")
    with pytest.raises(GmtError, match="GMTROUTER_ENCODER_THREADS='two' is not a positive whole number"):
        get_encoder("all-MiniLM-L6-v2", cache_dir=export_dir)


def cls_pooled_copy(tmp_path: Path) -> Path:
    """The bundled model with CLS pooling: a real sentence-transformers folder this export does not reproduce."""
    source, folder = bundled_model_path("all-MiniLM-L6-v2"), tmp_path / "cls-model"
    (folder / "1_Pooling").mkdir(parents=True)
    for item in source.iterdir():
        if item.is_file():
            os.symlink(item, folder / item.name)
    pooling = json.loads((source / "1_Pooling" / "config.json").read_text())
    pooling.update(pooling_mode_mean_tokens=False, pooling_mode_cls_token=True)
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    return folder


def test_a_model_that_does_not_export_falls_back_to_pytorch_and_says_so(monkeypatch, tmp_path, caplog) -> None:
    folder = cls_pooled_copy(tmp_path)
    monkeypatch.delenv(BACKEND_ENV, raising=False)
    with caplog.at_level(logging.INFO, logger="gmtrouter.text"):
        encoder = get_encoder(str(folder), cache_dir=tmp_path, cache=False)
    assert isinstance(encoder, SentenceTransformerEncoder)
    assert "runs on PyTorch" in caplog.text and "not mean pooling" in caplog.text
    monkeypatch.setenv(BACKEND_ENV, "onnx")
    with pytest.raises(
        GmtError, match=r"cannot run on ONNX Runtime: .*not mean pooling.*GMTROUTER_ENCODER_BACKEND=torch"
    ):
        get_encoder(str(folder), cache_dir=tmp_path)
