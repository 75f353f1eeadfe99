"""Where a CPU batch spends its time, and what the alternatives cost, on this machine.

    python scripts/profile_cpu.py                 # bfloat16 and float32
    python scripts/profile_cpu.py --dtype bfloat16

1. One all-MiniLM-L6-v2 batch of ~4,096 real tokens (the CPU token budget) from the benchmark
   corpus, through ServedModel.run, with torch's profiler: time per operator.
2. The GEMM paths for the batch's shapes: torch's F.linear against oneDNN with a prepacked
   weight, with and without the fused GELU.
3. Attention for runs of equal-length sequences: the CPU flash kernel (SDPA) against two
   matmuls with a float32 softmax.

This is a probe for choosing what to optimise, not a benchmark against peers
(benchmarks/throughput.py is that); it prints the CPU it ran on with its figures."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.corpus import build_corpus  # noqa: E402
from engine import default_model_spec  # noqa: E402
from engine.attention import _matmul_attention, select_backend  # noqa: E402
from engine.scheduler import Batch, Job, WorkItem  # noqa: E402
from engine.served import ServedModel  # noqa: E402
from engine.tasks import Head, Work  # noqa: E402
from engine.tokenize import TextTokenizer  # noqa: E402

CPU = torch.device("cpu")


def timed(function, repeats: int = 20) -> float:
    """Median milliseconds of `repeats` calls after a warm-up."""
    for _ in range(3):
        function()
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        samples.append(time.perf_counter() - started)
    return sorted(samples)[len(samples) // 2] * 1000


def cpu_description() -> str:
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), "?")
    flags = next((set(line.split(":", 1)[1].split()) for line in text.splitlines() if line.startswith("flags")), set())
    shown = sorted(flags & {"avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile"})
    return f"{model}, {torch.get_num_threads()} threads, flags {' '.join(shown)}, torch {torch.__version__}"


def one_batch(budget: int = 4096) -> Batch:
    spec = default_model_spec()
    tokenizer = TextTokenizer(spec.path, spec.max_length)
    items = tokenizer.encode(build_corpus(400, seed=0).texts)
    chosen, total = [], 0
    for item in items:  # the scheduler's way: arrival order up to the budget, then length-sorted
        if total + len(item.ids) > budget:
            break
        chosen.append(item)
        total += len(item.ids)
    chosen.sort(key=lambda item: len(item.ids))
    job = Job("probe", Work(Head.POOLED), chosen, None, None)
    return Batch("probe", Work(Head.POOLED), [WorkItem(job, i) for i in range(len(chosen))])


def profile_batch(dtype: torch.dtype, batch: Batch) -> None:
    from torch.profiler import ProfilerActivity, profile

    served = ServedModel.load(default_model_spec(), CPU, dtype, select_backend(CPU))
    tokens = batch.tokens
    milliseconds = timed(lambda: served.run(batch), repeats=10)
    lengths = {item.length for item in batch.items}
    print(f"\n== {dtype}: {len(batch.items)} sequences, {tokens} tokens, {len(lengths)} distinct lengths: "
          f"{milliseconds:.1f} ms per batch, {tokens / milliseconds * 1000:,.0f} tokens/s")
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        served.run(batch)
    print(profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=10))


def compare_gemms(dtype: torch.dtype, tokens: int) -> None:
    print(f"\n== GEMMs, {dtype}, {tokens} tokens: F.linear vs oneDNN prepacked (ms, TFLOP/s)")
    for inputs, outputs in ((384, 1152), (384, 384), (384, 1536), (1536, 384)):
        x = torch.randn(tokens, inputs, dtype=dtype)
        weight, bias = torch.randn(outputs, inputs, dtype=dtype) * 0.05, torch.randn(outputs, dtype=dtype)
        packed = torch.ops.mkldnn._reorder_linear_weight(weight)
        flop = 2 * tokens * inputs * outputs / 1e9
        plain = timed(lambda: F.linear(x, weight, bias))
        plain_gelu = timed(lambda: F.gelu(F.linear(x, weight, bias)))
        onednn = timed(lambda: torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], ""))
        fused = timed(lambda: torch.ops.mkldnn._linear_pointwise(x, packed, bias, "gelu", [], "none"))
        print(f"  {inputs}x{outputs}: F.linear {plain:.2f} ({flop / plain:.2f}), +gelu {plain_gelu:.2f} | "
              f"prepacked {onednn:.2f} ({flop / onednn:.2f}), fused gelu {fused:.2f}")


def compare_attention(dtype: torch.dtype) -> None:
    print(f"\n== attention per run [n, 12 heads, L, 32], {dtype}: SDPA flash vs matmuls + float32 softmax (us)")
    for count, length in ((1, 70), (4, 70), (16, 70), (1, 150), (8, 150), (2, 384)):
        q, k, v = (torch.randn(count, 12, length, 32, dtype=dtype) for _ in range(3))
        flash = timed(lambda: F.scaled_dot_product_attention(q, k, v), repeats=50) * 1000
        matmuls = timed(lambda: _matmul_attention(q, k, v, None, False), repeats=50) * 1000
        print(f"  n={count} L={length}: flash {flash:.0f}, matmuls {matmuls:.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", action="append", choices=["bfloat16", "float32"])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(cpu_description())
    batch = one_batch()
    for name in args.dtype or ["bfloat16", "float32"]:
        dtype = getattr(torch, name)
        profile_batch(dtype, batch)
        compare_gemms(dtype, batch.tokens)
        compare_attention(dtype)


if __name__ == "__main__":
    main()
