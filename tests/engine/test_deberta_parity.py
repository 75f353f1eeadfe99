"""The packed DeBERTa-v2/v3 forward pass (disentangled attention, log-bucketed relative
positions, the v2 convolution) and its classification heads against transformers, on tiny
random models of v3 and v2 shapes, served the way the engine serves them on the CPU
(prepacked oneDNN linears)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from engine.batch import PackedBatch
from engine.errors import ModelLoadError
from engine.linear import PrepackedLinear
from engine.models import find_architecture
from engine.models.deberta import DebertaV2Encoder, relative_positions
from engine.tokenize import TextTokenizer
from tests.engine.heads_helpers import with_engine
from tests.texts import varied_texts
from tests.tiny_encoders import load, tiny_deberta

ATOL = 1e-4

V3 = dict(relative_attention=True, position_buckets=256, max_relative_positions=-1, pos_att_type=["p2c", "c2p"],
          norm_rel_ebd="layer_norm", share_att_key=True, position_biased_input=False, type_vocab_size=0)

# name -> (DebertaV2Config fields, longest sequence in the test batches)
SHAPES = {
    # deberta-v3-{xsmall,small,base,large}: sequences up to 320 tokens reach past the 256
    # buckets, and past 128 tokens apart, where the log-spaced buckets start
    "v3": (V3, 320),
    # v3 with few buckets: offsets past max_relative_positions land on the clamped table ends
    "v3-few-buckets": (dict(V3, position_buckets=16, max_relative_positions=40, num_hidden_layers=3, hidden_size=48,
                            num_attention_heads=6, intermediate_size=96), 100),
    # deberta-v2-xlarge-like: separate position projections, the convolution, "p2c|c2p" as a
    # string (rewritten into config.json below, as the published configs write it)
    "v2-xlarge": (dict(V3, share_att_key=False, conv_kernel_size=3, conv_act="gelu"), 320),
    # no buckets (raw offsets clamped to +-48), c2p only, absolute positions and token types
    # in the input, an embedding projection (24 -> 32), a grouped tanh convolution
    "v2-unbucketed": (dict(relative_attention=True, position_buckets=-1, max_relative_positions=48,
                           pos_att_type=["c2p"], share_att_key=False, norm_rel_ebd="none",
                           position_biased_input=True, type_vocab_size=2, embedding_size=24, conv_kernel_size=5,
                           conv_groups=4, hidden_act="gelu_new"), 120),
    # no relative attention: the scale still counts the position terms pos_att_type names
    "no-relative": (dict(relative_attention=False, pos_att_type=["p2c", "c2p"], position_biased_input=True,
                         type_vocab_size=2), 64),
}


def build(folder, name: str, task: str = "base", seed: int = 0):
    fields, max_length = SHAPES[name]
    folder = tiny_deberta(folder, task=task, seed=seed, **fields)
    if name == "v2-xlarge":
        config = json.loads((folder / "config.json").read_text())
        config["pos_att_type"] = "p2c|c2p"
        (folder / "config.json").write_text(json.dumps(config))
    return folder, max_length


def input_batches(folder, max_length: int) -> dict[str, list]:
    """Tokenized batches that stress packing: mixed lengths in arrival order, the same
    sorted (equal-length runs), several at the maximum length, a batch of one, one-token
    sequences, and (query, passage) pairs, whose second segment has token type 1."""
    tokenizer = TextTokenizer(folder, max_length)
    mixed = tokenizer.encode(varied_texts(30, seed=3) + ["one"])
    longest = [t for t in tokenizer.encode(varied_texts(120, seed=11)) if len(t.ids) == max_length]
    assert len(longest) >= 3, "the texts should reach the maximum length"
    texts = varied_texts(12, seed=5)
    pairs = tokenizer.encode([(texts[i], texts[-i - 1]) for i in range(6)])
    one_token = [type(t)([t.ids[1]], [0]) for t in mixed[20:23]]
    return {"mixed": mixed, "sorted": sorted(mixed, key=lambda t: len(t.ids)), "max-length": longest[:3] + mixed[:2],
            "one": [mixed[-2]], "one-token": one_token + [mixed[5]], "pairs": pairs}


def reference_outputs(model, items, field: str) -> list[np.ndarray]:
    """transformers, one sequence at a time: no padding in the reference either."""
    with torch.no_grad():
        outputs = [model(input_ids=torch.tensor([t.ids]), token_type_ids=torch.tensor([t.type_ids])) for t in items]
    return [getattr(output, field)[0].numpy() for output in outputs]


def max_error(ours: list[np.ndarray], expected: list[np.ndarray]) -> float:
    return max(float(np.abs(a - b).max()) for a, b in zip(ours, expected, strict=True))


def test_registry_serves_deberta_v2_and_leaves_v1_to_the_fallback():
    for architecture in ("DebertaV2Model", "DebertaV2ForSequenceClassification", "DebertaV2ForTokenClassification"):
        assert find_architecture("deberta-v2", (architecture,)) is DebertaV2Encoder
    assert find_architecture("deberta-v2", ()) is DebertaV2Encoder
    assert find_architecture("deberta", ("DebertaForSequenceClassification",)) is None


@pytest.mark.parametrize("buckets, max_position", [(256, 512), (16, 40), (-1, 48)])
def test_relative_positions_match_transformers(buckets, max_position):
    from transformers.models.deberta_v2.modeling_deberta_v2 import build_relative_position

    states = torch.zeros(1, 700, 1)
    expected = build_relative_position(states, states, bucket_size=buckets, max_position=max_position)[0]
    torch.testing.assert_close(relative_positions(700, buckets, max_position, "cpu"), expected, rtol=0, atol=0)


@pytest.mark.parametrize("name", SHAPES)
def test_hidden_states_match_transformers(tmp_path, name):
    from transformers import DebertaV2Model

    folder, max_length = build(tmp_path / name, name)
    served = load(folder)
    network = served.network
    assert isinstance(network.layers[0].qkv, PrepackedLinear)  # the CPU path the engine serves
    if name == "v2-xlarge":
        assert isinstance(network.layers[0].pos_key, PrepackedLinear) and network.conv is not None
    if name == "v2-unbucketed":
        assert isinstance(network.embed_proj, PrepackedLinear) and network.layers[0].pos_query is None
    reference = DebertaV2Model.from_pretrained(str(folder)).eval()
    expected: dict[tuple, np.ndarray] = {}
    worst = 0.0
    for batch_name, items in input_batches(folder, max_length).items():
        batch = PackedBatch.pack([t.ids for t in items], [t.type_ids for t in items],
                                 position_offset=network.position_offset)
        with torch.inference_mode():
            hidden = network(batch, served.attention).numpy()
        missing = [t for t in items if (tuple(t.ids), tuple(t.type_ids)) not in expected]
        for t, output in zip(missing, reference_outputs(reference, missing, "last_hidden_state")):
            expected[tuple(t.ids), tuple(t.type_ids)] = output
        ours = [hidden[int(batch.cu_seqlens[i]):int(batch.cu_seqlens[i + 1])] for i in range(len(items))]
        error = max_error(ours, [expected[tuple(t.ids), tuple(t.type_ids)] for t in items])
        assert error < ATOL, f"batch {batch_name!r}: max abs error {error:.2e}"
        worst = max(worst, error)
    print(f"deberta {name}: hidden states max abs error {worst:.2e}")


@pytest.mark.parametrize("name", ["v3", "v2-xlarge", "v2-unbucketed"])
def test_sequence_classification_logits_match_transformers(tmp_path, name):
    from transformers import DebertaV2ForSequenceClassification

    folder, max_length = build(tmp_path / name, name, task="sequence_classification", seed=1)
    served = load(folder)
    assert served.spec.task == "classify" and isinstance(served.head.dense, PrepackedLinear)
    reference = DebertaV2ForSequenceClassification.from_pretrained(str(folder)).eval()
    batches = input_batches(folder, max_length)
    items = batches["mixed"] + batches["max-length"] + batches["pairs"]
    error = max_error(list(served.sequence_logits(items)), reference_outputs(reference, items, "logits"))
    assert error < ATOL, f"max abs error {error:.2e}"
    print(f"deberta {name}: sequence-classification logits max abs error {error:.2e}")


@pytest.mark.parametrize("name", ["v3", "v2-xlarge", "v2-unbucketed"])
def test_token_classification_logits_match_transformers(tmp_path, name):
    from transformers import DebertaV2ForTokenClassification

    folder, max_length = build(tmp_path / name, name, task="token_classification", seed=2)
    served = load(folder)
    assert served.spec.task == "extract" and isinstance(served.head.out, PrepackedLinear)
    reference = DebertaV2ForTokenClassification.from_pretrained(str(folder)).eval()
    batches = input_batches(folder, max_length)
    items = batches["mixed"] + batches["max-length"]
    error = max_error(served.token_logits(items), reference_outputs(reference, items, "logits"))
    assert error < ATOL, f"max abs error {error:.2e}"
    print(f"deberta {name}: token-classification logits max abs error {error:.2e}")


async def test_engine_classifies_like_transformers(tmp_path):
    """The whole path: the engine's tokenization, scheduling and softmax over the v3 head."""
    from transformers import DebertaV2ForSequenceClassification

    folder, _ = build(tmp_path / "v3", "v3", task="sequence_classification", seed=3)
    texts = varied_texts(24, seed=4)
    result = await with_engine(folder, lambda engine, name: engine.classify(name, texts))
    reference = DebertaV2ForSequenceClassification.from_pretrained(str(folder)).eval()
    items = TextTokenizer(folder, 512).encode(texts)
    logits = np.stack(reference_outputs(reference, items, "logits"))
    expected = np.exp(logits - logits.max(-1, keepdims=True))
    expected /= expected.sum(-1, keepdims=True)
    order = [reference.config.label2id[label] for label in result.labels]
    error = float(np.abs(np.asarray(result.probabilities) - expected[:, order]).max())
    assert error < ATOL, f"max abs error {error:.2e}"
    print(f"deberta v3: engine.classify probabilities max abs error {error:.2e}")


