"""Entity spans from token-classification logits: BIO / IOB2 tags merged the way the
transformers token-classification pipeline does with aggregation "simple"."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .tasks import softmax


@dataclass(frozen=True)
class Entity:
    label: str
    text: str
    start: int  # character offsets into the original input
    end: int
    score: float


def _split_tag(label: str) -> tuple[str, str]:
    if label.startswith(("B-", "I-")):
        return label[0], label[2:]
    return "I", label  # a tag without a prefix continues a group of the same tag


def entities(text: str, logits: np.ndarray, spans: list[tuple[int, int] | None], labels: tuple[str, ...]) -> list[Entity]:
    """One input's entities. Word pieces of one entity merge into one span; its score is
    the mean of their scores; "O" groups are dropped."""
    probabilities = softmax(logits)
    groups: list[list[tuple[str, float, tuple[int, int]]]] = []
    for probs, span in zip(probabilities, spans):
        if span is None:  # [CLS], [SEP] and friends
            continue
        best = int(probs.argmax())
        token = (labels[best], float(probs[best]), span)
        if groups:
            prefix, tag = _split_tag(token[0])
            _, last_tag = _split_tag(groups[-1][-1][0])
            if tag == last_tag and prefix != "B":
                groups[-1].append(token)
                continue
        groups.append([token])
    result = []
    for group in groups:
        tag = _split_tag(group[0][0])[1]
        if tag == "O":
            continue
        start, end = group[0][2][0], group[-1][2][1]
        result.append(Entity(tag, text[start:end], start, end, float(np.mean([score for _, score, _ in group]))))
    return result
