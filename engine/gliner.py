"""GLiNER (the `gliner` package's uni-encoder span model) as the package runs it, on packed
batches: its settings, the label prompt and word windows, tokenisation with word ids, and the
decoding of span scores into entities. The span head itself (word pooling, LSTM, span and
label projections) is in heads.py with the other heads; this module stays torch-free so that
spec.py can read a folder's settings.

- Words: the package's whitespace splitter (`\\w+(?:[-_]\\w+)*|\\S`), with character spans.
- Prompt: `<<ENT>> label <<ENT>> label ... <<SEP>>` before the words, tokenised with the
  words as pre-split input (`is_split_into_words`); each label's score vector is read at its
  `<<ENT>>` token (or the token after it, with `embed_ent_token` off).
- Words are pooled from their subtokens (`subtoken_pooling`: first, last, mean, max), counted
  the way the package counts them (a word that makes no token shifts the ones after it).
- Every span of up to `max_width` words gets a sigmoid score per label; decoding keeps those
  above `threshold` and removes clashes greedily, best first: `flat_ner` drops any overlap,
  nested mode only partial overlaps; `multi_label` lets one span carry several labels.

Long texts differ from the package on purpose. The package keeps the first `max_len` words
(384 by default) and lets the tokenizer cut the rest: whatever lies beyond is never seen.
Here a text is split into consecutive windows of whole words, each at most `max_len` words and
small enough that the prompt and its words fit the backbone's maximum length; each window is
scored with the full prompt and its entities are put back at their offsets in the text. So
nothing is cut, but context does not cross a window boundary and an entity that straddles
one cannot be found. A text that fits in one window gets exactly the package's answer."""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .entities import Entity
from .errors import InvalidInput
from .tokenize import Tokenized, load_tokenizer, plain_copy

CONFIG_FILE = "gliner_config.json"
DEFAULT_THRESHOLD = 0.5
WORD = re.compile(r"\w+(?:[-_]\w+)*|\S")  # the package's "whitespace" words splitter
POOLINGS = ("first", "last", "mean", "max")


@dataclass(frozen=True)
class GlinerSettings:
    """What a uni-encoder span GLiNER needs from its gliner_config.json (the package's
    defaults where a key is absent)."""

    max_width: int  # widest span, in words
    max_words: int  # the package's max_len: words per window
    hidden_size: int
    subtoken_pooling: str
    ent_token: str
    sep_token: str
    class_token_index: int  # the token id of `ent_token`
    embed_ent_token: bool  # read a label at its marker (else at the token after it)
    rnn_layers: int  # bidirectional LSTM layers over the words (0: none)


def read_settings(config: dict[str, Any]) -> GlinerSettings:
    """GLiNER settings from gliner_config.json; ValueError names any variant this engine does
    not run (only the uni-encoder span model with markerV0 spans is implemented)."""
    if config.get("model_type") == "gliner_streaming_span":
        raise ValueError("streaming GLiNER models are not supported; only uni-encoder span models are")
    refused = {"labels_encoder": "bi-encoder GLiNER models (labels_encoder) are not supported",
               "labels_decoder": "GLiNER models with a label decoder are not supported",
               "relations_layer": "GLiNER relation-extraction models are not supported",
               "post_fusion_schema": "GLiNER post-fusion layers are not supported",
               "fuse_layers": "GLiNER models that fuse encoder layers are not supported",
               "span_encoder_config": "GLiNER span context encoders are not supported",
               "precomputed_prompts_mode": "GLiNER models with precomputed prompts are not supported"}
    for key, reason in refused.items():
        if config.get(key):
            raise ValueError(f"{reason}; only uni-encoder span models are")
    span_mode = config.get("span_mode", "markerV0")
    if span_mode != "markerV0":
        raise ValueError(f"GLiNER span_mode {span_mode!r} is not supported; only 'markerV0' (the package's default)")
    splitter = config.get("words_splitter_type", "whitespace")
    if splitter != "whitespace":
        raise ValueError(f"GLiNER words_splitter_type {splitter!r} is not supported; only 'whitespace'")
    pooling = config.get("subtoken_pooling", "first")
    if pooling not in POOLINGS:
        raise ValueError(f"unknown GLiNER subtoken_pooling {pooling!r}; expected one of {POOLINGS}")
    if config.get("class_token_index", -1) < 0:
        raise ValueError("gliner_config.json has no class_token_index (a model saved by the gliner package has one)")
    return GlinerSettings(max_width=config.get("max_width", 12), max_words=config.get("max_len", 384),
                          hidden_size=config.get("hidden_size", 512), subtoken_pooling=pooling,
                          ent_token=config.get("ent_token", "<<ENT>>"), sep_token=config.get("sep_token", "<<SEP>>"),
                          class_token_index=config["class_token_index"],
                          embed_ent_token=config.get("embed_ent_token", True),
                          rnn_layers=config.get("num_rnn_layers", 1))


