"""Attention over packed sequences. One backend is picked at start-up:

- `flash_attn`:  flash_attn_varlen_func (flash-attn installed, CUDA)
- `torch_varlen`: torch.nn.attention.varlen.varlen_attn (CUDA, torch >= 2.9)
- `sdpa_grouped`: CPU (or any device) path: attention per block of sequences. A run of
  equal-length sequences is viewed as a dense block of the packed tensor; neighbouring short
  runs are gathered into one block padded to its longest sequence (padding keys masked), while
  the padding stays small (`_blocks`). Blocks of short sequences (the common case
  for embedders) use two matmuls and a float32 softmax, which on the CPU is faster than the
  flash kernel at these sizes (small heads, short rows) and, in bfloat16, at least as
  accurate; long runs use scaled_dot_product_attention.

Every backend takes q, k, v as [total_tokens, heads, head_dim] (k and v may have fewer
heads: grouped-query attention) and returns q's shape. `causal` masks future tokens;
`window` = w limits each token to keys at most w positions away on either side (ModernBERT's
local layers); None means global attention."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from .batch import PackedBatch

log = logging.getLogger("shoal.engine")

AttentionFn = Callable[..., torch.Tensor]  # (q, k, v, batch, causal=False, window=None) -> [T, H, D]


def _window_mask(length: int, window: int, causal: bool, device) -> torch.Tensor:
    positions = torch.arange(length, device=device)
    distance = positions[None, :] - positions[:, None]  # key - query
    allowed = distance.abs() <= window
    if causal:
        allowed &= distance <= 0
    return allowed


def _key_mask(batch: PackedBatch, first_sequence: int, count: int, length: int, device) -> torch.Tensor:
    """[n, 1, 1, L]: which keys each sequence of a run may attend to."""
    attend = torch.tensor(batch.attend_lengths[first_sequence:first_sequence + count], device=device)
    return (torch.arange(length, device=device)[None, :] < attend[:, None])[:, None, None, :]


# Up to this sequence length a run is computed with matmuls (its score matrix is small).
MATMUL_ATTENTION_MAX_LENGTH = 384
# Neighbouring short runs share one padded block while it holds at most this many slots per
# real token. A batch made of many requests' texts has dozens of distinct lengths: a block per
# length meant dozens of tiny matmuls per layer, while attention is a small share of the
# FLOPs at these lengths, so a little padding costs far less than the calls it saves
# (MiniLM, bfloat16, 2 cores, 32-text requests 4 at a time: 15.4k -> 19.5k tokens/s).
PADDED_SLOTS_PER_TOKEN = 1.5
# ...and while its score matrices stay small: sequences x length^2 at most this many per head
# (a [count, heads, L, L] float32 softmax far beyond the caches made whole batches 3x slower).
MAX_BLOCK_SCORES = 1 << 16


@dataclass(frozen=True)
class _Block:
    """Sequences whose attention is computed as one dense [count, length] block: a view of
    the packed rows start..start+count*length when they all have that length (`gather` is
    None), else gathered into slots padded to the longest of them."""

    start: int
    count: int
    length: int
    first_sequence: int
    gather: torch.Tensor | None = None  # [count*length] packed row per slot (pads repeat a real row)
    real: torch.Tensor | None = None  # the slots that hold real tokens, in packed order
    rows: torch.Tensor | None = None  # their packed rows
    key_mask: torch.Tensor | None = None  # [count, 1, 1, length]: the keys each sequence may attend to


def _blocks(batch: PackedBatch) -> list[_Block]:
    """The batch's attention blocks, made once per batch (every layer reuses them)."""
    blocks = batch.derived.get("attention_blocks")
    if blocks is None:
        blocks = batch.derived["attention_blocks"] = _plan_blocks(batch)
    return blocks


def _plan_blocks(batch: PackedBatch) -> list[_Block]:
    runs, blocks, i, sequence = batch.equal_length_runs, [], 0, 0
    device = batch.input_ids.device
    while i < len(runs):
        start, count, length = runs[i]
        j, sequences, real, longest = i + 1, count, count * length, length
        while j < len(runs):
            _, more, other = runs[j]
            widest = max(longest, other)
            if (widest > MATMUL_ATTENTION_MAX_LENGTH
                    or (sequences + more) * widest > PADDED_SLOTS_PER_TOKEN * (real + more * other)
                    or (sequences + more) * widest * widest > MAX_BLOCK_SCORES):
                break
            sequences, real, longest, j = sequences + more, real + more * other, widest, j + 1
        if j == i + 1:
            blocks.append(_Block(start, count, length, sequence))
        else:
            lengths = torch.tensor(batch.lengths[sequence:sequence + sequences])
            starts = start + torch.cumsum(lengths, 0) - lengths
            slot = torch.arange(longest)
            gather = (starts[:, None] + torch.minimum(slot[None, :], lengths[:, None] - 1)).flatten()
            real_slots = (slot[None, :] < lengths[:, None]).flatten().nonzero().squeeze(1)
            attend = lengths if batch.attend_lengths is None else torch.minimum(
                lengths, torch.tensor(batch.attend_lengths[sequence:sequence + sequences]))
            key_mask = (slot[None, :] < attend[:, None])[:, None, None, :]
            blocks.append(_Block(start, sequences, longest, sequence, gather.to(device), real_slots.to(device),
                                 gather[real_slots].to(device), key_mask.to(device)))
        sequence += sequences
        i = j
    return blocks


