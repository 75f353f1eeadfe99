"""The packed Qwen3 forward pass and its LM head against transformers, on tiny random
models with grouped-query attention."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from engine.heads import TaskHead, pool
from engine.models.qwen3 import Qwen3Encoder
from engine.weights import read_checkpoint
from tests.tiny_rotary import assert_per_sequence, load_served, parity_inputs, run_packed, tiny_qwen3

CPU = torch.device("cpu")

SHAPES = [
    # grouped-query attention, 2 query heads per kv head
    dict(layers=2, hidden=32, heads=4, kv_heads=2, head_dim=16, intermediate=48),
    # one kv head for 6 query heads, heads * head_dim != hidden, biases on the attention projections
    dict(layers=3, hidden=48, heads=6, kv_heads=1, head_dim=16, intermediate=64, theta=1_000_000.0,
         attention_bias=True),
    # plain multi-head attention
    dict(layers=2, hidden=32, heads=4, kv_heads=4, head_dim=8, intermediate=40),
    # sliding-window layers from the third on (window of 6 tokens, the token itself included)
    dict(layers=3, hidden=32, heads=4, kv_heads=2, head_dim=8, intermediate=40, use_sliding_window=True,
         sliding_window=6, max_window_layers=2),
]


def _shape_id(shape: dict) -> str:
    sliding = f"-SW{shape['sliding_window']}" if shape.get("use_sliding_window") else ""
    return f"L{shape['layers']}-H{shape['hidden']}-A{shape['heads']}-KV{shape['kv_heads']}{sliding}"


def _reference(folder, ids: list[list[int]], task: str = "base") -> list[np.ndarray]:
    import transformers

    model_class = getattr(transformers, {"base": "Qwen3Model", "causal_lm": "Qwen3ForCausalLM",
                                         "sequence_classification": "Qwen3ForSequenceClassification"}[task])
    model = model_class.from_pretrained(str(folder), attn_implementation="eager").eval()
    outputs = []
    with torch.no_grad():
        for sequence in ids:  # one at a time: no padding in the reference either
            output = model(input_ids=torch.tensor([sequence]), use_cache=False)
            if task == "base":
                outputs.append(output.last_hidden_state[0].numpy())
            else:  # the LM's logits at the last token; the classifier's already pooled there
                outputs.append(output.logits[0, -1].numpy() if task == "causal_lm" else output.logits[0].numpy())
    return outputs


@pytest.mark.parametrize("shape", SHAPES, ids=_shape_id)
def test_hidden_states_match_transformers(tmp_path, shape):
    folder = tiny_qwen3(tmp_path / "qwen3", **shape)
    spec, served = load_served(folder)
    ids = parity_inputs(folder, spec.max_length, 'causal', 5)
    assert max(map(len, ids)) == spec.max_length == 512 and min(map(len, ids)) == 1
    expected = _reference(folder, ids)
    ours, batch = run_packed(served, ids)  # everything in one packed batch
    assert_per_sequence(ours, batch, expected)
    for i in (0, len(ids) - 1):  # a batch of one
        alone, single = run_packed(served, [ids[i]])
        assert_per_sequence(alone, single, [expected[i]])


def test_attention_is_causal(tmp_path):
    """A token's hidden state does not depend on the tokens after it."""
    folder = tiny_qwen3(tmp_path / "qwen3", **SHAPES[0])
    _, served = load_served(folder)
    prefix = list(range(2000, 2010))
    ours, _ = run_packed(served, [prefix, prefix + list(range(3000, 3020))])
    np.testing.assert_allclose(ours[:10], ours[10:20], atol=1e-5)
    assert np.abs(ours[19] - ours[20]).max() > 1e-3


def test_legacy_config_keys(tmp_path):
    """Configs saved before transformers 5 carry rope_theta (and no layer_types)."""
    shape = SHAPES[1]
    folder = tiny_qwen3(tmp_path / "qwen3", **shape)
    ids = parity_inputs(folder, 512, 'causal', 5)[-6:]
    expected = _reference(folder, ids)
    config = json.loads((folder / "config.json").read_text())
    del config["rope_parameters"], config["layer_types"]
    config.update(rope_theta=shape["theta"], rope_scaling=None)
    (folder / "config.json").write_text(json.dumps(config))
    _, served = load_served(folder)
    ours, batch = run_packed(served, ids)
    assert_per_sequence(ours, batch, expected)


@pytest.mark.parametrize("tied", [True, False], ids=["tied", "lm_head"])
def test_causal_lm_head_matches_transformers(tmp_path, tied):
    """The LM head at each sequence's last token, as the Qwen3 reranker reads it."""
    folder = tiny_qwen3(tmp_path / "qwen3", task="causal_lm", seed=3, tie_word_embeddings=tied, **SHAPES[0])
    spec, served = load_served(folder)
    checkpoint = read_checkpoint(spec.weight_files)
    assert ("lm_head.weight" in checkpoint) is not tied
    head = TaskHead(Qwen3Encoder.head_weights(checkpoint, spec.config, "causal_lm")).eval()
    assert head.pooling == "lasttoken"
    ids = parity_inputs(folder, spec.max_length, 'causal', 5)[::3]
    hidden, batch = run_packed(served, ids)
    with torch.inference_mode():
        logits = head(pool(torch.from_numpy(hidden), batch, head.pooling)).numpy()
    np.testing.assert_allclose(logits, np.stack(_reference(folder, ids, "causal_lm")), atol=1e-4, rtol=1e-4)


def test_sequence_classification_head_matches_transformers(tmp_path):
    """Qwen3ForSequenceClassification (rerankers converted to a `score` head): last token."""
    folder = tiny_qwen3(tmp_path / "qwen3", task="sequence_classification", seed=6, num_labels=1, **SHAPES[1])
    spec, served = load_served(folder)
    head = TaskHead(Qwen3Encoder.head_weights(read_checkpoint(spec.weight_files), spec.config,
                                              "sequence_classification")).eval()
    ids = parity_inputs(folder, spec.max_length, 'causal', 5)[::3]
    hidden, batch = run_packed(served, ids)
    with torch.inference_mode():
        logits = head(pool(torch.from_numpy(hidden), batch, head.pooling)).numpy()
    expected = np.stack(_reference(folder, ids, "sequence_classification"))
    np.testing.assert_allclose(logits, expected, atol=1e-4, rtol=1e-4)
