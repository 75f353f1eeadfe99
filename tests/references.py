"""Independent references: what each model's own library gives on the same inputs.

Engine and HTTP tests compare Shoal's results with these, never with a second Shoal engine:
- dense embedders: sentence-transformers `SentenceTransformer` (query/document prompts via
  `encode_query`/`encode_document`, Matryoshka `truncate_dim`, the model's own modules minus
  `Normalize` for un-normalised output, a `Pooling` module for a pooling override);
- cross-encoders: sentence-transformers `CrossEncoder` (sigmoid of the logit; the raw logit
  with an identity activation);
- classifiers and entity taggers: the transformers `text-classification` (top_k=None) and
  `token-classification` (aggregation_strategy="simple") pipelines;
- SPLADE: sentence-transformers `SparseEncoder` (MLM transformer + max SPLADE pooling);
- ColBERT: PyLate, on the model PyLate itself saved (see `tests/zoo.py` for the shims
  PyLate 1.6 needs under sentence-transformers 6).

Loaded reference models are cached per process (they are pure functions of the folder).

Tolerances, float32 on CPU:
- vectors (dense, ColBERT token vectors, SPLADE weights): elementwise atol `VECTOR_ATOL`
  (1e-5) plus rtol `VECTOR_RTOL` (1e-5, for un-normalised vectors and SPLADE weights, whose
  magnitudes are above 1), and cosine >= `MIN_COSINE` (0.9999) per row;
- scores (relevance, probabilities, entity scores): atol `SCORE_ATOL` (1e-5).
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from tests import zoo

VECTOR_ATOL = 1e-5
VECTOR_RTOL = 1e-5
MIN_COSINE = 0.9999
SCORE_ATOL = 1e-5


# ---- the tiny task models ----------------------------------------------------------------
class Zoo:
    """The tiny task models of tests/zoo.py, each built once under `root` and served under
    its builder's name: cross_encoder as "rerank", classifier as "intent", entity_tagger as
    "ner", "splade", "colbert". Keeps each builder's in-memory model too: the ColBERT
    reference is the model PyLate saved (reloading the folder needs loader hooks that
    PyLate 1.6 and sentence-transformers 6 disagree on)."""

    BUILDERS: ClassVar[dict] = {"rerank": zoo.cross_encoder, "intent": zoo.classifier, "ner": zoo.entity_tagger,
                "splade": zoo.splade, "colbert": zoo.colbert}

    def __init__(self, root: Path):
        self.root = Path(root)
        self._built: dict[str, tuple[Path, object]] = {}

    def _build(self, name: str) -> tuple[Path, object]:
        if name not in self._built:
            self._built[name] = self.BUILDERS[name](self.root / name)
        return self._built[name]

    def folder(self, name: str) -> Path:
        return self._build(name)[0]

    def model(self, name: str):
        return self._build(name)[1]

    def specs(self, names: Sequence[str]) -> list:
        from engine import spec_from_folder

        return [spec_from_folder(name, self.folder(name)) for name in names]


# ---- dense: sentence-transformers ----------------------------------------------------------
@functools.cache
def _sentence_transformer(folder: str):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(folder, device="cpu")


@functools.cache
def _sentence_pipeline(folder: str, pooling: str | None, normalize: bool):
    """The folder's own sentence-transformers modules with the pooling mode replaced and the
    Normalize module kept or dropped (the weights are shared with the cached model)."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Normalize, Pooling

    model = _sentence_transformer(folder)
    modules = [module for module in model if not isinstance(module, Normalize)]
    if pooling is not None:
        modules = [Pooling(module.embedding_dimension, pooling_mode=pooling) if isinstance(module, Pooling)
                   else module for module in modules]
    if normalize:
        modules.append(Normalize())
    return SentenceTransformer(modules=modules, device="cpu", prompts=model.prompts)


def sentence_transformer(folder):
    """The cached `SentenceTransformer(str(folder), device="cpu")`."""
    return _sentence_transformer(str(folder))


