"""Task heads on tiny random BERTs against their reference libraries: sentence-transformers
CrossEncoder (scores), transformers (classification probabilities), the transformers
token-classification pipeline (entity spans), sentence-transformers SparseEncoder (SPLADE)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine import UnsupportedOutput
from tests.engine.heads_helpers import with_engine
from tests.texts import varied_texts
from tests import zoo

QUERY = "which river runs through the mountain town"
DOCUMENTS = varied_texts(40, seed=9)[6:] + ["x", "river " * 300]


@pytest.fixture(scope="module")
def cross_encoder(tmp_path_factory):
    return zoo.cross_encoder(tmp_path_factory.mktemp("cross") / "m")[0]


async def test_cross_encoder_scores_match_sentence_transformers(cross_encoder):
    from sentence_transformers import CrossEncoder

    reference = CrossEncoder(str(cross_encoder), device="cpu")
    expected = reference.predict([(QUERY, d) for d in DOCUMENTS])  # sigmoid of the logit
    raw = reference.predict([(QUERY, d) for d in DOCUMENTS], activation_fn=torch.nn.Identity())

    async def call(engine, name):
        return await engine.score(name, QUERY, DOCUMENTS), await engine.score(name, QUERY, DOCUMENTS, raw_scores=True)

    scored, raw_scored = await with_engine(cross_encoder, call, max_batch_tokens=512)
    np.testing.assert_allclose(scored.scores, expected, atol=1e-5)
    np.testing.assert_allclose(raw_scored.scores, raw, atol=1e-4)


async def test_embedding_outputs_are_refused_by_a_cross_encoder(cross_encoder):
    async def call(engine, name):
        with pytest.raises(UnsupportedOutput, match="cannot give 'dense'"):
            await engine.encode(name, ["a"])
    await with_engine(cross_encoder, call)


async def test_classifier_probabilities_match_transformers(tmp_path):
    folder, model = zoo.classifier(tmp_path / "m")
    texts = varied_texts(30, seed=4)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    with torch.no_grad():
        expected = [torch.softmax(model(**tokenizer(t, return_tensors="pt", truncation=True, max_length=128)).logits[0], -1).numpy()
                    for t in texts]

    result = await with_engine(folder, lambda engine, name: engine.classify(name, texts))
    assert result.labels == ("billing", "technical", "sales")
    np.testing.assert_allclose(result.probabilities, np.stack(expected), atol=1e-5)


async def test_entities_match_the_token_classification_pipeline(tmp_path):
    from transformers import AutoTokenizer, pipeline

    folder, model = zoo.entity_tagger(tmp_path / "m")
    texts = ["Angela Merkel visited Paris and Ünïcödé Straße in 2019.", "no entities here, maybe",
             "Dr. Jean-Luc Picard from La Barre, France", "日本語 Tokyo Osaka"]
    ner = pipeline("token-classification", model=model, tokenizer=AutoTokenizer.from_pretrained(str(folder)),
                   aggregation_strategy="simple", device="cpu")

    result = await with_engine(folder, lambda engine, name: engine.extract(name, texts))
    found_any = False
    for text, ours, theirs in zip(texts, result.entities, ner(texts)):
        assert [(e.label, e.start, e.end) for e in ours] == [(t["entity_group"], t["start"], t["end"]) for t in theirs]
        np.testing.assert_allclose([e.score for e in ours], [t["score"] for t in theirs], atol=1e-5)
        assert all(e.text == text[e.start:e.end] for e in ours)
        found_any |= bool(ours)
    assert found_any


async def test_splade_matches_sentence_transformers_sparse_encoder(tmp_path):
    from sentence_transformers import SparseEncoder
    from sentence_transformers.sparse_encoder.models import MLMTransformer, SpladePooling
    folder, _ = zoo.splade(tmp_path / "m")
    reference = SparseEncoder(modules=[MLMTransformer(str(folder)), SpladePooling("max")], device="cpu")
    reference.save(str(tmp_path / "st"))  # the sentence-transformers folder layout must load too
    texts = varied_texts(30, seed=8)
    expected = reference.encode(texts, convert_to_tensor=True).to_dense().numpy()

    for served_folder in (folder, tmp_path / "st"):
        result = await with_engine(served_folder, lambda engine, name: engine.encode(
            name, texts, output="sparse", return_labels=True))
        dense = np.zeros_like(expected)
        for row, (indices, values) in zip(dense, result.embeddings):
            assert np.all(np.diff(indices) > 0)  # strictly ascending
            row[indices] = values
        np.testing.assert_allclose(dense, expected, atol=1e-4)
        assert [len(labels) for labels in result.labels] == [len(i) for i, _ in result.embeddings]

    top = await with_engine(folder, lambda engine, name: engine.encode(name, texts[:5], output="sparse", top_k=8))
    for (indices, values), full in zip(top.embeddings, expected[:5]):
        assert len(indices) == 8 and np.all(np.diff(indices) > 0)
        np.testing.assert_allclose(np.sort(values), np.sort(full)[-8:], atol=1e-4)
