"""ColBERT multivectors and MaxSim scores against PyLate (tests/references.py) on a tiny
random BERT ColBERT."""

from __future__ import annotations

import numpy as np
import pytest

from tests import references, zoo
from tests.engine.heads_helpers import with_engine
from tests.texts import varied_texts


@pytest.fixture(scope="module", params=[False, True], ids=["masked-expansion", "attend-expansion"])
def colbert(request, tmp_path_factory):
    # The reference is the model PyLate saved: reloading the folder needs loader hooks that
    # PyLate 1.6 and sentence-transformers 6 disagree on.
    return zoo.colbert(tmp_path_factory.mktemp("colbert") / "m", attend_to_expansion_tokens=request.param)


QUERIES = ["which river?", "a b", references.LONG_QUERY]
DOCUMENTS = varied_texts(30, seed=13) + ["Hello, world! (yes) -- ok...", "x"]


async def test_query_and_document_vectors_match_pylate(colbert):
    folder, reference = colbert
    expected_queries = references.colbert_vectors(reference, QUERIES, is_query=True)
    expected_documents = references.colbert_vectors(reference, DOCUMENTS, is_query=False)

    async def call(engine, name):
        queries = await engine.encode(name, QUERIES, input_type="query", output="multivector")
        documents = await engine.encode(name, DOCUMENTS, input_type="document", output="multivector")
        return queries, documents

    queries, documents = await with_engine(folder, call, max_batch_tokens=256)
    for ours, theirs in zip(queries.embeddings + documents.embeddings, expected_queries + expected_documents,
                            strict=True):
        references.assert_vectors_close(ours, theirs)
    assert all(len(q) == 24 for q in queries.embeddings)  # query expansion to the query length


async def test_maxsim_scores_match_pylate(colbert):
    folder, reference = colbert
    expected = references.colbert_scores(reference, QUERIES[0], DOCUMENTS)

    result = await with_engine(folder, lambda engine, name: engine.score(name, QUERIES[0], DOCUMENTS))
    np.testing.assert_allclose(result.scores, expected, atol=references.SCORE_ATOL)
