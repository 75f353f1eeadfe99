"""Every attention backend against one reference: dense attention per sequence."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from engine.attention import BACKENDS, sdpa_grouped
from engine.batch import PackedBatch

LENGTHS = [1, 3, 3, 3, 7, 7, 16, 2, 33]  # equal-length runs and singletons, unsorted


def _reference(q, k, v, lengths, causal, window=None, attend=None):
    outputs, start = [], 0
    for index, n in enumerate(lengths):
        qs, ks, vs = (t[start:start + n].transpose(0, 1).float() for t in (q, k, v))
        if ks.shape[0] != qs.shape[0]:  # grouped-query attention: repeat kv heads
            repeat = qs.shape[0] // ks.shape[0]
            ks, vs = ks.repeat_interleave(repeat, 0), vs.repeat_interleave(repeat, 0)
        scores = qs @ ks.transpose(1, 2) / qs.shape[-1] ** 0.5
        distance = torch.arange(n)[None, :] - torch.arange(n)[:, None]
        if causal:
            scores = scores.masked_fill(distance > 0, float("-inf"))
        if window is not None:
            scores = scores.masked_fill(distance.abs() > window, float("-inf"))
        if attend is not None:  # only the first attend[index] keys
            scores = scores.masked_fill(torch.arange(n)[None, :] >= attend[index], float("-inf"))
        outputs.append((F.softmax(scores, -1) @ vs).transpose(0, 1))
        start += n
    return torch.cat(outputs)


def _inputs(device, dtype, kv_heads=4):
    torch.manual_seed(0)
    batch = PackedBatch.pack([list(range(n)) for n in LENGTHS], device=device)
    total = sum(LENGTHS)
    q = torch.randn(total, 4, 16, device=device, dtype=dtype)
    k = torch.randn(total, kv_heads, 16, device=device, dtype=dtype)
    v = torch.randn(total, kv_heads, 16, device=device, dtype=dtype)
    return batch, q, k, v


def test_packing_fields():
    batch = PackedBatch.pack([[5, 6, 7], [8], [9, 10]], position_offset=2)
    assert batch.cu_seqlens.tolist() == [0, 3, 4, 6]
    assert batch.cu_seqlens.dtype == torch.int32
    assert batch.position_ids.tolist() == [2, 3, 4, 2, 2, 3]
    assert batch.max_seqlen == 3
    assert batch.equal_length_runs == ((0, 1, 3), (3, 1, 1), (4, 1, 2))


@pytest.mark.parametrize("window", [None, 2])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("kv_heads", [4, 2])
def test_cpu_grouped_sdpa_matches_reference(causal, kv_heads, window):
    batch, q, k, v = _inputs("cpu", torch.float32, kv_heads)
    torch.testing.assert_close(sdpa_grouped(q, k, v, batch, causal, window),
                               _reference(q, k, v, LENGTHS, causal, window), atol=1e-5, rtol=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("backend", ["flash_attn", "torch_varlen", "sdpa_grouped"])
@pytest.mark.parametrize("window", [None, 2])
@pytest.mark.parametrize("causal", [False, True])
def test_cuda_backends_match_reference(backend, causal, window):
    try:
        attention = BACKENDS[backend]()
    except (ImportError, AttributeError):
        pytest.skip(f"{backend} is not installed")
    batch, q, k, v = _inputs("cuda", torch.bfloat16)
    expected = _reference(q, k, v, LENGTHS, causal, window).to(torch.bfloat16)
    torch.testing.assert_close(attention(q, k, v, batch, causal, window), expected, atol=2e-2, rtol=2e-2)


@pytest.mark.parametrize("window", [None, 3])
@pytest.mark.parametrize("causal", [False, True])
def test_cpu_padded_blocks_match_reference(causal, window):
    """Many distinct lengths, sorted as the scheduler sorts a batch: neighbouring runs share
    padded blocks (the padding keys masked, the padded rows dropped), with and without
    key masks (ColBERT's attend lengths)."""
    from engine.attention import _blocks

    torch.manual_seed(1)
    lengths = sorted(torch.randint(1, 60, (40,)).tolist())
    batch = PackedBatch.pack([list(range(n)) for n in lengths])
    assert any(block.gather is not None for block in _blocks(batch))  # the case under test
    assert len(_blocks(batch)) < len(batch.equal_length_runs)
    q, k, v = (torch.randn(sum(lengths), 4, 8) for _ in range(3))
    torch.testing.assert_close(sdpa_grouped(q, k, v, batch, causal, window),
                               _reference(q, k, v, lengths, causal, window), atol=1e-5, rtol=1e-5)
    attend = [max(1, n - 2) for n in lengths]
    masked = PackedBatch.pack([list(range(n)) for n in lengths], attend_lengths=attend)
    torch.testing.assert_close(sdpa_grouped(q, k, v, masked, causal, window),
                               _reference(q, k, v, lengths, causal, window, attend), atol=1e-5, rtol=1e-5)
