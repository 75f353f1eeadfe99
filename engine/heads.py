"""Heads that turn packed hidden states [T, H] into outputs.

The task heads of every supported family share one shape: an optional dense layer and
activation, an optional LayerNorm, and an output projection. Each architecture file maps
its checkpoint names onto that shape (`head_weights`), so heads are written once here."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .batch import PackedBatch

ACTIVATIONS = {
    "gelu": lambda x: F.gelu(x),
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_python": lambda x: F.gelu(x),
    "relu": F.relu,
    "silu": F.silu,
    "swish": F.silu,
    "tanh": torch.tanh,
    "identity": lambda x: x,
}


def sequence_index(batch: PackedBatch) -> torch.Tensor:
    """For each token, the index of its sequence: [T] int64."""
    lengths = torch.tensor(batch.lengths, device=batch.input_ids.device)
    return torch.repeat_interleave(torch.arange(batch.num_sequences, device=lengths.device), lengths)


def pool(hidden: torch.Tensor, batch: PackedBatch, mode: str) -> torch.Tensor:
    """[T, H] -> [B, H] in float32."""
    hidden = hidden.float()
    if mode == "cls":
        return hidden[batch.cu_seqlens[:-1].long()]
    if mode == "lasttoken":
        return hidden[batch.cu_seqlens[1:].long() - 1]
    index = sequence_index(batch)
    if mode == "mean":
        sums = torch.zeros(batch.num_sequences, hidden.shape[1], device=hidden.device).index_add_(0, index, hidden)
        lengths = torch.tensor(batch.lengths, device=hidden.device, dtype=torch.float32)
        return sums / lengths.unsqueeze(1)
    if mode == "max":
        result = torch.full((batch.num_sequences, hidden.shape[1]), float("-inf"), device=hidden.device)
        return result.index_reduce_(0, index, hidden, "amax", include_self=True)
    raise ValueError(f"unknown pooling mode {mode!r}")


@dataclass
class HeadWeights:
    """A task head as an architecture file maps it: weights named `dense.*`, `norm.*`,
    `out.*`; the activation after `dense`; which token(s) a sequence-level head reads
    ("cls" or "mean"); the LayerNorm epsilon."""

    weights: dict[str, torch.Tensor]
    activation: str = "identity"
    pooling: str = "cls"
    eps: float = 1e-12


class TaskHead(nn.Module):
    """[dense -> activation] -> [LayerNorm] -> out. Built from weights named `dense.*`,
    `norm.*` and `out.*`; which parts exist is read off the weights."""

    def __init__(self, head: HeadWeights):
        super().__init__()
        weights, activation, eps = head.weights, head.activation, head.eps
        self.pooling = head.pooling
        self.dense = _linear(weights, "dense") if "dense.weight" in weights else None
        self.act = ACTIVATIONS[activation]
        self.norm = None
        if "norm.weight" in weights:
            self.norm = nn.LayerNorm(weights["norm.weight"].shape[0], eps=eps, bias="norm.bias" in weights)
        self.out = _linear(weights, "out")
        self.load_state_dict(weights, strict=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.dense is not None:
            x = self.act(self.dense(x))
        if self.norm is not None:
            x = self.norm(x)
        return self.out(x)


def _linear(weights: dict[str, torch.Tensor], name: str) -> nn.Linear:
    out_features, in_features = weights[f"{name}.weight"].shape
    return nn.Linear(in_features, out_features, bias=f"{name}.bias" in weights)


def sparse_max_pool(logits_fn, hidden: torch.Tensor, batch: PackedBatch, chunk_tokens: int = 512) -> torch.Tensor:
    """SPLADE pooling: max over tokens of log(1 + relu(logits)), per sequence -> [B, V].

    Vocabulary logits for a whole batch would take T x V floats, so tokens go through the
    MLM head in chunks and are max-reduced into the [B, V] result as they come."""
    index = sequence_index(batch)
    result = None
    for start in range(0, hidden.shape[0], chunk_tokens):
        weights = torch.log1p(torch.relu(logits_fn(hidden[start:start + chunk_tokens]).float()))
        if result is None:
            result = torch.zeros(batch.num_sequences, weights.shape[1], device=weights.device)
        rows = index[start:start + chunk_tokens].unsqueeze(1).expand_as(weights)
        result.scatter_reduce_(0, rows, weights, "amax", include_self=True)
    return result
