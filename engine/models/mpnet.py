"""MPNet encoder over packed, unpadded sequences (e.g. all-mpnet-base-v2).

BERT's post-LayerNorm layers (fused QKV built at load time), no token types, position ids
from padding_idx + 1 = 2 like RoBERTa, and one thing BERT lacks: a relative position bias
added to every layer's attention scores. The bias is T5-style: the offset key - query
within a sequence is put in one of 32 buckets (16 per direction: exact up to 8 tokens
apart, then log-spaced; offsets of 91 or more share the last bucket), and
`encoder.relative_attention_bias` holds one learned value per bucket and head, shared by
all layers.

Attention with an arbitrary additive bias: the engine's backends take no bias, and
flash-attn cannot add one, so this file runs its own attention on every device. Each run of
equal-length sequences (`batch.equal_length_runs`) is viewed as a dense [n, heads, L, D]
block of the packed tensor, without copying, and goes through one
`scaled_dot_product_attention` call with `attn_mask` = the [heads, L, L] bias for length L.
The bias depends only on key - query, so it is computed once per forward for the longest
sequence, and every length uses its top-left [L, L] corner (a view), in every layer. On
CUDA, SDPA takes its memory-efficient kernel, which supports the bias. The `attention`
backend passed to `forward` is therefore unused."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..attention import AttentionFn
from ..batch import PackedBatch
from ..heads import HeadWeights
from ..weights import strip_prefix
from .bert import BertLayer, layer_weights
from .xlm_roberta import roberta_style_head

# MPNetEncoder.compute_position_bias in transformers buckets with these constants whatever
# the config's relative_attention_num_buckets says (which only sizes the table).
MPNET_LAYER_NAMES = {
    "q": "attention.attn.q", "k": "attention.attn.k", "v": "attention.attn.v",
    "attn_out": "attention.attn.o", "attn_norm": "attention.LayerNorm",
    "up": "intermediate.dense", "down": "output.dense", "mlp_norm": "output.LayerNorm",
}
NUM_BUCKETS = 32
MAX_DISTANCE = 128


def relative_position_bucket(relative_position: torch.Tensor) -> torch.Tensor:
    """MPNet's (T5's bidirectional) bucketing of key - query offsets, op for op as in
    transformers so the float rounding, hence the bucket at each boundary, is the same."""
    num_buckets = NUM_BUCKETS // 2
    n = -relative_position
    ret = (n < 0).to(torch.long) * num_buckets
    n = torch.abs(n)
    max_exact = num_buckets // 2
    is_small = n < max_exact
    val_if_large = max_exact + (
        torch.log(n.float() / max_exact) / math.log(MAX_DISTANCE / max_exact) * (num_buckets - max_exact)
    ).to(torch.long)
    val_if_large = torch.min(val_if_large, torch.full_like(val_if_large, num_buckets - 1))
    return ret + torch.where(is_small, n, val_if_large)


def biased_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, batch: PackedBatch,
                     bias: torch.Tensor) -> torch.Tensor:
    """[T, H, D] attention per run of equal-length sequences, adding bias[:, :L, :L] (bias
    is [H, max_seqlen, max_seqlen]) to the scaled scores. Keys past a sequence's
    `batch.attend_lengths` entry (ColBERT query expansion) are masked out."""
    out = torch.empty_like(q)
    sequence = 0
    for start, count, length in batch.equal_length_runs:
        end = start + count * length
        qs, ks, vs = (t[start:end].unflatten(0, (count, length)).transpose(1, 2) for t in (q, k, v))
        mask = bias[:, :length, :length]
        if batch.attend_lengths is not None:
            attend = torch.tensor(batch.attend_lengths[sequence:sequence + count], device=q.device)
            keys = (torch.arange(length, device=q.device)[None, :] < attend[:, None])[:, None, None, :]
            mask = mask.masked_fill(~keys, float("-inf"))  # [n, H, L, L]
        o = F.scaled_dot_product_attention(qs, ks, vs, attn_mask=mask)
        out[start:end] = o.transpose(1, 2).flatten(0, 1)
        sequence += count
    return out


class MPNetEncoder(nn.Module):
    """Returns the last hidden state, [total_tokens, hidden]."""

    position_offset = 2  # padding_idx (fixed at 1 in MPNet) + 1

    def __init__(self, config: dict):
        super().__init__()
        hidden = config["hidden_size"]
        eps = config.get("layer_norm_eps", 1e-12)
        self.word_embeddings = nn.Embedding(config["vocab_size"], hidden)
        self.position_embeddings = nn.Embedding(config["max_position_embeddings"], hidden)
        self.embed_norm = nn.LayerNorm(hidden, eps=eps)
        self.relative_attention_bias = nn.Embedding(config.get("relative_attention_num_buckets", NUM_BUCKETS),
                                                    config["num_attention_heads"])
        self.layers = nn.ModuleList(
            BertLayer(hidden, config["num_attention_heads"], config["intermediate_size"], eps, config.get("hidden_act", "gelu"))
            for _ in range(config["num_hidden_layers"])
        )

    def position_bias(self, length: int, dtype: torch.dtype) -> torch.Tensor:
        """[heads, L, L]: the bias of query i attending to key j in a sequence of length L."""
        positions = torch.arange(length, device=self.relative_attention_bias.weight.device)
        buckets = relative_position_bucket(positions[None, :] - positions[:, None])
        return self.relative_attention_bias(buckets).permute(2, 0, 1).to(dtype)

    def forward(self, batch: PackedBatch, attention: AttentionFn) -> torch.Tensor:
        x = self.embed_norm(self.word_embeddings(batch.input_ids) + self.position_embeddings(batch.position_ids))
        bias = self.position_bias(batch.max_seqlen, x.dtype)

        def attend(q, k, v, batch, causal=False, window=None):
            return biased_attention(q, k, v, batch, bias)

        for layer in self.layers:
            x = layer(x, batch, attend)
        return x

    @staticmethod
    def map_weights(checkpoint: dict[str, torch.Tensor], config: dict) -> dict[str, torch.Tensor]:
        """HF MPNetModel names -> this module's names, with Q, K and V fused."""
        w = strip_prefix(checkpoint, ("mpnet.",))
        mapped = {
            "word_embeddings.weight": w["embeddings.word_embeddings.weight"],
            "position_embeddings.weight": w["embeddings.position_embeddings.weight"],
            "embed_norm.weight": w["embeddings.LayerNorm.weight"],
            "embed_norm.bias": w["embeddings.LayerNorm.bias"],
            "relative_attention_bias.weight": w["encoder.relative_attention_bias.weight"],
        }
        for i in range(config["num_hidden_layers"]):
            mapped.update(layer_weights(w, f"encoder.layer.{i}.", f"layers.{i}.", MPNET_LAYER_NAMES))
        return mapped

    @staticmethod
    def head_weights(checkpoint: dict[str, torch.Tensor], config: dict, task: str) -> HeadWeights:
        """The task head as `dense.*` / `norm.*` / `out.*`, shaped like RoBERTa's: sequence
        classification reads the first token through classifier.dense + tanh; the MLM
        decoder is tied to the word embeddings, its bias to lm_head.bias."""
        return roberta_style_head(strip_prefix(checkpoint, ("mpnet.",)), config, task, "MPNet")
