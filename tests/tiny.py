"""Tiny random models built with transformers and saved as real model folders (config,
safetensors, the MiniLM tokenizer), so every architecture is tested without a model hub."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

from engine import default_model_spec

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


def copy_tokenizer(folder: Path) -> None:
    source = default_model_spec().path
    for name in TOKENIZER_FILES:
        shutil.copy(source / name, folder / name)


def save_model(model: torch.nn.Module, folder: Path, rename=None) -> Path:
    """config.json + model.safetensors (+ tokenizer). `rename` maps checkpoint names, to
    mimic old or prefixed checkpoints."""
    folder.mkdir(parents=True, exist_ok=True)
    if rename is None:
        model.save_pretrained(folder)  # drops tied weights (MLM decoders), as published checkpoints do
    else:
        model.config.save_pretrained(folder)
        state = {rename(k): v.contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(folder / "model.safetensors"))
    copy_tokenizer(folder)
    return folder


def write_sentence_transformers_config(folder: Path, pooling: str = "mean", normalize: bool = True,
                                       max_seq_length: int | None = None) -> None:
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "1_Pooling").mkdir(exist_ok=True)
    hidden = json.loads((folder / "config.json").read_text())["hidden_size"]
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({
        "word_embedding_dimension": hidden,
        "pooling_mode_cls_token": pooling == "cls",
        "pooling_mode_mean_tokens": pooling == "mean",
        "pooling_mode_max_tokens": pooling == "max",
        "pooling_mode_lasttoken": pooling == "lasttoken",
    }))
    if max_seq_length:
        (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": max_seq_length}))


def tiny_bert(folder: Path, layers: int = 2, hidden: int = 32, heads: int = 4, intermediate: int = 64,
              max_positions: int = 128, activation: str = "gelu", seed: int = 0, rename=None) -> Path:
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=30522, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                        intermediate_size=intermediate, max_position_embeddings=max_positions,
                        hidden_act=activation, architectures=["BertModel"])
    model = BertModel(config).eval()
    # Random init leaves LayerNorm at identity and biases at zero; perturb them so the
    # test notices a mis-mapped parameter.
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "LayerNorm" in name or name.endswith("bias"):
                parameter.add_(torch.randn_like(parameter) * 0.1)
    return save_model(model, folder, rename)
