"""GLiNER against the gliner package itself, on tiny random GLiNER models that the package
builds and saves (tests/gliner_builder.py, run in the package's own environment,
.gliner-venv, made by `make install-dev`): the same entities (labels, character offsets,
text) and scores within 1e-4, flat and nested, single- and multi-label, at thresholds that
keep all or some spans, for every subtoken pooling, with and without the LSTM and the
backbone projection, on BERT and DeBERTa-v3 backbones; long texts in windows; the variants
that are refused."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from engine import InvalidInput, ModelLoadError, TooManyInputs, spec_from_folder
from tests.engine.heads_helpers import with_engine
from tests.tiny import copy_tokenizer

ROOT = Path(__file__).resolve().parents[2]
GLINER_PYTHON = Path(os.environ.get("SHOAL_GLINER_PYTHON", ROOT / ".gliner-venv" / "bin" / "python"))
MISSING = (f"THE GLINER PARITY TESTS DID NOT RUN: no gliner environment at {GLINER_PYTHON} "
           f"(make install-dev creates it with scripts/install-gliner.sh)")
if not GLINER_PYTHON.exists() and os.environ.get("CI"):
    raise RuntimeError(MISSING)  # CI installs it: its absence there is a broken install, not a skip
pytestmark = pytest.mark.skipif(not GLINER_PYTHON.exists(), reason=MISSING)

TEXTS = ["Alice Smith met Bob Jones at Acme_Corp in New York on 3 May 2021.",
         "Zoë Müller flew from São Paulo to Zürich \u200b twice, via a state-of-the-art e-mail@example.com!",
         "   ",  # no words: no entities
         "東京タワー is in Tokyo; ACME Ltd. (London) paid $3.5m."]
LABELS = ["person", "organisation name", "city", "date"]
# (labels, threshold, flat_ner, multi_label). Random models score low: 0 keeps every span for the
# greedy decoding to sort out; "median" (tests/gliner_builder.py) keeps about half of those.
CASES = [(LABELS, 0.0, True, False), (LABELS, "median", True, False), (LABELS, "median", False, False),
         (LABELS, 0.0, False, True), (LABELS, "median", True, True), (["location"], "median", True, False)]
BERT = {"model_type": "bert", "vocab_size": 30522, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
        "intermediate_size": 64, "max_position_embeddings": 512}
# GLiNER's usual backbone, in DeBERTa-v3's shape (relative positions only, shared keys, log buckets)
DEBERTA_V3 = {**BERT, "model_type": "deberta-v2", "relative_attention": True, "position_buckets": 256,
              "norm_rel_ebd": "layer_norm", "share_att_key": True, "pos_att_type": ["p2c", "c2p"],
              "position_biased_input": False, "max_relative_positions": -1, "type_vocab_size": 0, "layer_norm_eps": 1e-7}
# GLiNER settings per model: the package's default (first subtoken, one LSTM layer), each other
# pooling, no LSTM or two layers, a backbone projection (hidden_size differs from the backbone's)
MODELS = {
    "first": {"max_width": 4, "hidden_size": 24},
    "mean": {"max_width": 3, "hidden_size": 32, "num_rnn_layers": 0, "subtoken_pooling": "mean",
             "embed_ent_token": False},
    "last": {"max_width": 5, "hidden_size": 16, "num_rnn_layers": 2, "subtoken_pooling": "last"},
    "max": {"max_width": 4, "hidden_size": 32, "subtoken_pooling": "max"},
    "deberta-v3": {"max_width": 4, "hidden_size": 24},
}
BACKBONES = {"deberta-v3": DEBERTA_V3}  # the others: BERT
WINDOW_WORDS = 12  # max_len of the windows model: the package keeps that many words of a text
LONG = ("Alice Smith of Acme Corp met Bob Jones in Paris on Monday, and later Carol King flew to Berlin, "
        "where the Globex board and Dr. Dan Brown signed a deal worth $5m with Initech on 2 June 2022; "
        "the next week Erin Lee of Umbrella Ltd visited Rome and Madrid before returning home.")
WORD = re.compile(r"\w+(?:[-_]\w+)*|\S")  # the package's words splitter


def build_with_package(models: list[dict]) -> list:
    """Build, save and query GLiNER models with the gliner package (tests/gliner_builder.py)."""
    done = subprocess.run([str(GLINER_PYTHON), str(ROOT / "tests" / "gliner_builder.py")],
                          input=json.dumps({"models": models}), capture_output=True, text=True, timeout=600,
                          check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout)["predictions"]


def model_request(folder: Path, settings: dict, cases: list, seed: int, backbone: dict = BERT) -> dict:
    tokenizer = folder.parent / f"{folder.name}-tokenizer"
    tokenizer.mkdir(parents=True, exist_ok=True)
    copy_tokenizer(tokenizer)
    return {"folder": str(folder), "tokenizer": str(tokenizer), "seed": seed, "backbone": backbone,
            "gliner": settings, "cases": [{"texts": texts, "labels": labels, "threshold": threshold,
                                           "flat_ner": flat, "multi_label": multi} for texts, (labels, threshold,
                                                                                               flat, multi) in cases]}


def window_texts(text: str, words: int) -> tuple[list[str], list[int]]:
    """The text cut into pieces of `words` words (what the package can read whole), and where each starts."""
    found = list(WORD.finditer(text))
    pieces = [found[i:i + words] for i in range(0, len(found), words)]
    return [text[p[0].start():p[-1].end()] for p in pieces], [p[0].start() for p in pieces]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Every model built and queried by the package in one run: {name: (folder, predictions)}."""
    root = tmp_path_factory.mktemp("gliner")
    requests = {name: model_request(root / name, settings, [(TEXTS, case) for case in CASES], seed,
                                    BACKBONES.get(name, BERT))
                for seed, (name, settings) in enumerate(MODELS.items())}
    pieces, _ = window_texts(LONG, WINDOW_WORDS)
    requests["windows"] = model_request(root / "windows", {"max_width": 4, "hidden_size": 24,
                                                           "max_len": WINDOW_WORDS},
                                        [([LONG], CASES[0]), (pieces, CASES[0]), (pieces, CASES[2])], seed=9)
    predictions = build_with_package(list(requests.values()))
    return {name: (Path(request["folder"]), answer) for (name, request), answer in zip(requests.items(), predictions)}


