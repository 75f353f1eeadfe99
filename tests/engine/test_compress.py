"""Context compression (engine.compress) against its references.

Token level: the llmlingua package's LLMLingua-2 path itself (tests/llmlingua_reference.py, in
the package's own environment, .llmlingua-venv, made by `make install-dev`), on tiny random
token classifiers built here with a keep/drop head and 100 spare embedding rows, in folders
named as the package's word rules expect: a BERT (WordPiece, "bert-base-multilingual-cased")
and an XLM-R (a SentencePiece-style Unigram tokenizer trained here, "xlm-roberta-large"). The
compressed text must be the package's, character for character, with its cl100k_base token
counts, at rates 0.33 to 1, with and without forced tokens, for short texts, texts of many
windows (with and without sentence ends to cut at) and several contexts at once.

Query-aware pruning: a tiny cross-encoder scores each sentence as sentence-transformers'
CrossEncoder does (within 1e-5), and the same sentences stay."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from engine import (DeadlineExceeded, InputTooLarge, InvalidInput, ModelNotFound, TooManyInputs, UnsupportedOutput,
                    spec_from_folder)
from engine.compress import split_sentences
from tests.engine.heads_helpers import with_engine
from tests.texts import UNICODE, varied_texts
from tests.tiny import copy_tokenizer

ROOT = Path(__file__).resolve().parents[2]
LLMLINGUA_PYTHON = Path(os.environ.get("SHOAL_LLMLINGUA_PYTHON", ROOT / ".llmlingua-venv" / "bin" / "python"))
MISSING = (f"THE LLMLINGUA PARITY TESTS DID NOT RUN: no llmlingua environment at {LLMLINGUA_PYTHON} "
           f"(make install-dev creates it with scripts/install-llmlingua.sh)")
if not LLMLINGUA_PYTHON.exists() and os.environ.get("CI"):
    raise RuntimeError(MISSING)  # CI installs it: its absence there is a broken install, not a skip
needs_llmlingua = pytest.mark.skipif(not LLMLINGUA_PYTHON.exists(), reason=MISSING)

SPARE_ROWS = 100  # llmlingua adds [NEW0]..[NEW99] and resizes the embeddings to fit them
SHORT = ("The quick brown fox, who was 3.5 years old, jumped over the lazy dog's tail!\nThen it ran away. "
         "Über café naïve résumé 東京 😀 end.")
MARKS = ("Is it (really) state-of-the-art? Mail e-mail@example.com, #tags ##double, don't stop... "
         "[a] {b} <c> $3.5m 50% off!!\n\nNew paragraph: x=1; y:=2 ~ `code` \"quoted\" 'single'.")
LONG = " ".join(varied_texts(120, seed=3))  # about 20 windows of 512 tokens, with sentence ends here and there
NO_ENDS = " ".join(varied_texts(60, seed=5)).replace(".", "").replace("\n", " ")  # windows cut mid-sentence
CONTEXTS = [SHORT, MARKS, LONG, NO_ENDS, [SHORT, MARKS, NO_ENDS]]
RATES = [0.33, 0.5, 0.7, 1.0]
FORCED = [[], ["\n", "?", "fox,", "the"]]
CASES = [(context, rate, forced) for context in CONTEXTS for rate in RATES for forced in FORCED]


# ---- the tiny keep/drop token classifiers ------------------------------------------------------
def _spread(model, seed: int):
    """Random init leaves LayerNorms at one and biases at zero, and every keep probability
    near 0.5; shift those and scale the head so that probabilities spread and no two words
    lie within float noise of each other at a percentile."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "LayerNorm" in name or name.endswith("bias"):
                parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.1)
        model.classifier.weight.mul_(30)
    return model.eval()


def keep_drop_bert(folder: Path, seed: int = 0, spare_rows: int = SPARE_ROWS) -> Path:
    """A BERT token classifier with 2 labels (drop, keep) over MiniLM's WordPiece tokenizer."""
    from transformers import BertConfig, BertForTokenClassification

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=30522 + spare_rows, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=512, num_labels=2,
                        architectures=["BertForTokenClassification"])
    _spread(BertForTokenClassification(config), seed).save_pretrained(folder)
    copy_tokenizer(folder)
    return folder


