"""The static encoder: a model2vec table distilled from the bundled MiniLM, chosen by name, kept with the model
that was trained on it, so that routing encodes as training did."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gmtrouter.api import Router
from gmtrouter.registry.checkpoint import ENCODER_FILES, save_router
from gmtrouter.text.encoders import get_encoder
from gmtrouter.text.static import STATIC_ENCODER, StaticEncoder
from gmtrouter.utils.errors import GmtError
from tests.cli_support import assert_one_line_error, in_child
from tests.conftest import REPO
from tests.test_gmtrouter import FAST, taste_records


def test_static_vectors_are_unit_length_and_each_text_its_own(static_table: Path) -> None:
    encoder = get_encoder(STATIC_ENCODER)
    texts = ["how long do I boil pasta?", "a haiku about rain", "why does my python loop never end"]
    together = encoder.encode(texts)
    assert together.shape == (3, encoder.dim) and together.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-3)
    alone = np.concatenate([StaticEncoder(static_table).encode([t]) for t in texts])
    np.testing.assert_allclose(together, alone, atol=1e-6)


def test_similar_questions_are_nearer_than_unrelated_ones(static_table: Path) -> None:
    encoder = StaticEncoder(static_table)
    pasta, spaghetti, taxes = encoder.encode(
        ["how long should I boil pasta", "cooking time for spaghetti noodles", "how do I file my income tax return"]
    )
    assert pasta @ spaghetti > pasta @ taxes + 0.1


def test_its_cache_is_kept_apart_from_minilm(static_table: Path) -> None:
    cached = get_encoder(STATIC_ENCODER)
    assert cached.variant.startswith("model2vec-") and cached.files() == static_table
    assert cached.cache.path.name.startswith("static.model2vec-")


def test_a_missing_table_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(GmtError, match="table is missing"):
        StaticEncoder(tmp_path)


@pytest.mark.slow
def test_a_model_trained_on_the_static_encoder_routes_with_its_own_table_elsewhere(
    static_table: Path, tmp_path: Path
) -> None:
    from gmtrouter.model.gmtrouter import GMTRouter

    history = taste_records(12, 8, seed=1)
    # the backbone alone with its user-topic deviation on: a query's vector picks its topic (no network to train)
    model = GMTRouter(**{**FAST, "encoder": STATIC_ENCODER, "residual": False, "topic_prior": 8.0}).fit(history)
    folder = save_router(model, tmp_path / "model", history)
    kept = folder / ENCODER_FILES
    assert (kept / "model.safetensors").read_bytes() == (static_table / "model.safetensors").read_bytes()
    assert oct((kept / "model.safetensors").stat().st_mode & 0o777) == oct(0o666 & ~_umask())
    router = Router(model, history)
    assert router.context.needs_query_vector
    here = router.route("u0", "a question never asked", ["a", "b", "c"])
    # another machine: an empty encoder cache, so the table can only come from the model folder (no distilling)
    env = {**os.environ, "GMTROUTER_CACHE_DIR": str(tmp_path / "elsewhere"), "HF_HUB_OFFLINE": "1"}
    code = (
        "import json, sys; from gmtrouter.api import Router; r = Router.load(sys.argv[1]); "
        "d = r.route('u0', 'a question never asked', ['a', 'b', 'c']); "
        "print(json.dumps([[x.llm, x.score] for x in d.ranking]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(folder)], env=env, cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    there = json.loads(out.stdout.strip().splitlines()[-1])
    assert [llm for llm, _ in there] == [r.llm for r in here.ranking]
    np.testing.assert_allclose([s for _, s in there], [r.score for r in here.ranking], atol=1e-5)
    assert not (tmp_path / "elsewhere" / "static").exists()


def test_train_takes_an_encoder_and_refuses_it_for_a_router_that_reads_no_text(tmp_path: Path) -> None:
    data = tmp_path / "records.jsonl"
    data.write_text("".join(r.model_dump_json() + "\n" for r in taste_records(4, 4, seed=0)))
    result = in_child(
        "train", "--data", str(data), "-o", str(tmp_path / "m"), "--router", "global-winrate", "--encoder", "static"
    )
    assert result.returncode == 2
    assert_one_line_error(result, "global-winrate", "--encoder")
    assert not (tmp_path / "m").exists()


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