@dataclass(frozen=True, slots=True)
class Window:
    """One window of a text's words after the label prompt (a `Tokenized.extra`): what the
    span head reads and what decoding needs to put entities back into the text."""

    text: int  # which input text
    markers: list[int]  # token position of each label's score vector
    token_positions: list[int]  # the subtokens pooled into words ...
    token_words: list[int]  # ... and the word (in this window) each one belongs to
    starts: list[int]  # character span of each word in the text
    ends: list[int]

    @property
    def words(self) -> int:
        return len(self.starts)


class GlinerTokenizer:
    """Texts and labels -> windows of words after the label prompt (see the module doc)."""

    def __init__(self, folder: Path, settings: GlinerSettings, max_length: int):
        self.settings = settings
        self.max_length = max_length
        self._tokenizer = load_tokenizer(folder)
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(max_length)  # only ever cuts a single word too long for a window
        self._plain = plain_copy(self._tokenizer)
        self._specials = self._tokenizer.num_special_tokens_to_add(False)

    def encode(self, texts: list[str], labels: list[str]) -> list[Tokenized]:
        """Every window of every text, in text order; a text without words has none."""
        settings = self.settings
        for label in labels:
            if settings.ent_token in label or settings.sep_token in label:
                raise InvalidInput(f"labels may not contain {settings.ent_token!r} or {settings.sep_token!r}")
        prompt = [word for label in labels for word in (settings.ent_token, label)] + [settings.sep_token]
        room = self.max_length - self._specials - len(self._words_tokens(prompt))
        if room < 1:
            raise InvalidInput(f"these {len(labels)} labels take the model's whole length of {self.max_length} "
                               f"tokens; send fewer or shorter labels")
        items = []
        for index, text in enumerate(texts):
            words = [(m.group(), m.start(), m.end()) for m in WORD.finditer(text)]
            for first, stop in self._windows([word for word, _, _ in words], room):
                window = words[first:stop]
                encoding = self._tokenizer.encode(prompt + [word for word, _, _ in window], is_pretokenized=True)
                positions, owners = _pooled_tokens(encoding.word_ids, len(prompt), settings.subtoken_pooling)
                markers = [p + (not settings.embed_ent_token) for p, token in enumerate(encoding.ids)
                           if token == settings.class_token_index]
                extra = Window(index, markers, positions, owners, [s for _, s, _ in window], [e for _, _, e in window])
                items.append(Tokenized(encoding.ids, encoding.type_ids, extra=extra))
        return items

    def _words_tokens(self, words: list[str]) -> list[int | None]:
        return self._plain.encode(words, is_pretokenized=True, add_special_tokens=False).word_ids

    def _windows(self, words: list[str], room: int) -> list[tuple[int, int]]:
        """Consecutive (first, stop) word ranges of at most `max_words` words and `room` tokens."""
        if not words:
            return []
        counts = np.bincount([w for w in self._words_tokens(words) if w is not None], minlength=len(words))
        windows, first, used = [], 0, 0
        for position, count in enumerate(counts.tolist()):
            if position > first and (used + count > room or position - first == self.settings.max_words):
                windows.append((first, position))
                first, used = position, 0
            used += count
        return windows + [(first, len(words))]