def sentencepiece_tokenizer(folder: Path) -> int:
    """A Unigram tokenizer with XLM-R's special tokens, trained on the test texts, in the shape
    transformers 5 gives XLMRobertaTokenizer (whitespace split, then "▁" word starts), so that
    its tokenizer.json reads as transformers reads it. Returns its vocabulary size."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.Unigram())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(),
                                                       pre_tokenizers.Metaspace("▁", prepend_scheme="always")])
    tokenizer.decoder = decoders.Metaspace("▁", prepend_scheme="always")
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    corpus = varied_texts(400, seed=1) + UNICODE * 3 + [SHORT, MARKS] * 5
    tokenizer.train_from_iterator(corpus, trainers.UnigramTrainer(vocab_size=1000, special_tokens=specials,
                                                                  unk_token="<unk>"))
    tokenizer.post_processor = processors.TemplateProcessing(single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
                                                             special_tokens=[("<s>", 0), ("</s>", 2)])
    tokenizer.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "XLMRobertaTokenizer", "bos_token": "<s>", "eos_token": "</s>", "sep_token": "</s>",
        "cls_token": "<s>", "unk_token": "<unk>", "pad_token": "<pad>", "mask_token": "<mask>",
        "model_max_length": 512}))
    return tokenizer.get_vocab_size()


def keep_drop_xlmr(folder: Path, seed: int = 1) -> Path:
    from transformers import XLMRobertaConfig, XLMRobertaForTokenClassification

    folder.mkdir(parents=True, exist_ok=True)
    vocabulary = sentencepiece_tokenizer(folder)
    torch.manual_seed(seed)
    config = XLMRobertaConfig(vocab_size=vocabulary + SPARE_ROWS, hidden_size=32, num_hidden_layers=2,
                              num_attention_heads=4, intermediate_size=64, max_position_embeddings=514,
                              pad_token_id=1, bos_token_id=0, eos_token_id=2, num_labels=2,
                              architectures=["XLMRobertaForTokenClassification"])
    _spread(XLMRobertaForTokenClassification(config), seed).save_pretrained(folder)
    return folder


def llmlingua_answers(models: list[tuple[Path, list]]) -> list[list[dict]]:
    """The package's answers to each model's cases (tests/llmlingua_reference.py)."""
    request = {"models": [{"folder": str(folder), "cases": [{"context": context, "rate": rate, "force_tokens": forced}
                                                             for context, rate, forced in cases]}
                          for folder, cases in models]}
    done = subprocess.run([str(LLMLINGUA_PYTHON), str(ROOT / "tests" / "llmlingua_reference.py")],
                          input=json.dumps(request), capture_output=True, text=True, timeout=900, check=False,
                          cwd=ROOT)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout)["answers"]


@pytest.fixture(scope="module")
def compressors(tmp_path_factory):
    """{family: (folder, the package's answers to CASES)}, both models asked in one run."""
    if not LLMLINGUA_PYTHON.exists():
        pytest.skip(MISSING)
    root = tmp_path_factory.mktemp("llmlingua")
    folders = {"bert": keep_drop_bert(root / "bert-base-multilingual-cased-keep-drop"),
               "xlm-roberta": keep_drop_xlmr(root / "xlm-roberta-large-keep-drop")}
    answers = llmlingua_answers([(folder, CASES) for folder in folders.values()])
    return {family: (folder, answer) for (family, folder), answer in zip(folders.items(), answers)}


async def compress_cases(folder: Path, cases: list, **config) -> list:
    async def run(engine, name):
        return [await engine.compress(name, context if isinstance(context, list) else [context], rate=rate,
                                      force_tokens=forced) for context, rate, forced in cases]
    return await with_engine(folder, run, **config)


@needs_llmlingua
@pytest.mark.parametrize("family", ["bert", "xlm-roberta"])
async def test_compressed_text_is_the_packages(compressors, family):
    folder, answers = compressors[family]
    spec = spec_from_folder("c", folder)
    assert spec.task == "extract" and spec.max_length == 512
    results = await compress_cases(folder, CASES)
    differences = []
    for (context, rate, forced), ours, theirs in zip(CASES, results, answers):
        got = (ours.compressed, [c.compressed for c in ours.contexts], ours.original_tokens, ours.kept_tokens)
        want = (theirs["compressed_prompt"], theirs["compressed_prompt_list"], theirs["origin_tokens"],
                theirs["compressed_tokens"])
        if got != want:
            differences.append((str(context)[:40], rate, forced, got[0][:200], want[0][:200]))
    assert not differences, differences
    # the cases compress: fewer tokens at lower rates, none dropped at rate 1, and input through the model
    short = {rate: r for (context, rate, forced), r in zip(CASES, results) if context == SHORT and not forced}
    assert short[0.33].kept_tokens < short[0.5].kept_tokens < short[0.7].kept_tokens < short[1.0].kept_tokens
    assert short[0.5].input_tokens > 0 and short[1.0].input_tokens == 0  # rate 1 runs no model
    long = next(r for (context, rate, forced), r in zip(CASES, results) if context == LONG and rate == 0.5)
    assert long.input_tokens > 10 * 512 and 0.3 < long.kept_tokens / long.original_tokens < 0.7


@needs_llmlingua
async def test_a_threshold_keeps_words_by_their_probability(compressors):
    """threshold 0 keeps every word (the text rate 1 gives, for text without unknown pieces);
    a higher threshold keeps a subset; threshold 1 keeps the forced words alone."""
    folder, _ = compressors["bert"]
    text = "the quick brown fox jumped over the lazy dog. then it ran away, far away? yes."

    async def run(engine, name):
        async def words(**options):
            return (await engine.compress(name, [text], **options)).compressed

        everything = await words(rate=1.0)
        assert await words(threshold=0.0) == everything
        kept = [await words(threshold=t) for t in (1e-4, 1e-3, 1e-2, 0.1)]  # a random head's keep odds are low
        assert len(set(kept)) > 2
        for looser, stricter in zip(kept, kept[1:]):  # fewer words, in order (the decoder glues punctuation)
            remaining = iter(looser.replace(" ", ""))
            assert len(stricter) < len(looser) and all(c in remaining for c in stricter.replace(" ", ""))
        assert await words(threshold=1.0, force_tokens=["?", "fox"]) in ("fox?", "fox ?")

    await with_engine(folder, run)


async def test_bad_requests_are_refused(tmp_path):
    folder = keep_drop_bert(tmp_path / "bert-base-multilingual-cased-c")

    async def run(engine, name):
        refusals = []
        for contexts, kwargs in [
            ([], {}), ([""], {}), (["  \n "], {}), ([3], {}), ("text", {}),
            (["text"], {"rate": 0}), (["text"], {"rate": 1.5}), (["text"], {"rate": -0.5}), (["text"], {"rate": True}),
            (["text"], {"rate": "half"}), (["text"], {"threshold": 1.2}), (["text"], {"rate": 0.5, "threshold": 0.5}),
            (["text"], {"force_tokens": "\n"}), (["text"], {"force_tokens": [""]}),
            (["text"], {"force_tokens": ["x" * 101]}), (["text"], {"top_k": 2}), (["text"], {"return_scores": True}),
        ]:
            with pytest.raises(InvalidInput) as error:
                await engine.compress(name, contexts, **kwargs)
            refusals.append(str(error.value))
        with pytest.raises(TooManyInputs, match="limit is 100"):
            await engine.compress(name, ["text"], force_tokens=[f"t{i}" for i in range(101)])
        with pytest.raises(ModelNotFound):
            await engine.compress("no-such-model", ["text"])
        with pytest.raises(UnsupportedOutput, match="send no `query`"):
            await engine.compress(name, ["text"], query="what?", top_k=1)
        with pytest.raises(DeadlineExceeded):
            await engine.compress(name, ["text"], deadline=0.0)
        return refusals

    refusals = await with_engine(folder, run)
    assert "rate must be above 0 and at most 1" in refusals[5] and "not both" in refusals[11]
    assert "context 0 is empty" in refusals[1] and "query" in refusals[15]


async def test_oversized_requests_are_413s(tmp_path):
    folder = keep_drop_bert(tmp_path / "bert-base-multilingual-cased-c")

    async def run(engine, name):
        with pytest.raises(TooManyInputs, match="3 contexts in one request; the limit is 2"):
            await engine.compress(name, ["a", "b", "c"])
        with pytest.raises(TooManyInputs, match="windows of the model's 512 tokens; the limit is 2"):
            await engine.compress(name, [" ".join(["word"] * 1200)])  # three windows
        with pytest.raises(InputTooLarge, match="8192 per request"):
            await engine.compress(name, ["x" * 8193])  # refused before it is tokenised
        return await engine.compress(name, [" ".join(["word"] * 1000)], rate=0.5)  # two windows fit

    result = await with_engine(folder, run, max_inputs_per_request=2)
    # windows of 511 tokens and 489, framed and cut to 512 (the first loses its [SEP], as in the package)
    assert result.input_tokens == 512 + 491 and result.original_tokens == 1000


async def test_models_that_cannot_compress_say_what_can(tmp_path, minilm_spec):
    from tests import zoo

    tagger, _ = zoo.entity_tagger(tmp_path / "ner")
    reranker, _ = zoo.cross_encoder(tmp_path / "rerank")
    for folder, message in [(tagger, "keep/drop head"), (reranker, "send a `query`"),
                            (minilm_spec.path, "cannot compress")]:
        with pytest.raises(UnsupportedOutput, match=message):
            await with_engine(folder, lambda engine, name: engine.compress(name, ["some text"]))
    with pytest.raises(UnsupportedOutput, match="needs a reranker"):
        await with_engine(minilm_spec.path, lambda engine, name: engine.compress(name, ["x"], query="q", top_k=1))


async def test_force_tokens_need_the_spare_rows(tmp_path):
    """A forced token of several pieces needs a spare [NEWi] row; one piece needs none."""
    folder = keep_drop_bert(tmp_path / "bert-base-multilingual-cased-c", spare_rows=0)

    async def run(engine, name):
        kept = await engine.compress(name, ["a cat? a dog."], force_tokens=["?"], rate=0.33)
        with pytest.raises(InvalidInput, match="no spare embedding row"):
            await engine.compress(name, ["a cat\na dog."], force_tokens=["\n"])
        return kept

    assert "?" in (await with_engine(folder, run)).compressed


# ---- query-aware pruning -----------------------------------------------------------------------
def reranker(folder: Path, seed: int = 5) -> Path:
    """A tiny cross-encoder whose scores differ from sentence to sentence by more than float
    noise: a random one's hardly read the input (its weights scaled up to read it)."""
    from transformers import BertForSequenceClassification

    from tests import zoo
    from tests.tiny import save_model

    torch.manual_seed(seed)
    model = zoo.perturbed(BertForSequenceClassification(zoo.bert_config(
        num_labels=1, architectures=["BertForSequenceClassification"])))
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("weight") and "LayerNorm" not in name and "embeddings" not in name:
                parameter.mul_(6)
        model.classifier.weight.mul_(3)
    return save_model(model, folder)


PASSAGE = ("Shoal serves small models from one process. It batches requests by token budget!\n"
           "Rerankers score a query against passages. Does it run on a CPU? Yes, and on one GPU.\n\n"
           "Context rot: answers get worse as the context grows… Compression cuts it first. "
           "東京は大きい。北京欢迎你！ The end")
QUERY = "how does a reranker score passages"


def test_sentences_follow_the_documented_rule():
    spans = split_sentences(PASSAGE)
    assert [PASSAGE[s:e] for s, e in spans] == [
        "Shoal serves small models from one process.", "It batches requests by token budget!",
        "Rerankers score a query against passages.", "Does it run on a CPU?", "Yes, and on one GPU.",
        "Context rot: answers get worse as the context grows…", "Compression cuts it first.",
        "東京は大きい。", "北京欢迎你！", "The end"]
    text = 'He said "stop." Then (left.) e.g. 3.5 m\r\nend'  # no abbreviation list: "e.g." ends a sentence
    assert [(s, e, text[s:e]) for s, e in split_sentences(text)] == [
        (0, 15, 'He said "stop."'), (16, 28, "Then (left.)"), (29, 33, "e.g."), (34, 39, "3.5 m"), (41, 44, "end")]
    assert split_sentences("no end") == [(0, 6)] and split_sentences(" \n ") == []


@pytest.mark.parametrize("options", [{"top_k": 3}, {"threshold": "median"}, {"threshold": "median", "top_k": 2}])
async def test_query_pruning_keeps_the_sentences_crossencoder_ranks(tmp_path, options):
    from tests.references import rerank_scores

    folder = reranker(tmp_path / "rerank")
    spans = split_sentences(PASSAGE)
    texts = [PASSAGE[s:e] for s, e in spans]
    reference = rerank_scores(folder, QUERY, texts)
    ordered = sorted(reference)
    if options.get("threshold") == "median":  # between the two middle scores: float noise cannot decide
        options = {**options, "threshold": float((ordered[4] + ordered[5]) / 2)}
    keep = reference >= options.get("threshold", -np.inf)
    if "top_k" in options:
        best = sorted(np.flatnonzero(keep), key=lambda i: -reference[i])[:options["top_k"]]
        keep = np.isin(np.arange(len(texts)), best)
    assert min(abs(a - b) for a, b in zip(ordered, ordered[1:])) > 1e-4  # no near-ties for top_k to break

    result = await with_engine(folder, lambda engine, name: engine.compress(name, [PASSAGE], query=QUERY,
                                                                            return_scores=True, **options))
    sentences = result.contexts[0].sentences
    assert [(s.start, s.end, s.text) for s in sentences] == [(s, e, PASSAGE[s:e]) for s, e in spans]
    np.testing.assert_allclose([s.score for s in sentences], reference, atol=1e-5)
    assert [s.kept for s in sentences] == keep.tolist()
    gaps = [PASSAGE[e:(spans[i + 1][0] if i + 1 < len(spans) else e)] for i, (_, e) in enumerate(spans)]
    assert result.compressed == "".join(t + g for t, g, k in zip(texts, gaps, keep) if k).rstrip()
    assert result.input_tokens > 0 and result.kept_tokens < result.original_tokens


async def test_query_pruning_scores_every_context_in_one_request(tmp_path):
    folder = reranker(tmp_path / "rerank")
    contexts = [PASSAGE, "One sentence only", "First. Second! Third?"]

    async def run(engine, name):
        batches = []
        engine.observer.batch_done = lambda model, sequences, tokens, seconds: batches.append(sequences)
        result = await engine.compress(name, contexts, query=QUERY, top_k=1)
        refusals = []
        for kwargs in ({}, {"query": " ", "top_k": 1}, {"query": QUERY, "top_k": 0}, {"query": QUERY, "top_k": True},
                       {"query": QUERY, "threshold": "x"}, {"query": QUERY, "top_k": 1, "rate": 0.5},
                       {"query": QUERY, "top_k": 1, "force_tokens": ["a"]}):
            with pytest.raises((InvalidInput, UnsupportedOutput)) as error:
                await engine.compress(name, ["A text."], **kwargs)
            refusals.append(str(error.value))
        with pytest.raises(TooManyInputs, match="15 sentences; the limit is 14"):
            await engine.compress(name, [PASSAGE, "a. b. c. d. e."], query=QUERY, top_k=1)
        return result, batches, refusals

    result, batches, refusals = await with_engine(folder, run, max_inputs_per_request=14)
    assert sum(batches) == 14 and len(batches) == 1  # 10 + 1 + 3 sentences, one batch
    assert [len(split_sentences(c.compressed)) for c in result.contexts] == [1, 1, 1]
    assert result.contexts[1].compressed == "One sentence only"
    assert "reranker" in refusals[0] and "top_k must be a positive integer" in refusals[2]