@pytest.mark.parametrize("name", ["v3", "v2-unbucketed"])
def test_attend_lengths_mask_like_an_attention_mask(tmp_path, name):
    """ColBERT query expansion: trailing tokens are computed but never attended to, as
    transformers does with a 0 in the attention mask (their embeddings zeroed, a pair
    counts only when both tokens are attended, the convolution masked)."""
    from transformers import DebertaV2Model

    folder, _ = build(tmp_path / name, name, seed=4)
    served = load(folder)
    reference = DebertaV2Model.from_pretrained(str(folder)).eval()
    ids = [[101, 2023, 2003, 103, 103, 103, 102], [101, 7592, 103, 103, 102, 103, 103], [101, 2088, 102], [101, 2023]]
    attend = [4, 5, None, 1]
    batch = PackedBatch.pack(ids, attend_lengths=attend)
    with torch.inference_mode():
        ours = served.network(batch, served.attention)
    with torch.no_grad():
        for i, sequence in enumerate(ids):
            keep = attend[i] or len(sequence)
            mask = torch.tensor([[1] * keep + [0] * (len(sequence) - keep)])
            expected = reference(input_ids=torch.tensor([sequence]), attention_mask=mask).last_hidden_state[0]
            torch.testing.assert_close(ours[int(batch.cu_seqlens[i]):int(batch.cu_seqlens[i + 1])], expected,
                                       atol=ATOL, rtol=ATOL)


@pytest.mark.parametrize("change, message", [
    ({"conv_kernel_size": 4}, "conv_kernel_size must be odd"),
    ({"hidden_act": "mish"}, "unsupported hidden_act 'mish'"),
    ({"attention_head_size": 4}, "attention_head_size"),
])
def test_unsupported_configs_are_refused_at_load(tmp_path, change, message):
    folder, _ = build(tmp_path / "m", "v2-xlarge")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **change}))
    with pytest.raises(ModelLoadError, match=message):
        load(folder)
