"""Zero-shot classification through NLI cross-encoders, against transformers'
zero-shot-classification pipeline on tiny random NLI models (BERT and XLM-R heads, the
entailment label first or last): single- and multi-label scores, one label, a custom
hypothesis template, texts long enough to be cut (only the text, never the hypothesis)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine import InvalidInput, TooManyInputs, spec_from_folder
from tests.engine.heads_helpers import with_engine
from tests.texts import varied_texts
from tests.tiny import save_model
from tests.zoo import bert_config, perturbed

TEXTS = varied_texts(6, seed=17) + ["the invoice was charged twice", " ".join(varied_texts(40, seed=2))]
LABELS = ["billing", "a technical problem", "sales", "sports"]
# where MNLI checkpoints put their labels: roberta-large-mnli / deberta-mnli (entailment last) and
# others (entailment first), so the contradiction index follows the pipeline's rule both ways
NLI_LABELS = {"entailment-last": ["contradiction", "neutral", "entailment"],
              "entailment-first": ["entailment", "neutral", "contradiction"]}


def nli_model(folder, family: str, order: str, seed: int = 5):
    labels = NLI_LABELS[order]
    id2label = dict(enumerate(labels))
    torch.manual_seed(seed)
    if family == "bert":
        from transformers import BertForSequenceClassification

        config = bert_config(num_labels=3, id2label=id2label, label2id={v: k for k, v in id2label.items()},
                             architectures=["BertForSequenceClassification"])
        config.max_position_embeddings = 512  # the tokenizer's length: the pipeline truncates there
        model = BertForSequenceClassification(config)
    else:
        from transformers import XLMRobertaConfig, XLMRobertaForSequenceClassification

        config = XLMRobertaConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=64, max_position_embeddings=514, num_labels=3, id2label=id2label,
                                  label2id={v: k for k, v in id2label.items()},
                                  architectures=["XLMRobertaForSequenceClassification"])
        model = XLMRobertaForSequenceClassification(config)
    return save_model(perturbed(model, seed), folder)


def pipeline_scores(folder, texts, labels, multi_label=False, template="This example is {}.") -> np.ndarray:
    from transformers import pipeline

    classifier = pipeline("zero-shot-classification", model=str(folder), device="cpu")
    results = classifier(list(texts), candidate_labels=list(labels), multi_label=multi_label,
                         hypothesis_template=template)
    return np.array([[dict(zip(r["labels"], r["scores"]))[label] for label in labels] for r in results])


@pytest.mark.parametrize("family,order", [("bert", "entailment-last"), ("bert", "entailment-first"),
                                          ("xlm-roberta", "entailment-last")])
@pytest.mark.parametrize("multi_label", [False, True])
async def test_zero_shot_matches_the_transformers_pipeline(tmp_path, family, order, multi_label):
    folder = nli_model(tmp_path / "nli", family, order)
    spec = spec_from_folder("nli", folder)
    assert spec.task == "zero_shot" and spec.capabilities == ("classify",)
    expected = pipeline_scores(folder, TEXTS, LABELS, multi_label)
    result = await with_engine(folder, lambda engine, name: engine.classify(name, TEXTS, labels=LABELS,
                                                                           multi_label=multi_label))
    assert result.labels == tuple(LABELS)
    np.testing.assert_allclose(result.probabilities, expected, atol=1e-5)
    if not multi_label:
        np.testing.assert_allclose(result.probabilities.sum(1), 1.0, atol=1e-5)


async def test_one_label_and_a_custom_template_match_the_pipeline(tmp_path):
    folder = nli_model(tmp_path / "nli", "bert", "entailment-last")
    template = "The topic of this text is {}"
    for labels in (["billing"], LABELS[:3]):
        expected = pipeline_scores(folder, TEXTS, labels, template=template)
        result = await with_engine(folder, lambda engine, name: engine.classify(
            name, TEXTS, labels=labels, hypothesis_template=template))
        np.testing.assert_allclose(result.probabilities, expected, atol=1e-5)


async def test_zero_shot_refuses_what_it_cannot_answer(tmp_path):
    folder = nli_model(tmp_path / "nli", "bert", "entailment-last")

    async def calls(engine, name):
        refusals = []
        for kwargs in ({}, {"labels": []}, {"labels": ["a", "a"]}, {"labels": [""]}, {"labels": ["x" * 201]},
                       {"labels": ["a"], "hypothesis_template": "no placeholder"},
                       {"labels": [f"label {i}" for i in range(65)]}):
            try:
                await engine.classify(name, ["text"], **kwargs)
            except (InvalidInput, TooManyInputs) as error:
                refusals.append(type(error))
        try:
            await engine.classify(name, ["text"] * 600, labels=LABELS)  # 2,400 pairs over the 2,048 limit
        except TooManyInputs as error:
            refusals.append(type(error))
        return refusals

    refusals = await with_engine(folder, calls)
    assert refusals == [InvalidInput] * 6 + [TooManyInputs, TooManyInputs]


async def test_a_fixed_label_classifier_refuses_request_labels(tmp_path):
    from tests import zoo

    folder, _ = zoo.classifier(tmp_path / "intent")
    with pytest.raises(InvalidInput, match="its own labels"):
        await with_engine(folder, lambda engine, name: engine.classify(name, ["text"], labels=["a"]))


async def test_nli_pairs_are_classified_over_the_models_own_labels(tmp_path):
    """TEI's /predict with (premise, hypothesis) pairs: the NLI label probabilities."""
    from transformers import pipeline

    folder = nli_model(tmp_path / "nli", "bert", "entailment-last")
    pairs = [("a cat sat on the mat", "an animal is sitting"), ("prices rose", "prices fell")]
    classifier = pipeline("text-classification", model=str(folder), top_k=None, device="cpu")
    expected = [{r["label"]: r["score"] for r in classifier({"text": p, "text_pair": h})} for p, h in pairs]
    result = await with_engine(folder, lambda engine, name: engine.classify(name, pairs))
    for row, want in zip(result.probabilities, expected):
        np.testing.assert_allclose(row, [want[label] for label in result.labels], atol=1e-5)
