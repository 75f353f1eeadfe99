"""Tiny random DistilBERT, MPNet and (XLM-)RoBERTa models saved the way transformers saves
them (save_pretrained: task prefixes, tied weights left out), and the parity checks their
tests share: the packed forward pass and the task heads against transformers, one
sequence at a time."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from engine import spec_from_folder
from engine.attention import select_backend
from engine.batch import PackedBatch
from engine.heads import TaskHead, pool
from engine.served import ServedModel
from engine.tokenize import TextTokenizer
from engine.weights import read_checkpoint
from tests.texts import varied_texts
from tests.tiny import copy_tokenizer

CPU = torch.device("cpu")
TASK_SUFFIX = {"base": "Model", "sequence_classification": "ForSequenceClassification",
               "token_classification": "ForTokenClassification", "masked_lm": "ForMaskedLM"}


def _save(model: torch.nn.Module, folder: Path) -> Path:
    # Random init leaves LayerNorm at identity and biases at zero; perturb them so a
    # mis-mapped parameter is noticed.
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("relative_attention_bias.weight"):
                parameter.normal_(0.0, 0.5)  # init's 0.02 would hide a wrong bucket
            elif "norm" in name.lower() or name.endswith("bias"):
                parameter.add_(torch.randn_like(parameter) * 0.1)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    copy_tokenizer(folder)
    return folder


def _build(family: str, config, task: str, seed: int, folder: Path) -> Path:
    import transformers

    torch.manual_seed(seed)
    model_class = getattr(transformers, family + TASK_SUFFIX[task])
    return _save(model_class(config).eval(), folder)


def tiny_distilbert(folder: Path, layers: int = 2, hidden: int = 32, heads: int = 4, intermediate: int = 64,
                    max_positions: int = 66, activation: str = "gelu", sinusoidal: bool = False,
                    task: str = "base", num_labels: int = 3, seed: int = 0) -> Path:
    from transformers import DistilBertConfig

    config = DistilBertConfig(vocab_size=30522, dim=hidden, n_layers=layers, n_heads=heads, hidden_dim=intermediate,
                              max_position_embeddings=max_positions, activation=activation,
                              sinusoidal_pos_embds=sinusoidal, num_labels=num_labels)
    return _build("DistilBert", config, task, seed, folder)


def tiny_mpnet(folder: Path, layers: int = 2, hidden: int = 32, heads: int = 4, intermediate: int = 64,
               max_positions: int = 66, activation: str = "gelu", task: str = "base", num_labels: int = 3,
               tie: bool = True, seed: int = 0) -> Path:
    from transformers import MPNetConfig

    config = MPNetConfig(vocab_size=30522, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                         intermediate_size=intermediate, max_position_embeddings=max_positions, hidden_act=activation,
                         num_labels=num_labels, tie_word_embeddings=tie)
    return _build("MPNet", config, task, seed, folder)


def tiny_roberta(folder: Path, family: str = "XLMRoberta", layers: int = 2, hidden: int = 32, heads: int = 4,
                 intermediate: int = 64, max_positions: int = 66, activation: str = "gelu", pad_token_id: int = 1,
                 type_vocab_size: int = 1, eps: float = 1e-5, task: str = "base", num_labels: int = 3,
                 tie: bool = True, seed: int = 0) -> Path:
    """XLMRoberta, Roberta or Camembert (one implementation serves the three)."""
    import transformers

    config = getattr(transformers, family + "Config")(
        vocab_size=30522, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
        intermediate_size=intermediate, max_position_embeddings=max_positions, hidden_act=activation,
        pad_token_id=pad_token_id, type_vocab_size=type_vocab_size, layer_norm_eps=eps, num_labels=num_labels,
        tie_word_embeddings=tie)
    return _build(family, config, task, seed, folder)


def load(folder: Path) -> ServedModel:
    return ServedModel.load(spec_from_folder("tiny", folder), CPU, torch.float32, select_backend(CPU))


def input_batches(folder: Path, max_length: int) -> dict[str, list[list[int]]]:
    """Token id batches that stress packing: mixed lengths in arrival order, the same sorted
    (equal-length runs), a batch of one, one-token sequences, all at the maximum length."""
    tokenizer = TextTokenizer(folder, max_length)
    mixed = [t.ids for t in tokenizer.encode(varied_texts(36, seed=3) + ["one"])]
    longest = [t.ids for t in tokenizer.encode(varied_texts(120, seed=11)) if len(t.ids) == max_length]
    assert len(longest) >= 3, "the texts should reach the maximum length"
    return {
        "mixed": mixed,
        "sorted": sorted(mixed, key=len),
        "one": [mixed[-2]],
        "one-token": [[2023], [2023], [7592], mixed[5]],
        "max-length": longest[:3] + [mixed[0]],
    }


def packed_hidden(served: ServedModel, ids: list[list[int]]) -> tuple[PackedBatch, torch.Tensor]:
    batch = PackedBatch.pack(ids, position_offset=served.network.position_offset)
    with torch.inference_mode():
        return batch, served.network(batch, served.attention)


def assert_hidden_parity(folder: Path, family: str, max_length: int) -> None:
    """Our packed last hidden state against transformers' base model, every batch shape."""
    import transformers

    served = load(folder)
    reference = getattr(transformers, family + "Model").from_pretrained(str(folder)).eval()
    expected: dict[tuple[int, ...], np.ndarray] = {}
    for name, ids in input_batches(folder, max_length).items():
        batch, ours = packed_hidden(served, ids)
        for i, sequence in enumerate(ids):
            key = tuple(sequence)
            if key not in expected:  # one at a time: no padding in the reference either
                with torch.no_grad():
                    expected[key] = reference(input_ids=torch.tensor([sequence])).last_hidden_state[0].numpy()
            start, end = int(batch.cu_seqlens[i]), int(batch.cu_seqlens[i + 1])
            np.testing.assert_allclose(ours[start:end].numpy(), expected[key], atol=1e-4, rtol=1e-4,
                                       err_msg=f"batch {name!r}, sequence {i} (length {len(sequence)})")


