"""The prepared GPU check: one run that, on a CUDA machine,

1. reports the device, torch, and the attention backend Shoal picks;
2. checks every attention backend against dense attention (causal, windowed, GQA);
3. checks every architecture's GPU path (bfloat16) against its CPU float32 output;
4. checks the real all-MiniLM-L6-v2 in bfloat16 and float16 against sentence-transformers;
5. measures throughput beside sentence-transformers float16 on the benchmark corpus;
6. measures host-tier (pinned) reload of a BERT-base-sized model.

    python benchmarks/gpu_check.py                # writes $OUT/gpu_check.json when OUT is set
    python benchmarks/gpu_check.py --device cpu   # smoke run of the same code on CPU

Every check prints one line; the exit status is 1 if a check fails."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine import Engine, EngineConfig, default_model_spec, spec_from_folder  # noqa: E402
from engine.attention import BACKENDS  # noqa: E402
from engine.batch import PackedBatch  # noqa: E402
from engine.served import ServedModel  # noqa: E402
from engine.tokenize import TextTokenizer  # noqa: E402

RESULTS: dict = {"checks": [], "measurements": {}}


def record(name: str, ok: bool, **details) -> None:
    RESULTS["checks"].append({"check": name, "ok": bool(ok), **details})
    print(f"{'PASS' if ok else 'FAIL'}  {name}  {json.dumps(details, default=str)}", flush=True)


def attention_backends(device: torch.device) -> None:
    torch.manual_seed(0)
    lengths = [1, 3, 3, 7, 16, 33, 33]
    batch = PackedBatch.pack([list(range(n)) for n in lengths], device=device)
    for kv_heads in (4, 2):
        q = torch.randn(sum(lengths), 4, 64, device=device, dtype=torch.bfloat16)
        k = torch.randn(sum(lengths), kv_heads, 64, device=device, dtype=torch.bfloat16)
        v = torch.randn_like(k)
        for causal in (False, True):
            for window in (None, 4):
                reference = _dense_attention(q, k, v, lengths, causal, window)
                for name, factory in BACKENDS.items():
                    try:
                        attention = factory()
                    except (ImportError, AttributeError) as error:
                        record(f"attention {name}", True, skipped=str(error))
                        continue
                    out = attention(q, k, v, batch, causal, window).float()
                    error = (out - reference).abs().max().item()
                    record(f"attention {name} kv={kv_heads} causal={causal} window={window}", error < 3e-2,
                           max_abs=round(error, 5))


def _dense_attention(q, k, v, lengths, causal, window):
    outputs, start = [], 0
    for n in lengths:
        qs, ks, vs = (t[start:start + n].transpose(0, 1).float() for t in (q, k, v))
        repeat = qs.shape[0] // ks.shape[0]
        ks, vs = ks.repeat_interleave(repeat, 0), vs.repeat_interleave(repeat, 0)
        scores = qs @ ks.transpose(1, 2) / qs.shape[-1] ** 0.5
        distance = torch.arange(n, device=q.device)[None, :] - torch.arange(n, device=q.device)[:, None]
        if causal:
            scores = scores.masked_fill(distance > 0, float("-inf"))
        if window is not None:
            scores = scores.masked_fill(distance.abs() > window, float("-inf"))
        outputs.append((scores.softmax(-1) @ vs).transpose(0, 1))
        start += n
    return torch.cat(outputs)


def architectures(device: torch.device, root: Path) -> None:
    from tests.texts import varied_texts
    from tests.tiny import tiny_bert
    from tests.tiny_encoders import tiny_distilbert, tiny_mpnet, tiny_roberta
    from tests.tiny_rotary import tiny_modernbert, tiny_qwen3

    folders = {
        "bert": tiny_bert(root / "bert"),
        "distilbert": tiny_distilbert(root / "distilbert"),
        "mpnet": tiny_mpnet(root / "mpnet"),
        "xlm-roberta": tiny_roberta(root / "xlmr"),
        "modernbert": tiny_modernbert(root / "modernbert"),
        "qwen3": tiny_qwen3(root / "qwen3"),
    }
    texts = varied_texts(64, seed=1)
    cpu = torch.device("cpu")
    for family, folder in folders.items():
        spec = spec_from_folder(family, folder)
        ids = [t.ids for t in TextTokenizer(folder, spec.max_length).encode(texts)]
        outputs = []
        for target, dtype in ((cpu, torch.float32), (device, torch.bfloat16)):
            from engine.attention import select_backend

            served = ServedModel.load(spec, target, dtype, select_backend(target))
            batch = PackedBatch.pack(ids, position_offset=served.network.position_offset, device=target)
            with torch.inference_mode():
                outputs.append(served.network(batch, served.attention).float().cpu())
        cosine = torch.nn.functional.cosine_similarity(outputs[0], outputs[1], dim=-1).min().item()
        record(f"architecture {family} {device.type} bfloat16 vs cpu float32", cosine >= 0.99,
               min_token_cosine=round(cosine, 5), backend=served.attention_name)


async def _engine_encode(spec, device: str, dtype: str, texts: list[str]) -> tuple[np.ndarray, float]:
    engine = Engine([spec], EngineConfig(device=device, dtype=dtype))
    await engine.start()
    try:
        await engine.encode(spec.name, texts[:64])  # warm-up (load, kernels)
        started = time.perf_counter()
        result = await engine.encode(spec.name, texts)
        if device == "cuda":
            torch.cuda.synchronize()
        return result.embeddings, time.perf_counter() - started
    finally:
        await engine.stop()


def minilm(device: torch.device, texts: list[str]) -> None:
    from sentence_transformers import SentenceTransformer

    spec = default_model_spec()
    reference = SentenceTransformer(str(spec.path), device="cpu").encode(texts, normalize_embeddings=True)
    tokens = sum(len(t.ids) for t in TextTokenizer(spec.path, spec.max_length).encode(texts))
    throughput = {}
    for dtype in ("bfloat16", "float16", "float32"):
        vectors, seconds = asyncio.run(_engine_encode(spec, device.type, dtype, texts))
        cosine = float((vectors * reference).sum(1).min())
        threshold = 0.9999 if dtype == "float32" else 0.999
        record(f"all-MiniLM-L6-v2 {device.type} {dtype} vs sentence-transformers", cosine >= threshold,
               min_cosine=round(cosine, 6))
        throughput[f"shoal {dtype}"] = tokens / seconds
    peer = SentenceTransformer(str(spec.path), device=str(device))
    if device.type == "cuda":
        peer = peer.half()
    peer.encode(texts[:64], batch_size=32)
    started = time.perf_counter()
    peer.encode(texts, batch_size=32)
    if device.type == "cuda":
        torch.cuda.synchronize()
    peer_name = "sentence-transformers float16" if device.type == "cuda" else "sentence-transformers float32"
    throughput[peer_name] = tokens / (time.perf_counter() - started)
    RESULTS["measurements"]["throughput_tokens_per_second"] = {
        name: round(rate) for name, rate in throughput.items()}
    RESULTS["measurements"]["throughput_ratio_vs_peer"] = {
        name: round(rate / throughput[peer_name], 2) for name, rate in throughput.items()}
    print("throughput (tokens/s):", json.dumps(RESULTS["measurements"]["throughput_tokens_per_second"]), flush=True)


def host_tier_reload(device: torch.device, root: Path, cycles: int = 10) -> None:
    """A BERT-base-sized model parked on the host (pinned) and brought back, `cycles` times."""
    from transformers import BertConfig, BertModel

    from engine.pool import footprint
    from tests.tiny import save_model

    torch.manual_seed(0)
    folder = save_model(BertModel(BertConfig(architectures=["BertModel"])).eval(), root / "bert-base")
    spec = spec_from_folder("bert-base", folder)
    loads: dict[str, list[float]] = {"disk": [], "host": []}

    class Timings:
        def __getattr__(self, name):
            return lambda *args, **kwargs: None

        def model_loaded(self, model, seconds, source="disk"):
            loads[source].append(seconds)

    from dataclasses import replace

    other = replace(spec, name="other")
    budget = footprint(spec, 2) + footprint(spec, 2) // 2  # room for one
    engine = Engine([spec, other], EngineConfig(device=device.type, dtype="bfloat16", memory_budget=budget,
                                                host_cache=4 * budget), Timings())

    async def run():
        await engine.start()
        try:
            for _ in range(cycles):
                await engine.encode("bert-base", ["warm the path"])
                await engine.encode("other", ["and swap"])
        finally:
            await engine.stop()

    asyncio.run(run())
    host = sorted(loads["host"])
    p50 = statistics.median(host) * 1000 if host else float("nan")
    RESULTS["measurements"]["host_tier_reload_ms"] = {
        "p50": round(p50, 2), "max": round(max(host) * 1000, 2) if host else None,
        "disk_load_ms_p50": round(statistics.median(loads["disk"]) * 1000, 1) if loads["disk"] else None,
        "parameters": spec.parameter_count, "dtype": "bfloat16"}
    limit = 15 if device.type == "cuda" else 50
    record(f"host-tier reload of a BERT-base-sized model (p50 <= {limit} ms)", p50 <= limit, p50_ms=round(p50, 2),
           host_loads=len(host))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--skip", action="append", default=[],
                        choices=["attention", "architectures", "minilm", "reload"])
    args = parser.parse_args()
    device = torch.device(args.device)
    RESULTS["environment"] = {
        "torch": torch.__version__, "device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
        "cuda": torch.version.cuda, "engine_backend": Engine([default_model_spec()],
                                                               EngineConfig(device=args.device)).attention_name}
    print("environment:", json.dumps(RESULTS["environment"]), flush=True)
    from benchmarks.corpus import build_corpus

    texts = build_corpus(args.texts).texts
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        steps = {"attention": lambda: attention_backends(device), "architectures": lambda: architectures(device, root),
                 "minilm": lambda: minilm(device, list(texts)), "reload": lambda: host_tier_reload(device, root)}
        for name, step in steps.items():
            if name in args.skip:
                continue
            started = time.perf_counter()
            try:
                step()
            except Exception as error:  # report and go on: one broken step must not hide the others
                record(f"{name} step", False, error=f"{type(error).__name__}: {error}")
            print(f"-- {name} done in {time.perf_counter() - started:.1f} s", flush=True)
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], "gpu_check.json").write_text(json.dumps(RESULTS, indent=2))
    failed = [c["check"] for c in RESULTS["checks"] if not c["ok"]]
    print(f"{len(RESULTS['checks']) - len(failed)} passed, {len(failed)} failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
