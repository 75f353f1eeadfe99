"""The length guard cuts texts far longer than a model reads before they are tokenised, and
must not change what any normal input yields: for random texts (hypothesis), truncating the
guarded text gives exactly the tokens of truncating the whole text, and a text too long for
`truncate=false` is still known to be too long. Checked on the three tokenizer families the
engine serves: WordPiece (BERT, the real MiniLM tokenizer), byte-level BPE (RoBERTa, Qwen,
ModernBERT) and Unigram with Metaspace (XLM-R), the latter two trained here with the
`tokenizers` library itself."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from engine.tokenize import LengthGuard, load_tokenizer, plain_copy
from tests.texts import varied_texts

MAX_TOKENS = 24  # small, so the guard's windows are small and every example exercises a cut


def _byte_level_bpe() -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.train_from_iterator(varied_texts(300, seed=3), trainers.BpeTrainer(
        vocab_size=600, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    return tokenizer


def _unigram_metaspace() -> Tokenizer:
    tokenizer = Tokenizer(models.Unigram())
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    tokenizer.train_from_iterator(varied_texts(300, seed=4), trainers.UnigramTrainer(
        vocab_size=400, unk_token="<unk>", special_tokens=["<unk>"], show_progress=False))
    return tokenizer


@pytest.fixture(scope="module", params=["wordpiece", "byte-level-bpe", "unigram-metaspace"])
def tokenizer(request, minilm_spec):
    built = {"wordpiece": lambda: load_tokenizer(minilm_spec.path), "byte-level-bpe": _byte_level_bpe,
             "unigram-metaspace": _unigram_metaspace}[request.param]()
    built.no_padding()
    built.enable_truncation(MAX_TOKENS)
    return built


WORD = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Zs", "Zl", "Zp", "Cc")),
               min_size=1, max_size=30)
SPACE = st.sampled_from([" ", "  ", "\n", "\t", " \n ", "   "])
TEXT = st.lists(st.tuples(WORD, SPACE), min_size=1, max_size=400).map(lambda parts: "".join(w + s for w, s in parts))


@settings(max_examples=150, deadline=None)
@given(text=TEXT)
def test_the_guarded_text_truncates_to_the_same_tokens(tokenizer, text):
    guard = LengthGuard(plain_copy(tokenizer), MAX_TOKENS)
    guarded = guard(text)
    assert text.startswith(guarded)
    whole, cut = tokenizer.encode(text), tokenizer.encode(guarded)
    assert cut.ids == whole.ids and cut.offsets == whole.offsets
    assert bool(cut.overflowing) == bool(whole.overflowing)  # truncate=false refuses exactly the same texts


def test_a_long_text_is_cut_to_a_small_prefix(tokenizer):
    text = " ".join(varied_texts(2000, seed=9))
    guarded = LengthGuard(plain_copy(tokenizer), MAX_TOKENS)(text)
    assert len(guarded) < 2000 < len(text)
    assert tokenizer.encode(guarded).ids == tokenizer.encode(text).ids


def test_pairs_cut_side_by_side_truncate_like_the_whole_pair(tokenizer):
    """Cross-encoders truncate (query, document) pairs longest-first: a side cut to more than
    the limit on its own leaves the pair's truncation unchanged. (Both sides stay moderate:
    the tokenizers library enumerates overflowing pieces of a pair, which for two long sides
    grows with the product of their lengths; cutting both first is what keeps that small.)"""
    guard = LengthGuard(plain_copy(tokenizer), MAX_TOKENS)
    for first, second in [("short query", " ".join(varied_texts(200, seed=1))),
                          (" ".join(varied_texts(4, seed=2)), " ".join(varied_texts(4, seed=3)))]:
        whole = tokenizer.encode(first, second)
        cut = tokenizer.encode(guard(first), guard(second))
        assert cut.ids == whole.ids and cut.type_ids == whole.type_ids
