"""BERT encoder over packed, unpadded sequences (post-LayerNorm, absolute positions).

Checkpoint names are mapped onto a fused QKV projection at load time."""

from __future__ import annotations

import torch
from torch import nn

from ..attention import AttentionFn
from ..batch import PackedBatch
from ..heads import HeadWeights
from ..linear import LinearAct
from ..weights import pick_renamed, strip_prefix

# BertLayer's parameters -> checkpoint names within one layer; q, k and v are fused.
BERT_LAYER_NAMES = {
    "q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
    "attn_out": "attention.output.dense", "attn_norm": "attention.output.LayerNorm",
    "up": "intermediate.dense", "down": "output.dense", "mlp_norm": "output.LayerNorm",
}


def layer_weights(w: dict[str, torch.Tensor], source: str, target: str, names: dict[str, str]) -> dict[str, torch.Tensor]:
    """One post-LN layer's checkpoint tensors under BertLayer's names, with Q, K, V fused.
    BERT, DistilBERT and MPNet share the layer and differ only in `names`."""
    mapped = {}
    for kind in ("weight", "bias"):
        mapped[f"{target}qkv.{kind}"] = torch.cat([w[f"{source}{names[p]}.{kind}"] for p in ("q", "k", "v")])
        for part in ("attn_out", "attn_norm", "up", "down", "mlp_norm"):
            mapped[f"{target}{part}.{kind}"] = w[f"{source}{names[part]}.{kind}"]
    return mapped


class BertLayer(nn.Module):
    def __init__(self, hidden: int, heads: int, intermediate: int, eps: float, activation: str):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.attn_out = nn.Linear(hidden, hidden)
        self.attn_norm = nn.LayerNorm(hidden, eps=eps)
        self.up = LinearAct(hidden, intermediate, activation)
        self.down = nn.Linear(intermediate, hidden)
        self.mlp_norm = nn.LayerNorm(hidden, eps=eps)

    def forward(self, x: torch.Tensor, batch: PackedBatch, attention: AttentionFn) -> torch.Tensor:
        tokens, hidden = x.shape
        q, k, v = self.qkv(x).view(tokens, 3, self.heads, hidden // self.heads).unbind(1)
        context = attention(q, k, v, batch, False).reshape(tokens, hidden)
        x = self.attn_norm(x + self.attn_out(context))
        return self.mlp_norm(x + self.down(self.up(x)))


class BertEncoder(nn.Module):
    """Returns the last hidden state, [total_tokens, hidden]."""

    position_offset = 0  # position ids start at 0

    def __init__(self, config: dict):
        super().__init__()
        hidden = config["hidden_size"]
        eps = config.get("layer_norm_eps", 1e-12)
        self.word_embeddings = nn.Embedding(config["vocab_size"], hidden)
        self.position_embeddings = nn.Embedding(config["max_position_embeddings"], hidden)
        self.token_type_embeddings = nn.Embedding(config.get("type_vocab_size", 2), hidden)
        self.embed_norm = nn.LayerNorm(hidden, eps=eps)
        self.layers = nn.ModuleList(
            BertLayer(hidden, config["num_attention_heads"], config["intermediate_size"], eps, config.get("hidden_act", "gelu"))
            for _ in range(config["num_hidden_layers"])
        )

    def forward(self, batch: PackedBatch, attention: AttentionFn) -> torch.Tensor:
        x = (
            self.word_embeddings(batch.input_ids)
            + self.position_embeddings(batch.position_ids)
            + self.token_type_embeddings(batch.token_type_ids)
        )
        x = self.embed_norm(x)
        for layer in self.layers:
            x = layer(x, batch, attention)
        return x

    @staticmethod
    def map_weights(checkpoint: dict[str, torch.Tensor], config: dict) -> dict[str, torch.Tensor]:
        """HF BertModel names -> this module's names, with Q, K and V fused."""
        w = strip_prefix(checkpoint, ("bert.",))
        mapped = {
            "word_embeddings.weight": w["embeddings.word_embeddings.weight"],
            "position_embeddings.weight": w["embeddings.position_embeddings.weight"],
            "token_type_embeddings.weight": w["embeddings.token_type_embeddings.weight"],
            "embed_norm.weight": w["embeddings.LayerNorm.weight"],
            "embed_norm.bias": w["embeddings.LayerNorm.bias"],
        }
        for i in range(config["num_hidden_layers"]):
            mapped.update(layer_weights(w, f"encoder.layer.{i}.", f"layers.{i}.", BERT_LAYER_NAMES))
        return mapped

    @staticmethod
    def head_weights(checkpoint: dict[str, torch.Tensor], config: dict, task: str) -> HeadWeights:
        """The task head as `dense.*` / `norm.*` / `out.*`. Sequence classification reads
        the [CLS] token through the tanh pooler; the MLM decoder is tied to the embeddings."""
        w = strip_prefix(checkpoint, ("bert.",))
        eps = config.get("layer_norm_eps", 1e-12)
        if task == "sequence_classification":
            return HeadWeights(pick_renamed(w, {"pooler.dense": "dense", "classifier": "out"}), "tanh", "cls", eps)
        if task == "token_classification":
            return HeadWeights(pick_renamed(w, {"classifier": "out"}), "identity", "cls", eps)
        if task == "masked_lm":
            head = pick_renamed(w, {"cls.predictions.transform.dense": "dense",
                                    "cls.predictions.transform.LayerNorm": "norm"})
            head["out.weight"] = w.get("cls.predictions.decoder.weight", w["embeddings.word_embeddings.weight"])
            # untied checkpoints keep the decoder's own bias, which is the one the forward uses
            head["out.bias"] = w.get("cls.predictions.decoder.bias", w.get("cls.predictions.bias"))
            return HeadWeights(head, config.get("hidden_act", "gelu"), "cls", eps)
        raise KeyError(f"BERT has no {task} head")

