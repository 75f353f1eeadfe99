"""The packed MPNet forward pass (relative position bias) and task heads against
transformers, on tiny random models."""

from __future__ import annotations

import pytest
import torch

from engine.models import find_architecture
from engine.models.mpnet import MPNetEncoder, relative_position_bucket
from tests.tiny_encoders import assert_head_parity, assert_hidden_parity, load, tiny_mpnet

# Offsets of 91 tokens or more share the last relative-position bucket: P162 reaches it.
SHAPES = [
    dict(layers=1, hidden=32, heads=4, intermediate=64, max_positions=66),
    dict(layers=3, hidden=48, heads=6, intermediate=96, max_positions=66, activation="gelu_new"),
    dict(layers=2, hidden=64, heads=2, intermediate=128, max_positions=162, activation="relu"),
]


def test_registry_serves_mpnet():
    assert find_architecture("mpnet", ("MPNetForMaskedLM",)) is MPNetEncoder


def test_buckets_match_transformers():
    from transformers.models.mpnet.modeling_mpnet import MPNetEncoder as Reference

    positions = torch.arange(600)
    relative = positions[None, :] - positions[:, None]
    torch.testing.assert_close(relative_position_bucket(relative), Reference.relative_position_bucket(relative))


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"L{s['layers']}-H{s['hidden']}-A{s['heads']}-P{s['max_positions']}")
def test_hidden_states_match_transformers(tmp_path, shape):
    folder = tiny_mpnet(tmp_path / "mpnet", **shape)
    assert load(folder).network.position_offset == 2
    # positions start at 2 (padding_idx + 1), so a sequence may be 2 shorter than the table
    assert_hidden_parity(folder, "MPNet", shape["max_positions"] - 2)


@pytest.mark.parametrize("task, tie", [
    ("sequence_classification", True), ("token_classification", True), ("masked_lm", True), ("masked_lm", False),
], ids=["sequence_classification", "token_classification", "masked_lm-tied", "masked_lm-untied"])
def test_heads_match_transformers(tmp_path, task, tie):
    folder = tiny_mpnet(tmp_path / task, layers=2, hidden=48, heads=4, intermediate=96, max_positions=66,
                        task=task, tie=tie, seed=1)
    assert_head_parity(folder, "MPNet", task, 64)


def test_attend_lengths_mask_keys_like_an_attention_mask(tmp_path):
    """ColBERT query expansion: trailing tokens are computed but never attended to."""
    from transformers import MPNetModel

    from engine.batch import PackedBatch

    folder = tiny_mpnet(tmp_path / "mpnet", max_positions=66, seed=2)
    served = load(folder)
    reference = MPNetModel.from_pretrained(str(folder)).eval()
    ids = [[101, 2023, 2003, 103, 103, 103, 102], [101, 7592, 103, 103, 102, 103, 103], [101, 2088, 102], [101, 2023]]
    attend = [4, 5, None, 1]
    batch = PackedBatch.pack(ids, position_offset=2, attend_lengths=attend)
    with torch.inference_mode():
        ours = served.network(batch, served.attention)
    with torch.no_grad():
        for i, sequence in enumerate(ids):
            keep = attend[i] or len(sequence)
            mask = torch.tensor([[1] * keep + [0] * (len(sequence) - keep)])
            expected = reference(input_ids=torch.tensor([sequence]), attention_mask=mask).last_hidden_state[0]
            torch.testing.assert_close(ours[int(batch.cu_seqlens[i]):int(batch.cu_seqlens[i + 1])], expected,
                                       atol=1e-4, rtol=1e-4)
