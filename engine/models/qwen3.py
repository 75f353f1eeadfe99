"""Qwen3 over packed, unpadded sequences, as Qwen3-Embedding and Qwen3-Reranker use it.

A decoder: causal attention, rotary positions, grouped-query attention (k and v have
`num_key_value_heads` heads), RMSNorm before each block and on every query and key head
(before the rotation), a SwiGLU MLP and a final norm. Q, K and V are fused into one
projection at load time, and so are the gate and up projections."""

from __future__ import annotations

import torch
from torch import nn

from ..attention import AttentionFn
from ..batch import PackedBatch
from ..errors import InputTooLong
from ..heads import ACTIVATIONS, HeadWeights
from ..rotary import Rotary, apply_rotary
from ..tokenize import TextTokenizer, Tokenized
from ..weights import pick_renamed, strip_prefix


class RMSNorm(nn.Module):
    """Computed in float32 and cast back before the weight, as transformers' Qwen3RMSNorm."""

    def __init__(self, size: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        return self.weight * (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype)


def rope_theta(config: dict) -> float:
    params = config.get("rope_parameters") or config.get("rope_scaling") or {}
    kind = params.get("rope_type", params.get("type", "default"))
    if kind != "default":
        raise ValueError(f"Qwen3 with rope_type {kind!r} is not supported")
    return float(params.get("rope_theta", config.get("rope_theta", 10_000.0)))


def sliding_windows(config: dict) -> list[int | None]:
    """Per layer: None (full causal attention) or how many earlier tokens a token may read.
    Qwen3's `sliding_window` counts the token itself, the attention window does not."""
    layers = config["num_hidden_layers"]
    types = config.get("layer_types")
    if not types:
        sliding = config.get("use_sliding_window", False) and config.get("sliding_window")
        types = ["sliding_attention" if sliding and i >= config.get("max_window_layers", layers) else "full_attention"
                 for i in range(layers)]
    return [config["sliding_window"] - 1 if kind == "sliding_attention" else None for kind in types]


class Qwen3Layer(nn.Module):
    def __init__(self, config: dict, window: int | None):
        super().__init__()
        hidden, intermediate = config["hidden_size"], config["intermediate_size"]
        self.heads = config["num_attention_heads"]
        self.kv_heads = config.get("num_key_value_heads") or self.heads
        self.head_dim = config.get("head_dim") or hidden // self.heads
        self.window = window
        eps, bias = config.get("rms_norm_eps", 1e-6), config.get("attention_bias", False)
        self.attn_norm = RMSNorm(hidden, eps)
        self.qkv = nn.Linear(hidden, (self.heads + 2 * self.kv_heads) * self.head_dim, bias=bias)
        self.q_norm = RMSNorm(self.head_dim, eps)
        self.k_norm = RMSNorm(self.head_dim, eps)
        self.attn_out = nn.Linear(self.heads * self.head_dim, hidden, bias=bias)
        self.mlp_norm = RMSNorm(hidden, eps)
        self.gate_up = nn.Linear(hidden, 2 * intermediate, bias=False)  # SwiGLU: [gate | up]
        self.down = nn.Linear(intermediate, hidden, bias=False)
        self.act = ACTIVATIONS[config.get("hidden_act", "silu")]

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, batch: PackedBatch,
                attention: AttentionFn) -> torch.Tensor:
        tokens, d = x.shape[0], self.head_dim
        q, k, v = self.qkv(self.attn_norm(x)).split([self.heads * d, self.kv_heads * d, self.kv_heads * d], dim=-1)
        q = apply_rotary(self.q_norm(q.view(tokens, self.heads, d)), cos, sin)
        k = apply_rotary(self.k_norm(k.view(tokens, self.kv_heads, d)), cos, sin)
        v = v.view(tokens, self.kv_heads, d)
        context = attention(q, k, v, batch, causal=True, window=self.window).reshape(tokens, self.heads * d)
        x = x + self.attn_out(context)
        gate, up = self.gate_up(self.mlp_norm(x)).chunk(2, dim=-1)
        return x + self.down(self.act(gate) * up)


# Qwen3-Reranker's chat template: the model answers "yes" or "no" after it.
RERANK_PREFIX = ("<|im_start|>system\nJudge whether the Document meets the requirements based on the Query "
                 "and the Instruct provided. Note that the answer can only be \"yes\" or \"no\".<|im_end|>\n"
                 "<|im_start|>user\n")
RERANK_SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
DEFAULT_RERANK_INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"


