"""Task heads on tiny random BERTs against their reference libraries (tests/references.py):
sentence-transformers CrossEncoder (scores), the transformers text-classification pipeline
(probabilities) and token-classification pipeline (entity spans), sentence-transformers
SparseEncoder (SPLADE)."""

from __future__ import annotations

import numpy as np
import pytest

from engine import UnsupportedOutput
from tests import references, zoo
from tests.engine.heads_helpers import with_engine
from tests.texts import varied_texts

QUERY = "which river runs through the mountain town"
DOCUMENTS = varied_texts(40, seed=9)[6:] + ["x", "river " * 300]


@pytest.fixture(scope="module")
def cross_encoder(tmp_path_factory):
    return zoo.cross_encoder(tmp_path_factory.mktemp("cross") / "m")[0]


async def test_cross_encoder_scores_match_sentence_transformers(cross_encoder):
    expected = references.rerank_scores(cross_encoder, QUERY, DOCUMENTS)  # sigmoid of the logit
    raw = references.rerank_scores(cross_encoder, QUERY, DOCUMENTS, raw_scores=True)

    async def call(engine, name):
        return await engine.score(name, QUERY, DOCUMENTS), await engine.score(name, QUERY, DOCUMENTS, raw_scores=True)

    scored, raw_scored = await with_engine(cross_encoder, call, max_batch_tokens=512)
    np.testing.assert_allclose(scored.scores, expected, atol=references.SCORE_ATOL)
    np.testing.assert_allclose(raw_scored.scores, raw, atol=references.SCORE_ATOL)


async def test_embedding_outputs_are_refused_by_a_cross_encoder(cross_encoder):
    async def call(engine, name):
        with pytest.raises(UnsupportedOutput, match="cannot give 'dense'"):
            await engine.encode(name, ["a"])
    await with_engine(cross_encoder, call)


async def test_classifier_probabilities_match_transformers(tmp_path):
    folder, _ = zoo.classifier(tmp_path / "m")
    texts = varied_texts(30, seed=4)
    expected = references.classifications(folder, texts)

    result = await with_engine(folder, lambda engine, name: engine.classify(name, texts))
    assert result.labels == ("billing", "technical", "sales")
    np.testing.assert_allclose(result.probabilities, [[row[label] for label in result.labels] for row in expected],
                               atol=references.SCORE_ATOL)


async def test_entities_match_the_token_classification_pipeline(tmp_path):
    folder, _ = zoo.entity_tagger(tmp_path / "m")
    texts = ["Angela Merkel visited Paris and Ünïcödé Straße in 2019.", "no entities here, maybe",
             "Dr. Jean-Luc Picard from La Barre, France", "日本語 Tokyo Osaka"]

    result = await with_engine(folder, lambda engine, name: engine.extract(name, texts))
    found_any = False
    for text, ours, theirs in zip(texts, result.entities, references.entities(folder, texts), strict=True):
        assert [(e.label, e.start, e.end) for e in ours] == [(t["entity_group"], t["start"], t["end"]) for t in theirs]
        np.testing.assert_allclose([e.score for e in ours], [t["score"] for t in theirs], atol=references.SCORE_ATOL)
        assert all(e.text == text[e.start:e.end] for e in ours)
        found_any |= bool(ours)
    assert found_any


async def test_splade_matches_sentence_transformers_sparse_encoder(tmp_path):
    folder, _ = zoo.splade(tmp_path / "m")
    references.sparse_encoder(folder).save(str(tmp_path / "st"))  # the sentence-transformers folder layout must load too
    texts = varied_texts(30, seed=8)
    expected = references.sparse_dense(folder, texts)

    for served_folder in (folder, tmp_path / "st"):
        result = await with_engine(served_folder, lambda engine, name: engine.encode(
            name, texts, output="sparse", return_labels=True))
        dense = np.zeros_like(expected)
        for row, (indices, values) in zip(dense, result.embeddings):
            assert np.all(np.diff(indices) > 0)  # strictly ascending
            row[indices] = values
        np.testing.assert_allclose(dense, expected, atol=references.VECTOR_ATOL, rtol=references.VECTOR_RTOL)
        for labels, (indices, _) in zip(result.labels, result.embeddings, strict=True):
            assert labels == references.sparse_labels(folder, indices)

    top = await with_engine(folder, lambda engine, name: engine.encode(name, texts[:5], output="sparse", top_k=8))
    assert all(len(indices) == 8 for indices, _ in top.embeddings)
    references.assert_sparse_close(top.embeddings, references.sparse(folder, texts[:5], top_k=8))
