"""Tasks as declarations: what each kind of model is for, in one place.

A model's task (read off its folder by spec.py, or set in the catalog) decides the outputs
it can give, the checkpoint head its architecture file maps, the transformers class the
padded fallback loads it with, and how its raw outputs become answers. The device runs one
of a few heads, named by a typed `Work` value that also keys the scheduler's queues.

Adding a task: one `Task` below, its head in `served.py` if it needs a new one, and its
finishing here. Torch-free: the gateway and the spec reader import this module."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


class Head(enum.Enum):
    """What a forward pass computes after the encoder."""

    POOLED = "pooled"  # one vector per sequence: pooling, then the Dense stack (embeddings)
    SPARSE = "sparse"  # SPLADE: max over tokens of log(1 + relu(MLM logits))
    SEQUENCE_LOGITS = "sequence_logits"  # classifier logits per sequence (cross-encoders, classifiers)
    TOKEN_LOGITS = "token_logits"  # classifier logits per token (entity taggers)
    TOKEN_VECTORS = "token_vectors"  # ColBERT: projected, normalised vector per kept token
    SPANS = "spans"  # GLiNER: a score per (span of words, label in the prompt)
    PROMPTED_LABELS = "prompted_labels"  # GLiClass: a logit per label in the prompt


@dataclass(frozen=True)
class Work:
    """What the device runs for one queue of one model: a head, and the pooling a request
    chose when it overrides the model's own (Weaviate's pooling_strategy)."""

    head: Head
    pooling: str | None = None


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


@dataclass(frozen=True)
class Task:
    name: str  # ModelSpec.task
    capabilities: tuple[str, ...]  # what requests may ask of it: dense, sparse, multivector, score, classify, extract
    checkpoint_head: str | None  # the head an architecture file maps (engine/models): None = the encoder alone
    fallback_class: str | None  # the transformers auto class of the padded fallback; None: native only
    # score: the relevance logit of each (query, document) pair from its sequence logits
    pair_logit: Callable[[np.ndarray], np.ndarray] | None = None
    # score: the model formats each pair itself (a chat template in its architecture file)
    prompted_pairs: bool = False
    # the labels come with each request (zero-shot classifiers, GLiNER), not from the model's config
    labels_at_request: bool = False


TASKS = {task.name: task for task in (
    Task("embed", ("dense",), None, "AutoModel"),
    Task("sparse", ("sparse",), "masked_lm", "AutoModelForMaskedLM"),
    Task("colbert", ("multivector", "score"), None, "AutoModel"),
    Task("score", ("score",), "sequence_classification", "AutoModelForSequenceClassification",
         pair_logit=lambda logits: logits[:, 0]),
    # Qwen3-Reranker style: P(yes) against P(no) for the next token, over the model's own prompt
    Task("causal_rerank", ("score",), "causal_lm", None,
         pair_logit=lambda logits: logits[:, 1] - logits[:, 0], prompted_pairs=True),
    Task("classify", ("classify",), "sequence_classification", "AutoModelForSequenceClassification"),
    # NLI cross-encoders as zero-shot classifiers: each (text, hypothesis about a label) pair is scored
    Task("zero_shot", ("classify",), "sequence_classification", "AutoModelForSequenceClassification",
         labels_at_request=True),
    Task("extract", ("extract",), "token_classification", "AutoModelForTokenClassification"),
    # GLiNER: the labels go in a prompt before the words; spans of words are scored against them (engine.gliner)
    Task("gliner", ("extract",), None, None, labels_at_request=True),
    # GLiClass: the labels go in a prompt beside the text; the text's vector is scored against each (engine.gliclass)
    Task("gliclass", ("classify",), None, None, labels_at_request=True),
)}


# ---- finishing: raw device outputs -> answers ----------------------------------------
def finish_dense(vectors: np.ndarray, dimensions: int | None, normalize: bool) -> np.ndarray:
    """Matryoshka truncation, then (re)normalisation so truncated vectors stay unit length."""
    if dimensions:
        vectors = vectors[:, :dimensions]
    if normalize:
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors = vectors / np.maximum(norms, 1e-12)
    return np.ascontiguousarray(vectors, dtype=np.float32)


def largest_weights(indices: np.ndarray, values: np.ndarray, k: int | None) -> tuple[np.ndarray, np.ndarray]:
    """A sparse vector's k largest weights, still in ascending index order."""
    if k is None or len(values) <= k:
        return indices, values
    keep = np.sort(np.argpartition(-values, k - 1)[:k])
    return indices[keep], values[keep]


def pair_scores(task: Task, logits: np.ndarray, raw_scores: bool) -> list[float]:
    """Relevance per pair: the task's logit, through a sigmoid unless `raw_scores`."""
    raw = task.pair_logit(logits)
    return [float(x) for x in (raw if raw_scores else sigmoid(raw))]


def label_probabilities(logits: np.ndarray, multi_label: bool) -> np.ndarray:
    """Softmax over labels, or a sigmoid per label for multi-label classifiers."""
    return (sigmoid(logits) if multi_label else softmax(logits)).astype(np.float32)


DEFAULT_HYPOTHESIS = "This example is {}."


def entailment_index(labels: tuple[str, ...]) -> int:
    """The NLI label that means "entailment" (-1, the last, when none says so), as
    transformers' zero-shot-classification pipeline finds it."""
    return next((i for i, label in enumerate(labels) if label.lower().startswith("entail")), -1)


def zero_shot_probabilities(logits: np.ndarray, nli_labels: tuple[str, ...], multi_label: bool) -> np.ndarray:
    """[texts, candidate labels, NLI logits] -> [texts, candidate labels], as the pipeline
    does it: one label, or `multi_label`: per label, softmax of contradiction vs entailment;
    otherwise a softmax of the entailment logits across the candidate labels."""
    entailment = entailment_index(nli_labels)
    if multi_label or logits.shape[1] == 1:
        contradiction = -1 if entailment == 0 else 0
        pair = logits[..., [contradiction, entailment]]
        return softmax(pair)[..., 1].astype(np.float32)
    return softmax(logits[..., entailment]).astype(np.float32)
