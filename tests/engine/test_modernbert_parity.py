"""The packed ModernBERT forward pass and its heads against transformers, on tiny random
models whose inputs run well past the local attention window."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from engine.heads import TaskHead, pool
from engine.models.modernbert import ModernBertEncoder
from engine.weights import read_checkpoint
from tests.tiny_rotary import assert_per_sequence, load_served, parity_inputs, run_packed, MODERNBERT_CLASSES, tiny_modernbert

CPU = torch.device("cpu")

SHAPES = [
    # window 4 tokens each side, global layers 0 and 2
    dict(layers=3, hidden=32, heads=4, intermediate=48, local_attention=8, global_every=2),
    # biases everywhere, tanh GELU, window 8, global layers 0 and 3
    dict(layers=4, hidden=48, heads=6, intermediate=64, local_attention=16, global_every=3, attention_bias=True,
         mlp_bias=True, norm_bias=True, hidden_activation="gelu_pytorch_tanh", global_theta=160_000.0,
         local_theta=10_000.0),
    # window 2 tokens each side (odd local_attention rounds down), one local layer
    dict(layers=2, hidden=64, heads=2, intermediate=96, local_attention=5, global_every=3),
]


def _shape_id(shape: dict) -> str:
    return f"L{shape['layers']}-H{shape['hidden']}-A{shape['heads']}-W{shape['local_attention']}"


def _reference(folder, ids: list[list[int]], task: str = "base") -> list[np.ndarray]:
    import transformers

    model_class = getattr(transformers, MODERNBERT_CLASSES[task])
    model = model_class.from_pretrained(str(folder), attn_implementation="eager").eval()
    outputs = []
    with torch.no_grad():
        for sequence in ids:  # one at a time: no padding in the reference either
            output = model(input_ids=torch.tensor([sequence]))
            outputs.append((output.last_hidden_state if task == "base" else output.logits)[0].numpy())
    return outputs


@pytest.mark.parametrize("shape", SHAPES, ids=_shape_id)
def test_hidden_states_match_transformers(tmp_path, shape):
    folder = tiny_modernbert(tmp_path / "modernbert", **shape)
    spec, served = load_served(folder)
    assert spec.max_length == 512
    ids = parity_inputs(folder, spec.max_length, 'window', 3)
    assert max(map(len, ids)) == 512 and min(map(len, ids)) == 1
    expected = _reference(folder, ids)
    ours, batch = run_packed(served, ids)  # everything in one packed batch
    assert_per_sequence(ours, batch, expected)
    for i in (0, len(ids) - 1):  # a batch of one
        alone, single = run_packed(served, [ids[i]])
        assert_per_sequence(alone, single, [expected[i]])


def test_window_matters(tmp_path):
    """The local layers really are windowed: the same network with the window dropped from
    every attention call gives other hidden states for long inputs, the same for short ones."""
    folder = tiny_modernbert(tmp_path / "modernbert", **SHAPES[0])
    _, served = load_served(folder)

    def unwindowed(q, k, v, batch, causal=False, window=None):
        return served.attention(q, k, v, batch, causal=causal)

    ours, batch = run_packed(served, [list(range(1000, 1040)), list(range(1000, 1004))])
    with torch.inference_mode():
        everywhere = served.network(batch, unwindowed).numpy()
    assert np.abs(ours[:40] - everywhere[:40]).max() > 1e-3
    np.testing.assert_array_equal(ours[40:], everywhere[40:])


def test_legacy_config_keys(tmp_path):
    """Checkpoints saved before transformers 5 carry global_attn_every_n_layers and
    global/local_rope_theta instead of layer_types and rope_parameters."""
    shape = SHAPES[1]
    folder = tiny_modernbert(tmp_path / "modernbert", **shape)
    ids = parity_inputs(folder, 512, 'window', 3)[-8:]
    expected = _reference(folder, ids)
    config = json.loads((folder / "config.json").read_text())
    del config["layer_types"], config["rope_parameters"]
    config.update(global_attn_every_n_layers=shape["global_every"], global_rope_theta=shape["global_theta"],
                  local_rope_theta=shape["local_theta"])
    (folder / "config.json").write_text(json.dumps(config))
    _, served = load_served(folder)
    ours, batch = run_packed(served, ids)
    assert_per_sequence(ours, batch, expected)


HEADS = [
    ("sequence_classification", dict(num_labels=3, classifier_pooling="cls")),
    ("sequence_classification", dict(num_labels=1, classifier_pooling="mean", classifier_bias=True)),
    ("token_classification", dict(num_labels=5, classifier_activation="silu")),
    ("masked_lm", dict()),  # decoder tied to the token embeddings, so absent from the file
    ("masked_lm", dict(tie_word_embeddings=False, decoder_bias=False, norm_bias=True)),
]


@pytest.mark.parametrize("task,extra", HEADS, ids=lambda v: v if isinstance(v, str) else "-".join(map(str, v.values())))
def test_heads_match_transformers(tmp_path, task, extra):
    folder = tiny_modernbert(tmp_path / "modernbert", task=task, seed=4, **SHAPES[0], **extra)
    spec, served = load_served(folder)
    checkpoint = read_checkpoint(spec.weight_files)
    if task == "masked_lm" and extra.get("tie_word_embeddings", True):
        assert "decoder.weight" not in checkpoint
    head = TaskHead(ModernBertEncoder.head_weights(checkpoint, spec.config, task)).eval()
    ids = parity_inputs(folder, spec.max_length, 'window', 3)[::4]
    expected = _reference(folder, ids, task)
    hidden, batch = run_packed(served, ids)
    with torch.inference_mode():
        if task == "sequence_classification":
            logits = head(pool(torch.from_numpy(hidden), batch, head.pooling)).numpy()
            np.testing.assert_allclose(logits, np.stack([e for e in expected]), atol=1e-4, rtol=1e-4)
        else:
            assert_per_sequence(head(torch.from_numpy(hidden)).numpy(), batch, expected)