def dense(folder, texts: Sequence[str], *, input_type: str = "document", normalize: bool | None = None,
          dimensions: int | None = None, pooling: str | None = None) -> np.ndarray:
    """sentence-transformers embeddings of `texts`, float32 [n, d]. `normalize` None keeps the
    model's own (its Normalize module); False drops the module; `dimensions` truncates
    (Matryoshka) and renormalises when normalising; `pooling` replaces the pooling mode."""
    from sentence_transformers.models import Normalize

    model = sentence_transformer(folder)
    own = any(isinstance(module, Normalize) for module in model)
    normalize = own if normalize is None else normalize
    if pooling is not None or normalize != own:
        model = _sentence_pipeline(str(folder), pooling, normalize)
    encode = model.encode_query if input_type == "query" else model.encode_document
    return encode(list(texts), normalize_embeddings=normalize, truncate_dim=dimensions, convert_to_numpy=True)


# ---- scores: sentence-transformers CrossEncoder -------------------------------------------
@functools.cache
def _cross_encoder(folder: str):
    from sentence_transformers import CrossEncoder

    return CrossEncoder(folder, device="cpu")


def pair_scores(folder, pairs: Sequence[tuple[str, str]], raw_scores: bool = False) -> np.ndarray:
    """CrossEncoder scores of (query, document) pairs: sigmoid of the logit, or the logit."""
    activation = {"activation_fn": torch.nn.Identity()} if raw_scores else {}
    return np.asarray(_cross_encoder(str(folder)).predict([tuple(p) for p in pairs], **activation), dtype=np.float64)


def rerank_scores(folder, query: str, documents: Sequence[str], raw_scores: bool = False) -> np.ndarray:
    """CrossEncoder scores of each document against `query`, in document order."""
    return pair_scores(folder, [(query, document) for document in documents], raw_scores)


# ---- classify and extract: transformers pipelines -----------------------------------------
def _max_length(folder: str) -> int:
    """The length sentence-transformers and Shoal read: the tokenizer's, capped by the
    position embeddings."""
    from transformers import AutoConfig, AutoTokenizer

    return min(AutoTokenizer.from_pretrained(folder).model_max_length,
               AutoConfig.from_pretrained(folder).max_position_embeddings)


@functools.cache
def _pipeline(task: str, folder: str):
    from transformers import pipeline

    if task == "text-classification":
        return pipeline(task, model=folder, top_k=None, device="cpu")
    return pipeline(task, model=folder, aggregation_strategy="simple", device="cpu")


def classifications(folder, texts: Sequence[str]) -> list[dict[str, float]]:
    """Each text's probability per label (softmax), from `pipeline("text-classification", top_k=None)`."""
    found = _pipeline("text-classification", str(folder))(list(texts), truncation=True,
                                                         max_length=_max_length(str(folder)))
    return [{label["label"]: label["score"] for label in labels} for labels in found]


def entities(folder, texts: Sequence[str]) -> list[list[dict]]:
    """Each text's entity spans from `pipeline("token-classification", aggregation_strategy="simple")`:
    dicts with entity_group, start, end, score, word."""
    return _pipeline("token-classification", str(folder))(list(texts))


# ---- sparse: sentence-transformers SparseEncoder ------------------------------------------
@functools.cache
def _sparse_encoder(folder: str):
    from sentence_transformers import SparseEncoder
    from sentence_transformers.sparse_encoder.models import MLMTransformer, SpladePooling

    return SparseEncoder(modules=[MLMTransformer(folder), SpladePooling("max")], device="cpu")


def sparse_encoder(folder):
    """The cached SPLADE `SparseEncoder` over a bare masked-LM folder."""
    return _sparse_encoder(str(folder))


def sparse_dense(folder, texts: Sequence[str], top_k: int | None = None) -> np.ndarray:
    """SparseEncoder weights as a dense [n, vocab] float32 array (`top_k`: max_active_dims)."""
    encoded = sparse_encoder(folder).encode(list(texts), convert_to_tensor=True, max_active_dims=top_k)
    return encoded.to_dense().cpu().numpy()


