"""ModernBERT encoder over packed, unpadded sequences (gte-modernbert, modernbert-embed,
ModernColBERT).

Pre-LayerNorm, no biases by default, a fused Wqkv in the checkpoint, a GeGLU MLP, rotary
positions with one base for global layers and another for local ones, and alternating
attention: every `global_attn_every_n_layers`-th layer (counting from 0) attends globally,
the others within `local_attention // 2` tokens on either side (inclusive)."""

from __future__ import annotations

import torch
from torch import nn

from ..attention import AttentionFn
from ..batch import PackedBatch
from ..heads import ACTIVATIONS, HeadWeights
from ..rotary import Rotary, apply_rotary
from ..weights import pick_renamed, strip_prefix

GLOBAL, LOCAL = "full_attention", "sliding_attention"
# Checkpoints saved before transformers 5 name the rotary bases with these keys.
LEGACY_THETA = {GLOBAL: ("global_rope_theta", 160_000.0), LOCAL: ("local_rope_theta", 10_000.0)}


def layer_types(config: dict) -> list[str]:
    if config.get("layer_types"):
        return list(config["layer_types"])
    every = config.get("global_attn_every_n_layers", 3)
    return [GLOBAL if i % every == 0 else LOCAL for i in range(config["num_hidden_layers"])]


def rope_theta(config: dict, kind: str) -> float:
    if config.get("rope_scaling"):
        raise ValueError(f"ModernBERT with rope_scaling {config['rope_scaling']} is not supported")
    params = (config.get("rope_parameters") or {}).get(kind) or {}
    if params.get("rope_type", "default") != "default":
        raise ValueError(f"ModernBERT with rope_type {params['rope_type']!r} is not supported")
    if params.get("rope_theta") is not None:
        return float(params["rope_theta"])
    key, default = LEGACY_THETA[kind]
    theta = config.get(key, default)
    if theta is None and kind == LOCAL:  # transformers 4: local_rope_theta=None means the global base
        return rope_theta(config, GLOBAL)
    return float(theta)


class ModernBertLayer(nn.Module):
    def __init__(self, config: dict, index: int, window: int | None):
        super().__init__()
        hidden, intermediate = config["hidden_size"], config["intermediate_size"]
        eps, norm_bias = config.get("norm_eps", 1e-5), config.get("norm_bias", False)
        attention_bias, mlp_bias = config.get("attention_bias", False), config.get("mlp_bias", False)
        self.heads = config["num_attention_heads"]
        self.window = window  # None: global attention
        # the first layer reads the embedding norm's output directly
        self.attn_norm = nn.LayerNorm(hidden, eps=eps, bias=norm_bias) if index > 0 else nn.Identity()
        self.qkv = nn.Linear(hidden, 3 * hidden, bias=attention_bias)
        self.attn_out = nn.Linear(hidden, hidden, bias=attention_bias)
        self.mlp_norm = nn.LayerNorm(hidden, eps=eps, bias=norm_bias)
        self.up = nn.Linear(hidden, 2 * intermediate, bias=mlp_bias)  # GeGLU: [input | gate]
        self.down = nn.Linear(intermediate, hidden, bias=mlp_bias)
        self.act = ACTIVATIONS[config.get("hidden_activation", "gelu")]

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, batch: PackedBatch,
                attention: AttentionFn) -> torch.Tensor:
        tokens, hidden = x.shape
        q, k, v = self.qkv(self.attn_norm(x)).view(tokens, 3, self.heads, hidden // self.heads).unbind(1)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        context = attention(q, k, v, batch, causal=False, window=self.window).reshape(tokens, hidden)
        x = x + self.attn_out(context)
        up, gate = self.up(self.mlp_norm(x)).chunk(2, dim=-1)
        return x + self.down(self.act(up) * gate)


class ModernBertEncoder(nn.Module):
    """Returns the last hidden state after the final norm, [total_tokens, hidden]."""

    position_offset = 0  # position ids start at 0

    def __init__(self, config: dict):
        super().__init__()
        hidden, heads = config["hidden_size"], config["num_attention_heads"]
        eps, norm_bias = config.get("norm_eps", 1e-5), config.get("norm_bias", False)
        self.layer_types = layer_types(config)
        window = config.get("local_attention", 128) // 2
        self.tok_embeddings = nn.Embedding(config["vocab_size"], hidden)
        self.embed_norm = nn.LayerNorm(hidden, eps=eps, bias=norm_bias)
        self.layers = nn.ModuleList(
            ModernBertLayer(config, i, None if kind == GLOBAL else window) for i, kind in enumerate(self.layer_types)
        )
        self.final_norm = nn.LayerNorm(hidden, eps=eps, bias=norm_bias)
        self.rotary = {kind: Rotary(hidden // heads, rope_theta(config, kind)) for kind in set(self.layer_types)}

    def forward(self, batch: PackedBatch, attention: AttentionFn) -> torch.Tensor:
        x = self.embed_norm(self.tok_embeddings(batch.input_ids))
        angles = {kind: rotary(batch.position_ids) for kind, rotary in self.rotary.items()}
        for layer, kind in zip(self.layers, self.layer_types):
            x = layer(x, *angles[kind], batch, attention)
        return self.final_norm(x)

    @staticmethod
    def map_weights(checkpoint: dict[str, torch.Tensor], config: dict) -> dict[str, torch.Tensor]:
        """HF ModernBertModel names -> this module's names (Wqkv is already fused)."""
        w = strip_prefix(checkpoint, ("model.",))
        mapped = pick_renamed(w, {"embeddings.tok_embeddings": "tok_embeddings", "embeddings.norm": "embed_norm",
                                  "final_norm": "final_norm"})
        for i in range(config["num_hidden_layers"]):
            src, dst = f"layers.{i}.", f"layers.{i}."
            mapped.update(pick_renamed(w, {
                src + "attn_norm": dst + "attn_norm",  # absent in layer 0
                src + "attn.Wqkv": dst + "qkv",
                src + "attn.Wo": dst + "attn_out",
                src + "mlp_norm": dst + "mlp_norm",
                src + "mlp.Wi": dst + "up",
                src + "mlp.Wo": dst + "down",
            }))
        return mapped

    @staticmethod
    def head_weights(checkpoint: dict[str, torch.Tensor], config: dict, task: str) -> HeadWeights:
        """Every ModernBERT head is `head.dense -> classifier_activation -> head.norm` then
        `classifier` (or the MLM `decoder`, tied to the token embeddings when absent).
        Sequence classification pools by `classifier_pooling` ("cls" or "mean")."""
        w = strip_prefix(checkpoint, ("model.",))
        eps = config.get("norm_eps", 1e-5)
        activation = config.get("classifier_activation", "gelu")
        head = pick_renamed(w, {"head.dense": "dense", "head.norm": "norm"})
        if task in ("sequence_classification", "token_classification"):
            head.update(pick_renamed(w, {"classifier": "out"}))
            pooling = config.get("classifier_pooling", "cls") if task == "sequence_classification" else "cls"
            return HeadWeights(head, activation, pooling, eps)
        if task == "masked_lm":
            head["out.weight"] = w.get("decoder.weight", w["embeddings.tok_embeddings.weight"])
            if "decoder.bias" in w:
                head["out.bias"] = w["decoder.bias"]
            return HeadWeights(head, activation, "cls", eps)
        raise KeyError(f"ModernBERT has no {task} head")
