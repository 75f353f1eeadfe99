"""Architectures without a native forward pass still serve through transformers (padded),
reported as such, and agree with the reference libraries."""

from __future__ import annotations

import numpy as np
import torch

from engine import spec_from_folder
from tests.engine.heads_helpers import with_engine
from tests.texts import varied_texts
from tests.tiny import save_model, write_sentence_transformers_config
from tests.zoo import perturbed

TEXTS = varied_texts(24, seed=17)


def _electra_config(**extra):
    from transformers import ElectraConfig

    return ElectraConfig(vocab_size=30522, embedding_size=24, hidden_size=32, num_hidden_layers=2,
                         num_attention_heads=4, intermediate_size=64, max_position_embeddings=128, **extra)


async def test_unknown_encoder_embeds_through_transformers(tmp_path):
    from sentence_transformers import SentenceTransformer
    from transformers import ElectraModel

    torch.manual_seed(0)
    folder = save_model(perturbed(ElectraModel(_electra_config(architectures=["ElectraModel"]))), tmp_path / "m")
    write_sentence_transformers_config(folder, pooling="mean", normalize=True, max_seq_length=64)
    expected = SentenceTransformer(str(folder), device="cpu").encode(TEXTS, normalize_embeddings=True)

    async def call(engine, name):
        (status,) = engine.models()
        assert status.backend == "transformers"
        return await engine.encode(name, TEXTS)

    result = await with_engine(folder, call, max_batch_tokens=256)
    assert ((result.embeddings * expected).sum(1)).min() >= 0.9999


async def test_unknown_cross_encoder_scores_through_transformers(tmp_path):
    from sentence_transformers import CrossEncoder
    from transformers import ElectraForSequenceClassification

    torch.manual_seed(1)
    config = _electra_config(num_labels=1, architectures=["ElectraForSequenceClassification"])
    folder = save_model(perturbed(ElectraForSequenceClassification(config)), tmp_path / "m")
    assert spec_from_folder("m", folder).task == "score"
    query = "which river"
    expected = CrossEncoder(str(folder), device="cpu", max_length=128).predict([(query, t) for t in TEXTS])
    result = await with_engine(folder, lambda engine, name: engine.score(name, query, TEXTS))
    np.testing.assert_allclose(result.scores, expected, atol=1e-5)
