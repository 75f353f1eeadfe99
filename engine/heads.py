"""Heads that turn packed hidden states into per-sequence outputs, and the per-request
post-processing (Matryoshka truncation, L2 normalisation)."""

from __future__ import annotations

import numpy as np
import torch

from .batch import PackedBatch


def sequence_index(batch: PackedBatch) -> torch.Tensor:
    """For each token, the index of its sequence: [T] int64."""
    lengths = torch.tensor(batch.lengths, device=batch.input_ids.device)
    return torch.repeat_interleave(torch.arange(batch.num_sequences, device=lengths.device), lengths)


def pool(hidden: torch.Tensor, batch: PackedBatch, mode: str) -> torch.Tensor:
    """[T, H] -> [B, H] in float32."""
    hidden = hidden.float()
    starts = batch.cu_seqlens[:-1].long()
    if mode == "cls":
        return hidden[starts]
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


def finish_dense(vectors: np.ndarray, dimensions: int | None, normalize: bool) -> np.ndarray:
    """Matryoshka truncation, then (re)normalisation so truncated vectors stay unit length."""
    if dimensions:
        vectors = vectors[:, :dimensions]
    if normalize:
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors = vectors / np.maximum(norms, 1e-12)
    return np.ascontiguousarray(vectors, dtype=np.float32)
