"""Models that take their labels at request time, over real HTTP: zero-shot classification
on /v1/classify (against transformers' pipeline), its bad inputs, /v1/models saying which
models take labels, and TEI's /predict with NLI pairs; GLiNER on /v1/extract and GLiClass on
/v1/classify (against their packages)."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from engine import Engine, EngineConfig, spec_from_folder
from tests import zoo
from tests.conftest import LiveServer
from tests.engine.test_zero_shot import LABELS, TEXTS, nli_model, pipeline_scores


@pytest.fixture(scope="module")
def labels_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("labels")
    nli = nli_model(root / "nli", "bert", "entailment-last")
    intent, _ = zoo.classifier(root / "intent")
    specs = [spec_from_folder("nli", nli), spec_from_folder("intent", intent)]
    with LiveServer(Engine(specs, EngineConfig(device="cpu", dtype="float32"))) as live:
        yield live, nli


@pytest.mark.parametrize("multi_label", [False, True])
def test_zero_shot_classify_over_http_matches_the_pipeline(labels_server, multi_label):
    live, folder = labels_server
    response = httpx.post(live.url + "/v1/classify", json={"model": "nli", "inputs": TEXTS, "labels": LABELS,
                                                           "multi_label": multi_label}, timeout=60)
    assert response.status_code == 200, response.text
    expected = pipeline_scores(folder, TEXTS, LABELS, multi_label)
    for result, want in zip(response.json()["results"], expected):
        got = {entry["label"]: entry["score"] for entry in result["labels"]}
        np.testing.assert_allclose([got[label] for label in LABELS], want, atol=1e-5)
        scores = [entry["score"] for entry in result["labels"]]
        assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize("body,status,fragment", [
    ({"model": "nli", "inputs": ["text"]}, 422, "send `labels`"),
    ({"model": "nli", "inputs": ["text"], "labels": ["a"], "hypothesis_template": "none"}, 422, "{}"),
    ({"model": "nli", "inputs": ["text"], "labels": [f"l{i}" for i in range(65)]}, 413, "limit is 64"),
    ({"model": "intent", "inputs": ["text"], "labels": ["a"]}, 422, "its own labels"),
    ({"model": "nli", "inputs": ["text"], "labels": "billing"}, 422, "labels"),
])
def test_bad_label_requests_are_clear_4xx(labels_server, body, status, fragment):
    live, _ = labels_server
    response = httpx.post(live.url + "/v1/classify", json=body, timeout=60)
    assert response.status_code == status, response.text
    assert fragment in response.json()["error"]["message"]


def test_models_say_which_take_labels(labels_server):
    live, _ = labels_server
    models = {m["id"]: m for m in httpx.get(live.url + "/v1/models", timeout=10).json()["data"]}
    assert models["nli"]["labels_at_request"] is True and models["nli"]["capabilities"] == ["classify"]
    assert models["intent"]["labels_at_request"] is False


def test_tei_predict_classifies_nli_pairs_and_asks_for_pairs(labels_server):
    from transformers import pipeline

    live, folder = labels_server
    pairs = [["a cat sat on the mat", "an animal is sitting"], ["prices rose", "prices fell"]]
    response = httpx.post(live.url + "/tei/nli/predict", json={"inputs": pairs}, timeout=60)
    assert response.status_code == 200, response.text
    classifier = pipeline("text-classification", model=str(folder), top_k=None, device="cpu")
    for predictions, (premise, hypothesis) in zip(response.json(), pairs):
        want = {r["label"]: r["score"] for r in classifier({"text": premise, "text_pair": hypothesis})}
        for prediction in predictions:
            assert prediction["score"] == pytest.approx(want[prediction["label"]], abs=1e-5)
    single = httpx.post(live.url + "/tei/nli/predict", json={"inputs": "just a text"}, timeout=60)
    assert single.status_code == 422 and "pairs" in single.json()["error"]


# ---- GLiNER on /v1/extract, against the gliner package --------------------------------------
GLINER_CASES = [(0.0, {"flat_ner": True}, False), ("median", {"flat": False}, False), (0.0, {}, True)]


@pytest.fixture(scope="module")
def gliner_server(tmp_path_factory):
    from tests.engine.test_gliner_parity import (
        GLINER_PYTHON,
        LABELS,
        MISSING,
        MODELS,
        TEXTS,
        build_with_package,
        model_request,
    )

    if not GLINER_PYTHON.exists():
        pytest.skip(MISSING)
    root = tmp_path_factory.mktemp("gliner-http")
    cases = [(TEXTS, (LABELS, threshold, flags.get("flat_ner", flags.get("flat", True)), multi))
             for threshold, flags, multi in GLINER_CASES]
    predictions = build_with_package([model_request(root / "gliner", MODELS["first"], cases, seed=4)])[0]
    tagger, _ = zoo.entity_tagger(root / "ner")
    specs = [spec_from_folder("gliner", root / "gliner"), spec_from_folder("ner", tagger)]
    with LiveServer(Engine(specs, EngineConfig(device="cpu", dtype="float32"))) as live:
        yield live, predictions


@pytest.mark.parametrize("case", range(len(GLINER_CASES)))
def test_gliner_extract_over_http_matches_the_package(gliner_server, case):
    from tests.engine.test_gliner_parity import LABELS, TEXTS

    live, predictions = gliner_server
    _, flags, multi_label = GLINER_CASES[case]
    expected = predictions[case]
    body = {"model": "gliner", "inputs": TEXTS, "labels": LABELS, "threshold": expected["threshold"],
            "multi_label": multi_label, **flags}
    response = httpx.post(live.url + "/v1/extract", json=body, timeout=60)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert len(results) == len(TEXTS) and response.json()["usage"]["input_tokens"] > 0
    order = lambda e: (e["start"], e["end"], e["label"])
    for result, want in zip(results, expected["entities"]):
        got, want = sorted(result["entities"], key=order), sorted(want, key=order)
        assert [(e["label"], e["text"], e["start"], e["end"]) for e in got] == \
               [(e["label"], e["text"], e["start"], e["end"]) for e in want]
        assert [e["score"] for e in got] == pytest.approx([e["score"] for e in want], abs=1e-4)


@pytest.mark.parametrize("body,status,fragment", [
    ({"model": "gliner", "inputs": ["text"]}, 422, "send `labels`"),
    ({"model": "gliner", "inputs": ["text"], "labels": ["a"], "threshold": 2}, 422, "threshold"),
    ({"model": "gliner", "inputs": ["text"], "labels": ["a"], "flat": True, "flat_ner": False}, 422, "send one"),
    ({"model": "gliner", "inputs": ["text"], "labels": [f"l{i}" for i in range(65)]}, 413, "limit is 64"),
    ({"model": "ner", "inputs": ["text"], "labels": ["person"]}, 422, "labels of its own config"),
    ({"model": "ner", "inputs": ["text"], "threshold": 0.3}, 422, "labels of its own config"),
])
def test_bad_extract_requests_are_clear_4xx(gliner_server, body, status, fragment):
    live, _ = gliner_server
    response = httpx.post(live.url + "/v1/extract", json=body, timeout=60)
    assert response.status_code == status, response.text
    assert fragment in response.json()["error"]["message"]


def test_models_say_gliner_takes_labels(gliner_server):
    live, _ = gliner_server
    models = {m["id"]: m for m in httpx.get(live.url + "/v1/models", timeout=10).json()["data"]}
    assert models["gliner"]["labels_at_request"] is True and models["gliner"]["capabilities"] == ["extract"]
    assert models["ner"]["labels_at_request"] is False


# ---- GLiClass on /v1/classify, against the gliclass package ----------------------------------
@pytest.fixture(scope="module")
def gliclass_server(tmp_path_factory):
    pytest.importorskip("gliclass", reason="the gliclass package is the reference (pyproject's dev extra)")
    from tests.gliclass_builder import DEBERTA_V3, build

    folder = build(tmp_path_factory.mktemp("gliclass-http") / "gliclass", DEBERTA_V3, {"prompt_first": True}, seed=3)
    with LiveServer(Engine([spec_from_folder("gliclass", folder)], EngineConfig(device="cpu", dtype="float32"))) as live:
        yield live, folder


@pytest.mark.parametrize("multi_label", [False, True])
def test_gliclass_classify_over_http_matches_the_package(gliclass_server, multi_label):
    from tests.gliclass_builder import package_scores

    live, folder = gliclass_server
    # the labels come first, so the package cuts a long text as Shoal does when given the same length
    expected, predictions = package_scores(folder, TEXTS, LABELS, multi_label,
                                           max_length=spec_from_folder("g", folder).max_length)
    body = {"model": "gliclass", "inputs": TEXTS, "labels": LABELS, "multi_label": multi_label}
    for threshold in (None, 0.5):
        response = httpx.post(live.url + "/v1/classify", json={**body, "threshold": threshold}, timeout=60)
        assert response.status_code == 200, response.text
        for result, want, predicted in zip(response.json()["results"], expected, predictions):
            got = {entry["label"]: entry["score"] for entry in result["labels"]}
            if threshold is None:  # every label, best first: the best is the package's single-label answer
                np.testing.assert_allclose([got[label] for label in LABELS], want, atol=1e-4)
                assert list(got.values()) == sorted(got.values(), reverse=True)
                assert multi_label or [next(iter(got))] == predicted
            elif multi_label:  # the labels the package predicts at its threshold
                assert sorted(got) == sorted(predicted)


def test_gliclass_models_take_labels_and_refuse_a_template(gliclass_server):
    live, _ = gliclass_server
    model = httpx.get(live.url + "/v1/models", timeout=10).json()["data"][0]
    assert model["labels_at_request"] is True and model["capabilities"] == ["classify"]
    for body, fragment in (({"labels": ["a"], "hypothesis_template": "It is {}."}, "hypothesis_template"),
                           ({}, "send `labels`"), ({"labels": ["a"], "threshold": 2}, "threshold")):
        response = httpx.post(live.url + "/v1/classify", json={"model": "gliclass", "inputs": ["text"], **body},
                              timeout=60)
        assert response.status_code == 422 and fragment in response.json()["error"]["message"], response.text
