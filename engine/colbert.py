"""ColBERT in PyLate's format: how queries and documents are tokenised, which token
vectors are kept, and MaxSim scoring.

- A prefix token ("[Q] " / "[D] ", added tokens in tokenizer.json) goes right after [CLS].
- Queries are padded with [MASK] up to `query_length` (query expansion); unless
  `attend_to_expansion_tokens`, no token attends to those [MASK]s, but every query token,
  [MASK]s included, yields a vector.
- Documents are truncated to `document_length`; vectors of punctuation tokens (the
  skiplist) are dropped, though the tokens are attended to.
- Every kept vector is L2-normalised after the linear projection."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .spec import ColbertSettings
from .tokenize import LengthGuard, Tokenized, load_tokenizer, plain_copy, refuse_overflow


class ColbertTokenizer:
    def __init__(self, folder: Path, settings: ColbertSettings, max_length: int):
        self.settings = settings
        self._query = load_tokenizer(folder)
        self._document = load_tokenizer(folder)
        self.query_prefix_id = self._prefix_id(settings.query_prefix)
        self.document_prefix_id = self._prefix_id(settings.document_prefix)
        query_room = min(settings.query_length, max_length) - (self.query_prefix_id is not None)
        document_room = min(settings.document_length, max_length) - (self.document_prefix_id is not None)
        self.query_room, self.document_room = query_room, document_room
        self._document.no_padding()
        self._document.enable_truncation(document_room)
        self._query.enable_truncation(query_room)
        if settings.do_query_expansion:
            mask = self._query.token_to_id("[MASK]") or self._query.token_to_id("<mask>")
            if mask is None:
                raise ValueError("query expansion needs a [MASK] / <mask> token in the tokenizer")
            self._query.enable_padding(length=query_room, pad_id=mask, pad_token=self._query.id_to_token(mask))
        else:
            self._query.no_padding()
        plain = plain_copy(self._document)
        self._cut_query, self._cut_document = LengthGuard(plain, query_room), LengthGuard(plain, document_room)
        self.skiplist_ids = {i for i in (self._document.token_to_id(w) for w in settings.skiplist_words) if i is not None}

    def _prefix_id(self, prefix: str) -> int | None:
        if not prefix:
            return None
        token_id = self._query.token_to_id(prefix)
        if token_id is None:
            raise ValueError(f"the ColBERT prefix token {prefix!r} is not in tokenizer.json")
        return token_id

    def encode(self, texts: list[str], is_query: bool, truncate: bool = True) -> list[Tokenized]:
        tokenizer = self._query if is_query else self._document
        cut = self._cut_query if is_query else self._cut_document
        encodings = tokenizer.encode_batch([cut(text) for text in texts])
        if not truncate:
            refuse_overflow(encodings, self.query_room if is_query else self.document_room)
        prefix = self.query_prefix_id if is_query else self.document_prefix_id
        result = []
        for encoding in encodings:
            ids, type_ids = list(encoding.ids), list(encoding.type_ids)
            attend = None
            if is_query and self.settings.do_query_expansion and not self.settings.attend_to_expansion_tokens:
                attend = sum(encoding.attention_mask)
            if prefix is not None:
                ids.insert(1, prefix)
                type_ids.insert(1, 0)
                attend = attend + 1 if attend is not None else None
            # queries keep every vector, [MASK]s included; documents drop the skiplist's
            keep = None if is_query else [token not in self.skiplist_ids for token in ids]
            result.append(Tokenized(ids, type_ids, attend=attend, keep=keep))
        return result


def maxsim(query: np.ndarray, documents: list[np.ndarray]) -> list[float]:
    """ColBERT late interaction: for each query vector its best document vector, summed."""
    return [float((query @ document.T).max(axis=1).sum()) if len(document) else 0.0 for document in documents]