# checkpoint names (the package's state dict) -> the backbone's own names / SpanHead's (heads.py)
BACKBONE_PREFIX = "token_rep_layer.bert_layer.model."
HEAD_NAMES = {"token_rep_layer.projection.": "projection.", "rnn.lstm.": "lstm.",
              "span_rep_layer.span_rep_layer.project_start.0.": "start.up.",
              "span_rep_layer.span_rep_layer.project_start.3.": "start.down.",
              "span_rep_layer.span_rep_layer.project_end.0.": "end.up.",
              "span_rep_layer.span_rep_layer.project_end.3.": "end.down.",
              "span_rep_layer.span_rep_layer.out_project.0.": "span.up.",
              "span_rep_layer.span_rep_layer.out_project.3.": "span.down.",
              "prompt_rep_layer.0.": "label.up.", "prompt_rep_layer.3.": "label.down."}


def _pooled_tokens(word_ids: list[int | None], prompt_words: int, pooling: str) -> tuple[list[int], list[int]]:
    """The package's word mask as (token position, word) pairs: words counted as they are met
    (past the prompt's), each pooled from its first, its last or all of its subtokens."""
    positions, owners = [], []
    seen, previous = 0, None
    for position, word in enumerate(word_ids):
        if word is not None:
            first = word != previous
            seen += first
            last = position + 1 == len(word_ids) or word_ids[position + 1] != word
            chosen = pooling in ("mean", "max") or (first if pooling == "first" else last)
            if seen > prompt_words and chosen:
                positions.append(position)
                owners.append(seen - prompt_words - 1)
        previous = word
    return positions, owners


def entities(texts: list[str], items: list[Tokenized], scores: list[np.ndarray], labels: list[str], threshold: float,
             flat_ner: bool, multi_label: bool) -> list[list[Entity]]:
    """Each text's entities from its windows' [words, max_width, labels] sigmoid scores, in
    text order (windows are in text order and each window's entities by start)."""
    found: list[list[Entity]] = [[] for _ in texts]
    for item, window_scores in zip(items, scores):
        window: Window = item.extra
        text = texts[window.text]
        for start, end, label, score in _decode(window_scores, window.words, threshold, flat_ner, multi_label):
            first, stop = window.starts[start], window.ends[end]
            found[window.text].append(Entity(labels[label], text[first:stop], first, stop, score))
    return found


def _decode(scores: np.ndarray, words: int, threshold: float, flat_ner: bool,
            multi_label: bool) -> list[tuple[int, int, int, float]]:
    """(first word, last word, label, score) of the kept spans, as the package's SpanDecoder
    keeps them: candidates above the threshold in (start, width, label) order, taken best
    first (a stable sort) unless they clash with one already taken, then sorted by start."""
    starts, widths, labels = np.nonzero(scores > threshold)
    inside = starts + widths < words
    starts, widths, labels = starts[inside], widths[inside], labels[inside]
    values = scores[starts, widths, labels]
    taken, by_start = [], defaultdict(list)
    for i in np.argsort(-values, kind="stable").tolist():
        start, end = int(starts[i]), int(starts[i] + widths[i])
        # a taken span that overlaps this one starts at most max_width - 1 words before it
        near = ((first, last) for first in range(max(0, start - scores.shape[1] + 1), end + 1)
                for last in by_start.get(first, ()))
        if any(_clash((start, end), other, flat_ner, multi_label) for other in near):
            continue
        taken.append((start, end, int(labels[i]), float(values[i])))
        by_start[start].append(end)
    return sorted(taken, key=lambda span: span[0])


def _clash(span: tuple[int, int], other: tuple[int, int], flat_ner: bool, multi_label: bool) -> bool:
    """The package's has_overlapping (flat) / has_overlapping_nested test."""
    if span == other:
        return not multi_label
    apart = span[0] > other[1] or other[0] > span[1]
    if flat_ner:
        return not apart
    nested = (span[0] <= other[0] and span[1] >= other[1]) or (other[0] <= span[0] and other[1] >= span[1])
    return not (apart or nested)