def rerank_prompts(tokenizer: TextTokenizer, instruction: str, pairs: list[tuple[str, str]],
                   truncate: bool) -> list[Tokenized]:
    """Qwen3-Reranker's template around each (query, document) pair; the body between the
    fixed prefix and suffix is what truncation cuts."""
    prefix = tokenizer.encode_plain(RERANK_PREFIX)
    suffix = tokenizer.encode_plain(RERANK_SUFFIX)
    instruction = instruction or DEFAULT_RERANK_INSTRUCTION
    room = tokenizer.max_length - len(prefix) - len(suffix)
    items = []
    for position, (query, document) in enumerate(pairs):
        query, document = tokenizer.cut(query), tokenizer.cut(document)
        body = tokenizer.encode_plain(f"<Instruct>: {instruction}\n<Query>: {query}\n<Document>: {document}")
        if len(body) > room and not truncate:
            raise InputTooLong(f"document {position} is longer than the model's maximum and truncate is false")
        ids = prefix + body[:room] + suffix
        items.append(Tokenized(ids, [0] * len(ids)))
    return items


class Qwen3Encoder(nn.Module):
    """Returns the last hidden state after the final norm, [total_tokens, hidden]."""

    position_offset = 0  # position ids start at 0
    format_pairs = staticmethod(rerank_prompts)  # how its rerankers read a (query, document) pair

    def __init__(self, config: dict):
        super().__init__()
        hidden = config["hidden_size"]
        self.embed_tokens = nn.Embedding(config["vocab_size"], hidden)
        self.layers = nn.ModuleList(Qwen3Layer(config, window) for window in sliding_windows(config))
        self.norm = RMSNorm(hidden, config.get("rms_norm_eps", 1e-6))
        self.rotary = Rotary(self.layers[0].head_dim, rope_theta(config))

    def forward(self, batch: PackedBatch, attention: AttentionFn) -> torch.Tensor:
        x = self.embed_tokens(batch.input_ids)
        cos, sin = self.rotary(batch.position_ids)
        for layer in self.layers:
            x = layer(x, cos, sin, batch, attention)
        return self.norm(x)

    @staticmethod
    def map_weights(checkpoint: dict[str, torch.Tensor], config: dict) -> dict[str, torch.Tensor]:
        """HF Qwen3Model names -> this module's names, with Q, K, V and gate, up fused."""
        w = strip_prefix(checkpoint, ("model.",))
        mapped = {"embed_tokens.weight": w["embed_tokens.weight"], "norm.weight": w["norm.weight"]}
        kinds = ("weight", "bias") if config.get("attention_bias", False) else ("weight",)
        for i in range(config["num_hidden_layers"]):
            src, dst = f"layers.{i}.", f"layers.{i}."
            for kind in kinds:
                mapped[dst + f"qkv.{kind}"] = torch.cat([w[src + f"self_attn.{p}_proj.{kind}"] for p in "qkv"])
                mapped[dst + f"attn_out.{kind}"] = w[src + f"self_attn.o_proj.{kind}"]
            mapped[dst + "gate_up.weight"] = torch.cat([w[src + f"mlp.{p}_proj.weight"] for p in ("gate", "up")])
            mapped[dst + "down.weight"] = w[src + "mlp.down_proj.weight"]
            for ours, theirs in (("attn_norm", "input_layernorm"), ("mlp_norm", "post_attention_layernorm"),
                                 ("q_norm", "self_attn.q_norm"), ("k_norm", "self_attn.k_norm")):
                mapped[dst + f"{ours}.weight"] = w[src + f"{theirs}.weight"]
        return mapped

    @staticmethod
    def head_weights(checkpoint: dict[str, torch.Tensor], config: dict, task: str) -> HeadWeights:
        """Heads read at each sequence's last token. "causal_lm": the LM head (`lm_head`, or
        the token embeddings when tied), of which the reranker keeps its "yes" and "no" rows;
        "sequence_classification": Qwen3ForSequenceClassification's `score`."""
        w = strip_prefix(checkpoint, ("model.",))
        if task == "causal_lm":
            tied = config.get("tie_word_embeddings") or "lm_head.weight" not in w
            return HeadWeights({"out.weight": w["embed_tokens.weight" if tied else "lm_head.weight"]},
                               "identity", "lasttoken")
        if task == "sequence_classification":
            return HeadWeights(pick_renamed(w, {"score": "out"}), "identity", "lasttoken")
        raise KeyError(f"Qwen3 has no {task} head")
