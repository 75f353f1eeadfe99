"""PackedBatch: the tensor form of a scheduler Batch, made inside the forward pass.

All sequences are concatenated into one [total_tokens] tensor: no padding anywhere.
`cu_seqlens` holds cumulative lengths (int32, starts at 0), as flash-attn expects."""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import chain, groupby

import torch


@dataclass(frozen=True)
class PackedBatch:
    input_ids: torch.Tensor  # [T] int64
    position_ids: torch.Tensor  # [T] int64
    token_type_ids: torch.Tensor  # [T] int64
    cu_seqlens: torch.Tensor  # [B + 1] int32
    max_seqlen: int
    lengths: tuple[int, ...]
    # Runs of consecutive sequences with equal length: (first token, sequences, length).
    # The CPU attention path views each run as one dense [n, L] block without copying.
    equal_length_runs: tuple[tuple[int, int, int], ...]
    # Per sequence, how many leading tokens may be attended to (ColBERT query expansion:
    # the [MASK] padding is computed but never attended). None: all of them.
    attend_lengths: tuple[int, ...] | None = None
    # What a backend derives from the batch once and reuses in every layer (the CPU
    # attention's padded blocks), keyed by the backend.
    derived: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def num_sequences(self) -> int:
        return len(self.lengths)

    @property
    def num_tokens(self) -> int:
        return int(self.input_ids.shape[0])

    @classmethod
    def pack(
        cls,
        sequences: list[list[int]],
        type_ids: list[list[int]] | None = None,
        position_offset: int = 0,
        device: torch.device | str = "cpu",
        attend_lengths: list[int | None] | None = None,
    ) -> "PackedBatch":
        lengths = tuple(len(s) for s in sequences)
        starts = [0]
        for n in lengths:
            starts.append(starts[-1] + n)
        input_ids = torch.tensor(list(chain.from_iterable(sequences)), dtype=torch.long)
        if type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        else:
            token_type_ids = torch.tensor(list(chain.from_iterable(type_ids)), dtype=torch.long)
        length_tensor = torch.tensor(lengths, dtype=torch.long)
        offsets = torch.repeat_interleave(torch.tensor(starts[:-1], dtype=torch.long), length_tensor)
        position_ids = torch.arange(len(input_ids), dtype=torch.long) - offsets + position_offset
        runs, token = [], 0
        for length, group in groupby(lengths):
            count = len(list(group))
            runs.append((token, count, length))
            token += count * length
        return cls(
            input_ids=input_ids.to(device, non_blocking=True),
            position_ids=position_ids.to(device, non_blocking=True),
            token_type_ids=token_type_ids.to(device, non_blocking=True),
            cu_seqlens=torch.tensor(starts, dtype=torch.int32).to(device, non_blocking=True),
            max_seqlen=max(lengths, default=0),
            lengths=lengths,
            equal_length_runs=tuple(runs),
            attend_lengths=_attend_lengths(attend_lengths, lengths),
        )


def _attend_lengths(attend: list[int | None] | None, lengths: tuple[int, ...]) -> tuple[int, ...] | None:
    if attend is None or all(a is None or a >= n for a, n in zip(attend, lengths)):
        return None
    return tuple(n if a is None else a for a, n in zip(attend, lengths))