def sdpa_grouped(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, batch: PackedBatch, causal: bool = False,
                 window: int | None = None) -> torch.Tensor:
    out = torch.empty_like(q)
    gqa = k.shape[1] != q.shape[1]
    for block in _blocks(batch):
        count, length = block.count, block.length
        if block.gather is None:
            # [n*L, H, D] -> [n, H, L, D]: a view, the run being contiguous in the packed tensor
            end = block.start + count * length
            qs, ks, vs = (t[block.start:end].unflatten(0, (count, length)).transpose(1, 2) for t in (q, k, v))
            mask = (_key_mask(batch, block.first_sequence, count, length, q.device)
                    if batch.attend_lengths is not None else None)
        else:
            qs, ks, vs = (t.index_select(0, block.gather).unflatten(0, (count, length)).transpose(1, 2)
                          for t in (q, k, v))
            mask = block.key_mask
        if window is not None and window < length:
            near = _window_mask(length, window, causal, q.device)
            mask = near if mask is None else mask & near
        elif causal and mask is not None:
            mask = mask & torch.ones(length, length, dtype=torch.bool, device=q.device).tril()
        if q.device.type == "cpu" and length <= MATMUL_ATTENTION_MAX_LENGTH:
            o = _matmul_attention(qs, ks, vs, mask, causal and mask is None)
        elif mask is None:
            o = F.scaled_dot_product_attention(qs, ks, vs, is_causal=causal, enable_gqa=gqa)
        else:
            o = F.scaled_dot_product_attention(qs, ks, vs, attn_mask=mask, enable_gqa=gqa)
        o = o.transpose(1, 2).flatten(0, 1)
        if block.gather is None:
            out[block.start:block.start + count * length] = o
        else:
            out.index_copy_(0, block.rows, o.index_select(0, block.real))
    return out


def _matmul_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None,
                      causal: bool) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v for [n, H, L, D] blocks, the softmax in float32."""
    if k.shape[1] != q.shape[1]:  # grouped-query attention: each key/value head serves a group of query heads
        k, v = (t.repeat_interleave(q.shape[1] // k.shape[1], dim=1) for t in (k, v))
    scores = torch.matmul(q * q.shape[-1] ** -0.5, k.transpose(-1, -2))
    if causal:
        length = q.shape[2]
        mask = torch.ones(length, length, dtype=torch.bool, device=q.device).tril()
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.matmul(torch.softmax(scores, -1, dtype=torch.float32).to(v.dtype), v)


def _flash_attn_backend() -> AttentionFn:
    from flash_attn import flash_attn_varlen_func

    def flash(q, k, v, batch, causal=False, window=None):
        if batch.attend_lengths is not None:  # key masks: short ColBERT queries only
            return sdpa_grouped(q, k, v, batch, causal, window)
        window_size = (-1, -1) if window is None else (window, 0 if causal else window)
        return flash_attn_varlen_func(q, k, v, batch.cu_seqlens, batch.cu_seqlens, batch.max_seqlen, batch.max_seqlen,
                                      causal=causal, window_size=window_size)

    return flash


def _torch_varlen_backend() -> AttentionFn:
    from torch.nn.attention.varlen import varlen_attn

    def varlen(q, k, v, batch, causal=False, window=None):
        if batch.attend_lengths is not None:  # key masks: short ColBERT queries only
            return sdpa_grouped(q, k, v, batch, causal, window)
        left = -1 if window is None else window
        right = 0 if causal else (-1 if window is None else window)
        return varlen_attn(q, k, v, batch.cu_seqlens, batch.cu_seqlens, batch.max_seqlen, batch.max_seqlen,
                           window_size=(left, right), enable_gqa=k.shape[1] != q.shape[1])

    return varlen


BACKENDS: dict[str, Callable[[], AttentionFn]] = {
    "flash_attn": _flash_attn_backend,
    "torch_varlen": _torch_varlen_backend,
    "sdpa_grouped": lambda: sdpa_grouped,
}


def select_backend(device: torch.device, preferred: str | None = None) -> tuple[str, AttentionFn]:
    """The best backend this device and install support (or `preferred`, if it loads)."""
    if preferred:
        return preferred, BACKENDS[preferred]()
    if device.type == "cuda":
        for name in ("flash_attn", "torch_varlen"):
            try:
                return name, BACKENDS[name]()
            except (ImportError, AttributeError) as error:
                log.debug("attention backend unavailable", extra={"backend": name, "reason": str(error)})
    return "sdpa_grouped", sdpa_grouped
