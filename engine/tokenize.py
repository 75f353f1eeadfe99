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


class TextTokenizer:
    def __init__(self, folder: Path, max_length: int):
        self.max_length = max_length
        self._tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        # The MiniLM package ships tokenizer.json with fixed padding to 128 on: never pad.
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(max_length)

    @property
    def vocab_size(self) -> int:
        return self._tokenizer.get_vocab_size()

    def token_id(self, token: str) -> int | None:
        return self._tokenizer.token_to_id(token)

    def encode(self, texts: list[str], truncate: bool = True) -> list[Tokenized]:
        encodings = self._tokenizer.encode_batch(texts)
        if not truncate:
            for position, encoding in enumerate(encodings):
                if encoding.overflowing:
                    raise InputTooLong(
                        f"input {position} is longer than the model's maximum of {self.max_length} tokens "
                        "and truncate is false"
                    )
        return [Tokenized(e.ids, e.type_ids) for e in encodings]