def assert_head_parity(folder: Path, family: str, task: str, max_length: int) -> None:
    """TaskHead(Encoder.head_weights(...)) on our hidden states against the transformers
    task model's logits: pooled for sequence classification, per token otherwise."""
    import transformers

    served = load(folder)
    spec = served.spec
    encoder = type(served.network)
    head = TaskHead(encoder.head_weights(read_checkpoint(spec.weight_files), spec.config, task)).eval()
    reference = getattr(transformers, family + TASK_SUFFIX[task]).from_pretrained(str(folder)).eval()
    ids = input_batches(folder, max_length)["mixed"][:12]
    batch, hidden = packed_hidden(served, ids)
    with torch.inference_mode():
        ours = head(pool(hidden, batch, head.pooling) if task == "sequence_classification" else hidden).numpy()
    with torch.no_grad():
        for i, sequence in enumerate(ids):
            expected = reference(input_ids=torch.tensor([sequence])).logits[0].numpy()
            got = ours[i] if task == "sequence_classification" else ours[int(batch.cu_seqlens[i]):int(batch.cu_seqlens[i + 1])]
            np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4, err_msg=f"sequence {i}")


def tiny_deberta(folder: Path, task: str = "base", num_labels: int = 3, seed: int = 0, **config) -> Path:
    """A DeBERTa-v2/v3 of any shape (`config`: DebertaV2Config fields over small defaults).
    Weights are drawn wider than init's 0.02 so attention is far from uniform and the
    position terms move the scores; the relative table too, which LayerNorm would
    otherwise hide when norm_rel_ebd is "none"."""
    import transformers
    from transformers import DebertaV2Config

    fields = dict(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                  intermediate_size=64, max_position_embeddings=512, initializer_range=0.15)
    fields.update(config)
    torch.manual_seed(seed)
    model_config = DebertaV2Config(num_labels=num_labels, **fields)
    model = getattr(transformers, "DebertaV2" + TASK_SUFFIX[task])(model_config).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("rel_embeddings.weight"):
                parameter.normal_(0.0, 1.0)
    return _save(model, folder)
