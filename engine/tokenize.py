"""Tokenisation with the model's own tokenizer.json, with its saved padding and truncation
switched off: the engine packs sequences unpadded and truncates to the spec's max length."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer

from .errors import InputTooLong


@dataclass(frozen=True, slots=True)
class Tokenized:
    ids: list[int]
    type_ids: list[int]
    offsets: list[tuple[int, int] | None] | None = None  # character span per token, None for special tokens
    attend: int | None = None  # tokens from this position on are never attended to (ColBERT expansion)


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

    @property
    def vocab_size(self) -> int:
        return self._tokenizer.get_vocab_size()

    def token_id(self, token: str) -> int | None:
        return self._tokenizer.token_to_id(token)

    def id_to_token(self, token_id: int) -> str | None:
        return self._tokenizer.id_to_token(token_id)

    def encode_plain(self, text: str) -> list[int]:
        """Token ids without special tokens or truncation (prompt templates)."""
        return self._tokenizer.encode(text, add_special_tokens=False).ids

    def tokens(self, text: str, add_special_tokens: bool = True) -> list[Token]:
        """Every token of `text` with its id, text and character span (None for special
        tokens), untruncated: what a tokenize endpoint shows."""
        encoding = self._tokenizer.encode(text, add_special_tokens=add_special_tokens)
        return [Token(i, piece if special else text[start:stop], bool(special), None if special else (start, stop))
                for i, piece, (start, stop), special in zip(encoding.ids, encoding.tokens, encoding.offsets,
                                                             encoding.special_tokens_mask)]

    def encode(self, texts: list, truncate: bool = True, offsets: bool = False) -> list[Tokenized]:
        """`texts` are strings, or (first, second) pairs for cross-encoders."""
        encodings = self._tokenizer.encode_batch(texts)
        if not truncate:
            refuse_overflow(encodings, self.max_length)
        return [Tokenized(e.ids, e.type_ids, _spans(e) if offsets else None) for e in encodings]


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
