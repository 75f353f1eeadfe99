"""Tokenisation with the model's own tokenizer.json, with its saved padding and truncation
switched off: the engine packs sequences unpadded and truncates to the spec's max length."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from .errors import InputTooLarge, InputTooLong, InvalidInput

# /tokenize shows every token, untruncated, of inputs up to this many characters each.
TOKENIZE_MAX_CHARS = 100_000


@dataclass(frozen=True, slots=True)
class Tokenized:
    ids: list[int]
    type_ids: list[int]
    offsets: list[tuple[int, int] | None] | None = None  # character span per token, None for special tokens
    attend: int | None = None  # tokens from this position on are never attended to (ColBERT expansion)
    keep: list[bool] | None = None  # which token vectors a multivector keeps (ColBERT's skiplist); None: all
    extra: Any = None  # what a task's head and finishing read per item (GLiNER: its gliner.Window)


@dataclass(frozen=True, slots=True)
class Token:
    id: int
    text: str
    special: bool
    span: tuple[int, int] | None  # character offsets into the input; None for special tokens


class TextTokenizer:
    def __init__(self, folder: Path, max_length: int):
        self.max_length = max_length
        self._tokenizer = load_tokenizer(folder)
        # The MiniLM package ships tokenizer.json with fixed padding to 128 on: never pad.
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(max_length)
        self._plain = plain_copy(self._tokenizer)
        # pairs whose second text must stay whole (zero-shot hypotheses): only the first is cut
        self._first_only = plain_copy(self._tokenizer)
        self._first_only.enable_truncation(max_length, strategy="only_first")
        self.cut = LengthGuard(self._plain, max_length)

    def id_to_token(self, token_id: int) -> str | None:
        return self._tokenizer.id_to_token(token_id)

    def encode_plain(self, text: str) -> list[int]:
        """Token ids without special tokens or truncation (prompt templates)."""
        return self._plain.encode(text, add_special_tokens=False).ids

    def tokens(self, text: str, add_special_tokens: bool = True) -> list[Token]:
        """Every token of `text` with its id, text and character span (None for special
        tokens), untruncated: what a tokenize endpoint shows."""
        if len(text) > TOKENIZE_MAX_CHARS:
            raise InputTooLarge(f"an input of {len(text)} characters is too long to list its tokens; "
                                f"the limit is {TOKENIZE_MAX_CHARS}")
        encoding = self._plain.encode(text, add_special_tokens=add_special_tokens)
        return [Token(i, piece if special else text[start:stop], bool(special), None if special else (start, stop))
                for i, piece, (start, stop), special in zip(encoding.ids, encoding.tokens, encoding.offsets,
                                                             encoding.special_tokens_mask)]

    def encode(self, texts: list, truncate: bool = True, offsets: bool = False,
               first_only: bool = False) -> list[Tokenized]:
        """`texts` are strings, or (first, second) pairs for cross-encoders; with `first_only`
        a pair's truncation cuts the first text only (the pipeline's ONLY_FIRST)."""
        texts = [self.cut(t) if isinstance(t, str) else tuple(self.cut(part) for part in t) for t in texts]
        tokenizer = self._first_only if first_only else self._tokenizer
        try:
            encodings = tokenizer.encode_batch(texts)
        except Exception as error:  # only_first: the second text alone is longer than the model reads
            raise InvalidInput(f"an input is too long for the model even with its first text cut: {error}") from None
        if not truncate:
            refuse_overflow(encodings, self.max_length)
        return [Tokenized(e.ids, e.type_ids, _spans(e) if offsets else None) for e in encodings]


class LengthGuard:
    """Cuts a text far longer than a model can read before it is tokenised whole.

    Tokenising is linear in characters, so a 9 MB input would hold a tokenizer thread for
    seconds to keep 512 tokens. The guard keeps a prefix that ends at whitespace and still
    holds more than `tokens` tokens (plus a margin): the tokens of the words before the cut
    are the tokens the whole text starts with, so truncating the prefix gives the same
    result as truncating the whole text, and a text that is too long is still known to be.
    Starting from 8 characters per token, the window grows 4x until the prefix is long
    enough or is the whole text. Only a run of more than half the window without
    whitespace is cut mid-word."""

    CHARS_PER_TOKEN = 8
    MARGIN = 8  # tokens beyond the limit, so the word at the cut cannot reach the kept tokens

    def __init__(self, plain: Tokenizer, tokens: int):
        self.plain = plain
        self.tokens = tokens

    def __call__(self, text: str) -> str:
        window = self.CHARS_PER_TOKEN * (self.tokens + self.MARGIN)
        while len(text) > window:
            prefix = text[:_word_boundary(text, window)]
            if len(self.plain.encode(prefix, add_special_tokens=False).ids) > self.tokens + self.MARGIN:
                return prefix
            window *= 4
        return text


def _word_boundary(text: str, limit: int) -> int:
    """The last whitespace position at or before `limit`, if one lies in its second half."""
    for position in range(limit, limit // 2, -1):
        if text[position].isspace():
            return position
    return limit


def plain_copy(tokenizer: Tokenizer) -> Tokenizer:
    """The same tokenizer without truncation or padding (counting, listing tokens)."""
    plain = Tokenizer.from_str(tokenizer.to_str())
    plain.no_truncation()
    plain.no_padding()
    return plain


def _spans(encoding) -> list[tuple[int, int] | None]:
    return [None if special else span for span, special in zip(encoding.offsets, encoding.special_tokens_mask)]


def load_tokenizer(folder: Path) -> Tokenizer:
    path = folder / "tokenizer.json"
    if not path.exists():
        raise FileNotFoundError(f"no tokenizer.json in {folder} (only fast tokenizers are supported)")
    return Tokenizer.from_file(str(path))


def refuse_overflow(encodings, max_length: int) -> None:
    for position, encoding in enumerate(encodings):
        if encoding.overflowing:
            raise InputTooLong(
                f"input {position} is longer than the model's maximum of {max_length} tokens and truncate is false"
            )
