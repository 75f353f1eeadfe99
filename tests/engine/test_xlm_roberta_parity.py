"""The packed XLM-RoBERTa / RoBERTa / CamemBERT forward pass and task heads against
transformers, on tiny random models."""

from __future__ import annotations

import pytest

from engine.models import find_architecture
from engine.models.xlm_roberta import XLMRobertaEncoder
from tests.tiny_encoders import assert_head_parity, assert_hidden_parity, load, tiny_roberta

MAX_POSITIONS = 66

SHAPES = [
    dict(family="XLMRoberta", layers=1, hidden=32, heads=4, intermediate=64),
    dict(family="Roberta", layers=3, hidden=48, heads=6, intermediate=96, activation="gelu_new", eps=1e-12),
    # positions start at pad_token_id + 1 whatever the pad id; two token types are used
    dict(family="Camembert", layers=2, hidden=64, heads=2, intermediate=128, activation="relu", pad_token_id=0,
         type_vocab_size=2),
]


@pytest.mark.parametrize("model_type, architecture", [
    ("xlm-roberta", "XLMRobertaModel"), ("roberta", "RobertaForSequenceClassification"),
    ("camembert", "CamembertForMaskedLM"),
])
def test_registry_serves_the_roberta_family(model_type, architecture):
    assert find_architecture(model_type, (architecture,)) is XLMRobertaEncoder


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s['family']}-L{s['layers']}-H{s['hidden']}-A{s['heads']}")
def test_hidden_states_match_transformers(tmp_path, shape):
    folder = tiny_roberta(tmp_path / "roberta", max_positions=MAX_POSITIONS, **shape)
    served = load(folder)
    assert served.network.position_offset == shape.get("pad_token_id", 1) + 1
    max_length = MAX_POSITIONS - served.network.position_offset
    assert served.spec.max_length == max_length
    assert_hidden_parity(folder, shape["family"], max_length)


@pytest.mark.parametrize("task, tie", [
    ("sequence_classification", True), ("token_classification", True), ("masked_lm", True), ("masked_lm", False),
], ids=["sequence_classification", "token_classification", "masked_lm-tied", "masked_lm-untied"])
def test_heads_match_transformers(tmp_path, task, tie):
    folder = tiny_roberta(tmp_path / task, layers=2, hidden=48, heads=4, intermediate=96,
                          max_positions=MAX_POSITIONS, task=task, tie=tie, seed=1)
    assert_head_parity(folder, "XLMRoberta", task, MAX_POSITIONS - 2)
