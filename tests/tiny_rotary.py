"""Tiny random models of the rotary-position families (ModernBERT, Qwen3), built with
transformers and saved as real model folders with the MiniLM tokenizer (vocab 30522).

Head models are written by `save_pretrained`, which leaves tied weights out of the
checkpoint exactly as real transformers-5 checkpoints do; base models go through
`tests.tiny.save_model` (every tensor written)."""

from __future__ import annotations

from pathlib import Path

import torch

from tests.tiny import copy_tokenizer, save_model

MODERNBERT_CLASSES = {
    "base": "ModernBertModel",
    "sequence_classification": "ModernBertForSequenceClassification",
    "token_classification": "ModernBertForTokenClassification",
    "masked_lm": "ModernBertForMaskedLM",
}


# `init` is the weights' standard deviation. At transformers' 0.02 the attention logits of
# a tiny model are near zero, attention is near uniform, and a wrong rotary base or window
# would hide under the tolerance; 0.3 makes attention depend on positions.


def _perturb(model: torch.nn.Module) -> None:
    """Random init leaves norms at one and biases at zero: move them, so that a mis-mapped
    (or unmapped) norm or bias changes the output."""
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "norm" in name or name.endswith("bias"):
                parameter.add_(torch.randn_like(parameter) * 0.1)


def _save(model: torch.nn.Module, folder: Path, task: str) -> Path:
    if task == "base":
        return save_model(model, folder)
    model.save_pretrained(folder)
    copy_tokenizer(folder)
    return folder


def tiny_modernbert(folder: Path, task: str = "base", layers: int = 3, hidden: int = 32, heads: int = 4,
                    intermediate: int = 48, local_attention: int = 8, global_every: int = 2,
                    global_theta: float = 1000.0, local_theta: float = 50.0, init: float = 0.3, seed: int = 0,
                    **extra) -> Path:
    import transformers
    from transformers import ModernBertConfig

    torch.manual_seed(seed)
    config = ModernBertConfig(
        vocab_size=30522, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
        intermediate_size=intermediate, local_attention=local_attention, global_attn_every_n_layers=global_every,
        global_rope_theta=global_theta, local_rope_theta=local_theta, max_position_embeddings=512,
        initializer_range=init,
        pad_token_id=0, cls_token_id=101, sep_token_id=102, bos_token_id=101, eos_token_id=102,
        architectures=[MODERNBERT_CLASSES[task]], **extra)
    model = getattr(transformers, MODERNBERT_CLASSES[task])(config).eval()
    _perturb(model)
    return _save(model, folder, task)


def tiny_qwen3(folder: Path, task: str = "base", layers: int = 2, hidden: int = 32, heads: int = 4,
               kv_heads: int = 2, head_dim: int = 16, intermediate: int = 48, theta: float = 1000.0,
               init: float = 0.3, seed: int = 0, **extra) -> Path:
    import transformers
    from transformers import Qwen3Config

    torch.manual_seed(seed)
    name = {"base": "Qwen3Model", "causal_lm": "Qwen3ForCausalLM",
            "sequence_classification": "Qwen3ForSequenceClassification"}[task]
    config = Qwen3Config(
        vocab_size=30522, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
        num_key_value_heads=kv_heads, head_dim=head_dim, intermediate_size=intermediate, rope_theta=theta,
        max_position_embeddings=512, initializer_range=init, architectures=[name], **extra)
    model = getattr(transformers, name)(config).eval()
    _perturb(model)
    return _save(model, folder, task)


def load_served(folder: Path):
    """(spec, ServedModel) for a tiny model folder, float32 on the CPU."""
    from engine import spec_from_folder
    from engine.attention import select_backend
    from engine.served import ServedModel

    spec = spec_from_folder("tiny", folder)
    cpu = torch.device("cpu")
    return spec, ServedModel.load(spec, cpu, torch.float32, select_backend(cpu))


def parity_inputs(folder: Path, max_length: int, word: str, seed: int) -> list[list[int]]:
    """Varied texts (1 to 512 tokens, the longest truncated), raw one-token inputs, and a
    max-length run of random ids."""
    from engine.tokenize import TextTokenizer
    from tests.texts import varied_texts

    texts = varied_texts(32, seed=seed) + ["one", " ".join([word] * 700)]
    ids = [t.ids for t in TextTokenizer(folder, max_length).encode(texts)]
    generator = torch.Generator().manual_seed(seed - 2)
    ids += [[7], [2054], torch.randint(1000, 30000, (max_length,), generator=generator).tolist()]
    return ids


def run_packed(served, ids: list[list[int]]):
    """(hidden states as numpy [T, H], the PackedBatch) for `ids` in one packed batch."""
    from engine.batch import PackedBatch

    batch = PackedBatch.pack(ids, position_offset=served.network.position_offset)
    with torch.inference_mode():
        return served.network(batch, served.attention).numpy(), batch


def assert_per_sequence(ours, batch, expected, atol: float = 1e-4) -> None:
    """Each packed sequence's rows of `ours` against its reference array."""
    import numpy as np

    assert ours.shape[0] == batch.num_tokens
    for i, reference in enumerate(expected):
        start, end = int(batch.cu_seqlens[i]), int(batch.cu_seqlens[i + 1])
        np.testing.assert_allclose(ours[start:end], reference, atol=atol, rtol=atol, err_msg=f"sequence {i}")