def assert_same_entities(ours, theirs) -> None:
    """Same entities, same scores within 1e-4. Entities come sorted by start; those with the
    same start keep the order of their scores, which float noise (1e-7) may swap when two
    are nearly equal, so they are compared in (start, end, label) order."""
    assert len(ours) == len(theirs)
    for found, expected in zip(ours, theirs):
        found = sorted(found, key=lambda e: (e.start, e.end, e.label))
        expected = sorted(expected, key=lambda e: (e["start"], e["end"], e["label"]))
        assert [(e.label, e.start, e.end, e.text) for e in found] == \
               [(e["label"], e["start"], e["end"], e["text"]) for e in expected]
        for entity, reference in zip(found, expected):
            assert entity.score == pytest.approx(reference["score"], abs=1e-4)


async def extract_cases(folder: Path, cases: list, answers: list) -> list:
    """Shoal's entities for each (texts, case), at the threshold the package was asked with."""
    async def run(engine, name):
        return [(await engine.extract(name, texts, labels=labels, threshold=answer["threshold"], flat_ner=flat,
                                      multi_label=multi)).entities
                for (texts, (labels, _, flat, multi)), answer in zip(cases, answers)]
    return await with_engine(folder, run)


@pytest.mark.parametrize("name", list(MODELS))
async def test_entities_and_scores_match_the_package(built, name):
    folder, expected = built[name]
    spec = spec_from_folder("g", folder)
    assert spec.task == "gliner" and spec.capabilities == ("extract",) and spec.problem is None
    found = await extract_cases(folder, [(TEXTS, case) for case in CASES], expected)
    for ours, theirs in zip(found, expected):
        assert_same_entities(ours, theirs["entities"])
    assert 0 < sum(map(len, found[1])) < sum(map(len, found[0]))  # the threshold keeps some spans, not all


