"""The packed BERT forward pass against transformers' BertModel, on tiny random models."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine import spec_from_folder
from engine.attention import select_backend
from engine.batch import PackedBatch
from engine.served import ServedModel
from engine.tokenize import TextTokenizer
from tests.texts import varied_texts
from tests.tiny import tiny_bert

SHAPES = [
    dict(layers=1, hidden=32, heads=4, intermediate=64),
    dict(layers=3, hidden=48, heads=6, intermediate=96, activation="gelu_new"),
    dict(layers=2, hidden=64, heads=2, intermediate=128, activation="relu"),
]


def _reference_hidden(folder, ids: list[list[int]]) -> list[np.ndarray]:
    from transformers import BertModel

    model = BertModel.from_pretrained(str(folder), attn_implementation="eager").eval()
    outputs = []
    with torch.no_grad():
        for sequence in ids:  # one at a time: no padding in the reference either
            hidden = model(input_ids=torch.tensor([sequence])).last_hidden_state[0]
            outputs.append(hidden.numpy())
    return outputs


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"L{s['layers']}-H{s['hidden']}-A{s['heads']}")
def test_hidden_states_match_transformers(tmp_path, shape):
    folder = tiny_bert(tmp_path / "bert", **shape)
    spec = spec_from_folder("tiny", folder)
    served = ServedModel.load(spec, torch.device("cpu"), torch.float32, select_backend(torch.device("cpu")))
    texts = varied_texts(40, seed=3) + ["one"]
    tokens = TextTokenizer(folder, spec.max_length).encode(texts)
    ids = [t.ids for t in tokens]
    batch = PackedBatch.pack(ids, [t.type_ids for t in tokens])
    with torch.inference_mode():
        ours = served.network(batch, served.attention).numpy()
    for i, expected in enumerate(_reference_hidden(folder, ids)):
        start, end = int(batch.cu_seqlens[i]), int(batch.cu_seqlens[i + 1])
        np.testing.assert_allclose(ours[start:end], expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("rename", [
    lambda k: "bert." + k,
    lambda k: k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"),
], ids=["bert-prefix", "gamma-beta"])
def test_checkpoint_name_variants_load_the_same_weights(tmp_path, rename):
    plain = tiny_bert(tmp_path / "plain", seed=5)
    renamed = tiny_bert(tmp_path / "renamed", seed=5, rename=rename)
    cpu = torch.device("cpu")
    texts = ["packed batches", "no padding anywhere in the linear layers"]
    outputs = []
    for folder in (plain, renamed):
        spec = spec_from_folder("tiny", folder)
        served = ServedModel.load(spec, cpu, torch.float32, select_backend(cpu))
        outputs.append(served.embed(TextTokenizer(folder, spec.max_length).encode(texts)))
    np.testing.assert_array_equal(outputs[0], outputs[1])
