"""The packed DistilBERT forward pass and task heads against transformers, on tiny random models."""

from __future__ import annotations

import pytest
import torch

from engine.models import find_architecture
from engine.models.distilbert import DistilBertEncoder, sinusoidal_positions
from engine.weights import read_checkpoint
from tests.tiny_encoders import assert_head_parity, assert_hidden_parity, load, tiny_distilbert

MAX_POSITIONS = 66

SHAPES = [
    dict(layers=1, hidden=32, heads=4, intermediate=64),
    dict(layers=3, hidden=48, heads=6, intermediate=96, activation="gelu_new"),
    dict(layers=2, hidden=64, heads=2, intermediate=128, activation="relu", sinusoidal=True),
]


def test_registry_serves_distilbert():
    assert find_architecture("distilbert", ("DistilBertForSequenceClassification",)) is DistilBertEncoder


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"L{s['layers']}-H{s['hidden']}-A{s['heads']}")
def test_hidden_states_match_transformers(tmp_path, shape):
    folder = tiny_distilbert(tmp_path / "distilbert", max_positions=MAX_POSITIONS, **shape)
    assert_hidden_parity(folder, "DistilBert", MAX_POSITIONS)


@pytest.mark.parametrize("task", ["sequence_classification", "token_classification", "masked_lm"])
def test_heads_match_transformers(tmp_path, task):
    folder = tiny_distilbert(tmp_path / task, layers=2, hidden=48, heads=4, intermediate=96,
                             max_positions=MAX_POSITIONS, task=task, seed=1)
    assert_head_parity(folder, "DistilBert", task, MAX_POSITIONS)


def test_sinusoidal_table_is_built_when_the_checkpoint_lacks_it(tmp_path):
    folder = tiny_distilbert(tmp_path / "sin", max_positions=MAX_POSITIONS, sinusoidal=True)
    served = load(folder)
    checkpoint = read_checkpoint(served.spec.weight_files)
    saved = checkpoint.pop("embeddings.position_embeddings.weight")
    torch.testing.assert_close(sinusoidal_positions(MAX_POSITIONS, 32), saved, atol=1e-6, rtol=0)
    mapped = DistilBertEncoder.map_weights(checkpoint, served.spec.config)
    torch.testing.assert_close(mapped["position_embeddings.weight"], saved, atol=1e-6, rtol=0)
