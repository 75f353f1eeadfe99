"""Dense sentence-transformers pipelines as saved on disk: every pooling mode, Dense
projections, Normalize or not, and query/document prompts, against sentence-transformers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine import spec_from_folder
from tests.engine.heads_helpers import with_engine
from tests.texts import varied_texts
from tests.tiny import tiny_bert

TEXTS = varied_texts(30, seed=23)


def _pipeline(folder, pooling: str, dense: bool, normalize: bool, prompts: dict | None):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Dense, Normalize, Pooling, Transformer

    transformer = Transformer(str(folder), max_seq_length=64)
    modules = [transformer, Pooling(32, pooling_mode=pooling)]
    if dense:
        torch.manual_seed(5)
        modules.append(Dense(32, 16))  # default activation: tanh
        modules.append(Dense(16, 8, bias=False, activation_function=torch.nn.Identity()))
    if normalize:
        modules.append(Normalize())
    model = SentenceTransformer(modules=modules, device="cpu", prompts=prompts)
    model.save(str(folder.parent / "st"))
    return model, folder.parent / "st"


@pytest.mark.parametrize("pooling,dense,normalize,prompts", [
    ("mean", False, True, None),
    ("cls", True, True, {"query": "query: ", "document": "passage: "}),
    ("max", False, False, None),
    ("lasttoken", True, False, {"query": "Represent this question: "}),
])
async def test_pipeline_matches_sentence_transformers(tmp_path, pooling, dense, normalize, prompts):
    reference, folder = _pipeline(tiny_bert(tmp_path / "bert", seed=6), pooling, dense, normalize, prompts)
    spec = spec_from_folder("m", folder)
    assert (spec.pooling, spec.normalize, spec.dimension, spec.max_length) == (pooling, normalize, 8 if dense else 32, 64)

    async def call(engine, name):
        return (await engine.encode(name, TEXTS, input_type="query"),
                await engine.encode(name, TEXTS, input_type="document"))

    queries, documents = await with_engine(folder, call)
    for ours, input_type in ((queries, "query"), (documents, "document")):
        prompt_name = input_type if prompts and input_type in prompts else None
        expected = reference.encode(TEXTS, prompt_name=prompt_name, convert_to_numpy=True)
        np.testing.assert_allclose(ours.embeddings, expected, atol=2e-5, rtol=1e-4)
    if prompts:
        assert not np.allclose(queries.embeddings, documents.embeddings)


async def test_per_request_pooling_override(tmp_path):
    """Weaviate's pooling_strategy asks for mean or CLS pooling per request."""
    reference_cls, folder = _pipeline(tiny_bert(tmp_path / "cls" / "bert", seed=6), "cls", False, True, None)
    reference_mean, _ = _pipeline(tiny_bert(tmp_path / "mean" / "bert", seed=6), "mean", False, True, None)

    async def call(engine, name):
        return (await engine.encode(name, TEXTS, pooling="mean"), await engine.encode(name, TEXTS),
                await engine.encode(name, TEXTS, pooling="cls"))

    mean, default, cls = await with_engine(folder, call)
    np.testing.assert_allclose(mean.embeddings, reference_mean.encode(TEXTS), atol=2e-5)
    np.testing.assert_allclose(default.embeddings, reference_cls.encode(TEXTS), atol=2e-5)
    np.testing.assert_array_equal(default.embeddings, cls.embeddings)