async def test_long_texts_are_read_in_windows_of_whole_words(built):
    """The package reads the first max_len words of a text and drops the rest; Shoal reads the
    whole text in windows of max_len words: what the package finds in each piece on its own."""
    folder, (whole, *by_piece) = built["windows"]
    pieces, offsets = window_texts(LONG, WINDOW_WORDS)
    assert len(pieces) > 3
    found = await extract_cases(folder, [([LONG], case) for case in (CASES[0], CASES[2])], by_piece)
    for ours, theirs in zip(found, by_piece):
        expected = [{**e, "start": e["start"] + offset, "end": e["end"] + offset}
                    for piece, offset in zip(theirs["entities"], offsets) for e in piece]
        assert_same_entities(ours, [expected])
    first_piece = [e for e in found[0][0] if e.end <= offsets[1]]
    assert_same_entities([first_piece], whole["entities"])  # all the package itself finds in the whole text


async def test_windows_fit_the_backbone_and_cover_every_word(built):
    from engine.gliner import GlinerTokenizer

    folder, _ = built["first"]
    spec = spec_from_folder("g", folder)
    tokenizer = GlinerTokenizer(spec.path, spec.gliner, max_length=40)
    text = " ".join(["internationalisation"] * 30 + ["supercalifragilisticexpialidocious"] * 5)
    items = tokenizer.encode([text], LABELS)
    assert len(items) > 2 and all(len(item.ids) <= 40 for item in items)
    assert [s for item in items for s in item.extra.starts] == [m.start() for m in WORD.finditer(text)]
    with pytest.raises(InvalidInput, match="fewer or shorter labels"):
        tokenizer.encode([text], [f"a rather long label number {i}" for i in range(8)])


async def test_bad_requests_are_refused(built):
    folder, _ = built["first"]

    async def calls(engine, name):
        refusals = []
        for kwargs in ({}, {"labels": []}, {"labels": ["a", "a"]}, {"labels": ["x" * 201]},
                       {"labels": ["<<ENT>> a"]}, {"labels": ["a"], "threshold": 1.5},
                       {"labels": ["a"], "threshold": True}, {"labels": [f"l{i}" for i in range(65)]}):
            with pytest.raises((InvalidInput, TooManyInputs)) as error:
                await engine.extract(name, ["text"], **kwargs)
            refusals.append(error.type)
        return refusals

    assert await with_engine(folder, calls) == [InvalidInput] * 7 + [TooManyInputs]


async def test_a_fixed_label_tagger_refuses_request_labels(tmp_path):
    from tests import zoo

    folder, _ = zoo.entity_tagger(tmp_path / "ner")
    for kwargs in ({"labels": ["person"]}, {"threshold": 0.3}, {"flat_ner": False}):
        with pytest.raises(InvalidInput, match="labels of its own config"):
            await with_engine(folder, lambda engine, name, kwargs=kwargs: engine.extract(name, ["text"], **kwargs))


@pytest.mark.parametrize("change,reason", [
    ({"labels_encoder": "BAAI/bge-small-en-v1.5"}, "bi-encoder"),
    ({"span_mode": "token_level"}, "span_mode 'token_level'"),
    ({"span_mode": "marker"}, "span_mode 'marker'"),
    ({"fuse_layers": True}, "fuse encoder layers"),
    ({"words_splitter_type": "spacy"}, "words_splitter_type"),
])
async def test_unsupported_variants_fail_with_their_reason(built, tmp_path, change, reason):
    folder = tmp_path / "variant"
    shutil.copytree(built["first"][0], folder)
    config = json.loads((folder / "gliner_config.json").read_text())
    (folder / "gliner_config.json").write_text(json.dumps({**config, **change}))
    spec = spec_from_folder("g", folder)
    assert spec.task == "gliner" and reason in spec.problem
    with pytest.raises(ModelLoadError, match=re.escape(reason)):
        await with_engine(folder, lambda engine, name: engine.extract(name, ["text"], labels=["a"]))


def test_pytorch_bin_weights_are_refused_with_the_way_out(built, tmp_path):
    folder = tmp_path / "bin"
    shutil.copytree(built["first"][0], folder)
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
    assert "safe_serialization=True" in spec_from_folder("g", folder).problem