def sparse(folder, texts: Sequence[str], top_k: int | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """SparseEncoder vectors as (ascending indices, values) pairs, the nonzero weights only."""
    rows = sparse_dense(folder, texts, top_k)
    return [(np.flatnonzero(row), row[np.flatnonzero(row)]) for row in rows]


def sparse_labels(folder, indices) -> list[str]:
    """The SparseEncoder's vocabulary tokens for `indices` (what its `decode` names them)."""
    return sparse_encoder(folder).tokenizer.convert_ids_to_tokens([int(i) for i in indices])


# ---- ColBERT: PyLate ----------------------------------------------------------------------
# Under sentence-transformers 6, PyLate 1.6 pads queries to the longest in the batch rather
# than to the query length; one query past the query length in the batch makes the two the
# same, so the reference keeps PyLate's documented query expansion.
LONG_QUERY = "mountain coffee " * 30


def colbert_vectors(model, texts: Sequence[str], is_query: bool) -> list[np.ndarray]:
    """PyLate token vectors of `texts` (queries expanded to the query length; documents with
    the punctuation skiplist applied), one float32 [tokens, dim] array per text."""
    texts = list(texts)
    if not is_query:
        return [np.asarray(v, dtype=np.float32) for v in model.encode(texts, is_query=False)]
    vectors = model.encode(texts + [LONG_QUERY], is_query=True, batch_size=len(texts) + 1)
    return [np.asarray(v, dtype=np.float32) for v in vectors[:-1]]


def colbert_scores(model, query: str, documents: Sequence[str]) -> np.ndarray:
    """PyLate MaxSim scores of each document against `query`, in document order."""
    from pylate import scores

    (query_vectors,) = colbert_vectors(model, [query], is_query=True)
    return np.array([float(scores.colbert_scores(torch.tensor(query_vectors)[None], torch.tensor(d)[None])[0, 0])
                     for d in colbert_vectors(model, documents, is_query=False)])


# ---- assertions ---------------------------------------------------------------------------
def assert_vectors_close(got, want, atol: float = VECTOR_ATOL, rtol: float = VECTOR_RTOL) -> None:
    """Same shape; every element within atol + rtol*|want|; every row's cosine >= MIN_COSINE."""
    got, want = np.asarray(got, dtype=np.float32), np.asarray(want, dtype=np.float32)
    assert got.shape == want.shape, (got.shape, want.shape)
    np.testing.assert_allclose(got, want, atol=atol, rtol=rtol)
    got, want = got.reshape(-1, got.shape[-1]), want.reshape(-1, want.shape[-1])
    norms = np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1)
    cosine = (got * want).sum(1) / np.maximum(norms, 1e-12)
    assert cosine.min() >= MIN_COSINE, cosine.min()


def assert_sparse_close(got: Sequence[tuple], want: Sequence[tuple], atol: float = VECTOR_ATOL,
                        rtol: float = VECTOR_RTOL) -> None:
    """The same (strictly ascending) indices per vector, and their values within tolerance."""
    assert len(got) == len(want)
    for (indices, values), (want_indices, want_values) in zip(got, want):
        indices = np.asarray(indices)
        assert np.all(np.diff(indices) > 0), "indices must be strictly ascending"
        np.testing.assert_array_equal(indices, want_indices)
        np.testing.assert_allclose(values, want_values, atol=atol, rtol=rtol)


def assert_ranked(results: Sequence[dict], expected: Sequence[float], *, score: str = "score",
                  index: str = "index", top_n: int | None = None, atol: float = SCORE_ATOL) -> None:
    """A ranking against reference scores in document order: each returned (index -> score)
    pair matches the reference score of THAT index, scores descend, no index repeats, and the
    ranking holds every document (or, with `top_n`, the `top_n` best: no document left out
    scores above one returned, beyond the tolerance)."""
    expected = np.asarray(expected, dtype=np.float64)
    indices = [r[index] for r in results]
    scores = [r[score] for r in results]
    assert len(set(indices)) == len(indices), f"repeated indices: {indices}"
    assert len(indices) == min(top_n or len(expected), len(expected)), indices
    np.testing.assert_allclose(scores, expected[indices], atol=atol)
    assert all(a >= b for a, b in itertools.pairwise(scores)), f"scores not descending: {scores}"
    left_out = [i for i in range(len(expected)) if i not in set(indices)]
    if left_out:
        assert expected[left_out].max() <= expected[indices].min() + atol, (indices, expected)
