"""The real all-MiniLM-L6-v2 through the engine against sentence-transformers."""

from __future__ import annotations

import numpy as np
import pytest

from engine import Engine, EngineConfig, InputTooLong
from engine.device import cpu_supports_bfloat16
from tests.texts import varied_texts

TEXTS = varied_texts(220)


@pytest.fixture(scope="module")
def reference_vectors(minilm_reference):
    return minilm_reference.encode(TEXTS, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)


async def _encode(spec, dtype: str, texts: list[str], **kwargs):
    engine = Engine([spec], EngineConfig(device="cpu", dtype=dtype, max_batch_tokens=2048))
    await engine.start()
    try:
        return await engine.encode(spec.name, texts, **kwargs)
    finally:
        await engine.stop()


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


async def test_float32_matches_sentence_transformers(minilm_spec, reference_vectors):
    result = await _encode(minilm_spec, "float32", TEXTS)
    assert result.embeddings.shape == reference_vectors.shape
    assert _cosines(result.embeddings, reference_vectors).min() >= 0.9999


@pytest.mark.skipif(not cpu_supports_bfloat16(), reason="this CPU has no native bfloat16 (AVX512-BF16 or AMX)")
async def test_bfloat16_matches_sentence_transformers(minilm_spec, reference_vectors):
    result = await _encode(minilm_spec, "bfloat16", TEXTS)
    assert _cosines(result.embeddings, reference_vectors).min() >= 0.999


async def test_token_counts_are_unpadded_and_truncated(minilm_spec, minilm_reference):
    texts = ["hello world", "word " * 600]
    result = await _encode(minilm_spec, "float32", texts)
    tokenizer = minilm_reference.tokenizer
    expected = [len(tokenizer(t, truncation=True, max_length=256)["input_ids"]) for t in texts]
    assert expected == [4, 256]
    assert result.input_tokens == sum(expected)


async def test_truncate_false_refuses_overlong_input(minilm_spec):
    with pytest.raises(InputTooLong):
        await _encode(minilm_spec, "float32", ["fine", "word " * 600], truncate=False)


async def test_matryoshka_dimensions_are_truncated_then_renormalised(minilm_spec, reference_vectors):
    result = await _encode(minilm_spec, "float32", TEXTS[:20], dimensions=64)
    assert result.embeddings.shape == (20, 64)
    np.testing.assert_allclose(np.linalg.norm(result.embeddings, axis=1), 1.0, atol=1e-5)
    truncated = reference_vectors[:20, :64]
    assert _cosines(result.embeddings, truncated).min() >= 0.9999
