"""ColBERT multivectors and MaxSim scores against PyLate on a tiny random BERT ColBERT."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.engine.heads_helpers import with_engine
from tests.texts import varied_texts
from tests import zoo


@pytest.fixture(scope="module", params=[False, True], ids=["masked-expansion", "attend-expansion"])
def colbert(request, tmp_path_factory):
    # The reference is the model PyLate saved: reloading the folder needs loader hooks that
    # PyLate 1.6 and sentence-transformers 6 disagree on.
    return zoo.colbert(tmp_path_factory.mktemp("colbert") / "m", attend_to_expansion_tokens=request.param)


# Under sentence-transformers 6, PyLate 1.6 pads queries to the longest in the batch rather
# than to the query length; a query past the query length in every batch makes the two the
# same, so the reference keeps PyLate's documented query expansion.
LONG_QUERY = "mountain coffee " * 30
QUERIES = ["which river?", "a b", LONG_QUERY]
DOCUMENTS = varied_texts(30, seed=13) + ["Hello, world! (yes) -- ok...", "x"]


async def test_query_and_document_vectors_match_pylate(colbert):
    folder, reference = colbert
    expected_queries = reference.encode(QUERIES, is_query=True)
    expected_documents = reference.encode(DOCUMENTS, is_query=False)

    async def call(engine, name):
        queries = await engine.encode(name, QUERIES, input_type="query", output="multivector")
        documents = await engine.encode(name, DOCUMENTS, input_type="document", output="multivector")
        return queries, documents

    queries, documents = await with_engine(folder, call, max_batch_tokens=256)
    for ours, theirs in zip(queries.embeddings + documents.embeddings, expected_queries + expected_documents):
        assert ours.shape == theirs.shape
        np.testing.assert_allclose(ours, theirs, atol=1e-5)
    assert all(len(q) == 24 for q in queries.embeddings)  # query expansion to the query length


async def test_maxsim_scores_match_pylate(colbert):
    from pylate import scores

    folder, reference = colbert
    query = reference.encode([QUERIES[0], LONG_QUERY], is_query=True)[:1]
    documents = reference.encode(DOCUMENTS, is_query=False)
    expected = [float(scores.colbert_scores(torch.tensor(query[0])[None], torch.tensor(d)[None])[0, 0]) for d in documents]

    result = await with_engine(folder, lambda engine, name: engine.score(name, QUERIES[0], DOCUMENTS))
    np.testing.assert_allclose(result.scores, expected, atol=1e-4)
