import numpy as np
import pytest

from gmtrouter.text.cache import CachedEncoder
from gmtrouter.text.encoders import get_encoder
from gmtrouter.text.hashing import HashingEncoder


class CountingHashingEncoder(HashingEncoder):
    """The real hashing encoder, counting the texts it is asked to encode."""

    def __init__(self) -> None:
        super().__init__(32)
        self.encoded = 0

    def encode(self, texts):
        self.encoded += len(texts)
        return super().encode(texts)


def test_cache_encodes_each_text_once_across_instances(tmp_path) -> None:
    inner = CountingHashingEncoder()
    texts = ["a cat", "a dog", "a cat", "fish"]
    first = CachedEncoder(inner, tmp_path, progress=False).encode(texts)
    assert inner.encoded == 3
    again = CachedEncoder(inner, tmp_path, progress=False).encode([*texts, "bird"])
    assert inner.encoded == 4
    np.testing.assert_array_equal(first, again[:4])
    assert first.dtype == np.float32 and first.shape == (4, 32)


class InterruptedHashingEncoder(CountingHashingEncoder):
    """The counting encoder, interrupted (as by Ctrl-C) on its third batch."""

    def encode(self, texts):
        if self.encoded >= 2 * 256:
            raise KeyboardInterrupt
        return super().encode(texts)


def test_an_interrupted_encoding_keeps_every_finished_batch(tmp_path) -> None:
    texts = [f"text number {i}" for i in range(1000)]
    with pytest.raises(KeyboardInterrupt):
        CachedEncoder(InterruptedHashingEncoder(), tmp_path, progress=False).encode(texts)
    resumed = CountingHashingEncoder()
    vectors = CachedEncoder(resumed, tmp_path, progress=False).encode(texts)
    assert resumed.encoded == 1000 - 2 * 256  # the two batches finished before the interruption are not redone
    np.testing.assert_array_equal(vectors, HashingEncoder(32).encode(texts))


def test_hashing_encoder_is_deterministic() -> None:
    a = HashingEncoder(64).encode(["route this query"])
    b = HashingEncoder(64).encode(["route this query"])
    np.testing.assert_array_equal(a, b)
    assert np.linalg.norm(a) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.slow
def test_bundled_minilm_offline(tmp_path) -> None:
    encoder = get_encoder("all-MiniLM-L6-v2", cache_dir=tmp_path)
    vectors = encoder.encode(["How do I bake bread?", "Bread baking recipe please", "Prove Fermat's theorem"])
    assert vectors.shape == (3, 384)
    similar, different = vectors[0] @ vectors[1], vectors[0] @ vectors[2]
    assert similar > different + 0.2
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
