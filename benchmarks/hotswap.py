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
(cosine), so a swap that serves wrong weights shows. Rounds, quiet-machine waits, CPU
accounting, facts and results come from benchmarks/harness.py: every setup once per round,
the order rotating; goodput and its ratios are medians with min-max over rounds, every other
figure of a row comes from that setup's median round (by goodput), so a row never mixes rounds.

Run from the repository root:
    python benchmarks/hotswap.py            # full run, writes benchmarks/results/hotswap-cpu.{json,md,png}
    python benchmarks/hotswap.py --quick    # smoke run (60 requests per run, one round), writes nothing unless --save
"""

from __future__ import annotations

import argparse
import asyncio
import gc
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

from benchmarks import harness
from benchmarks.corpus import build_corpus
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


def percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def ms(value: float | None) -> str:
    return "-" if value is None else (f"{value * 1000:.2f}" if value < 0.01 else f"{value * 1000:.0f}")


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
        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(args.concurrency)))
        seconds = time.perf_counter() - started
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
                result["quiet_before"] = harness.wait_for_quiet(args.quiet_wait, args.quiet_cores)
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
        harness.log("hotswap", "probe", source=source, load_p50_ms=result[source]["p50"] * 1000,
                    load_p99_ms=result[source]["p99"] * 1000, loads=cycles, pool_source=",".join(sorted(set(sources))),
                    first_request_p50_ms=result[source]["first_request_p50"] * 1000)
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
def measure(bench: harness.Bench, args, texts: list[str]) -> dict:
    base = default_model_spec()
    fp = footprint(base, 4)
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="shoal-hotswap-"))
    workdir.mkdir(parents=True, exist_ok=True)
    bench.log("models", count=max(args.n), link=args.link, workdir=workdir)
    folders = make_models(base.path, max(args.n), workdir, args.link)
    specs = [spec_from_folder(f"m{i}", folder) for i, folder in enumerate(folders)]
    weight_bytes = sum(p.stat().st_size for p in specs[0].weight_files)
    bench.log("footprint", mib=fp / 2**20, weight_file_mib=weight_bytes / 2**20)
    out: dict = {"footprint_bytes": fp, "weight_file_bytes": weight_bytes, "streams": {}}
    loop = asyncio.new_event_loop()
    vectors: dict = {}
    try:
        out["probe"] = loop.run_until_complete(load_probe(specs, fp, args.probe_cycles, texts, args))
        plan, streams = [], {}
        for n in args.n:
            streams[n] = build_streams(n, args.k[n], args.requests, texts, args.seed)
            for workload in WORKLOADS:
                out["streams"][f"n{n}-{workload}"] = describe_stream(streams[n][workload], args.k[n])
            plan += setups(n, args.k[n], fp)

        def system(setup: Setup) -> harness.InProcess:
            def run(round_: int) -> dict:
                r = loop.run_until_complete(run_stream(setup, specs[:setup.n], streams[setup.n][setup.workload], args))
                gc.collect()  # the stopped engine's models
                vectors[setup.key, round_] = r.pop("_vectors")
                return r  # its "seconds" is the stream's own window, preparation excluded
            return harness.InProcess(setup.key, run)

        out["runs"] = bench.interleave([system(s) for s in plan], on_run=lambda s, r: bench.log(
            "stream", setup=s.key, req_s=r["goodput_rps"], hot_p99_ms=r["hot_p99"] * 1000,
            hits=r["request_hit_ratio"], host_loads=r["loads"]["host"], disk_loads=r["loads"]["disk"],
            errors=r["errors"]))
    finally:
        loop.close()
        if not args.workdir and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    for key, runs in out["runs"].items():  # every vector against the resident run of the same round
        resident = key.rsplit("-", 1)[0] + "-resident"
        for r in runs:
            r["min_cosine_vs_resident"] = (None if key == resident else
                                           compare_vectors(vectors[key, r["round"]], vectors[resident, r["round"]]))
    return out


def describe_stream(stream: list[Request], k: int) -> dict:
    counts = Counter(r.model for r in stream)
    order = touched(stream)
    return {"requests": len(stream), "texts": sum(len(r.texts) for r in stream), "models": len(counts),
            "hottest": order[0], "hottest_share": counts[order[0]] / len(stream),
            "share_in_top_k": sum(counts[m] for m in order[:k]) / len(stream)}


# ---- the report ----------------------------------------------------------------------------
def summarise(args, out: dict) -> list[dict]:
    """Per setup: goodput and its ratios to the resident run of the same round as medians with
    min-max over rounds; every other figure from the setup's median round (by goodput)."""
    rows = []
    for n in args.n:
        for workload in WORKLOADS:
            resident = {r["round"]: r for r in out["runs"][f"n{n}-{workload}-resident"]}
            for config in CONFIGS:
                runs = out["runs"][f"n{n}-{workload}-{config}"]
                mid = sorted(runs, key=lambda r: r["goodput_rps"])[(len(runs) - 1) // 2]
                loads = {src: [x for r in runs for x in r["load_seconds"][src]] for src in ("host", "disk")}
                rows.append({
                    "key": f"n{n}-{workload}-{config}", "n": n, "k": args.k[n], "workload": workload,
                    "config": config, "median_round": mid["round"],
                    "goodput_rps": harness.spread([r["goodput_rps"] for r in runs]),
                    "goodput_tps": harness.spread([r["goodput_tps"] for r in runs]),
                    "goodput_vs_resident": harness.spread(
                        [r["goodput_rps"] / resident[r["round"]]["goodput_rps"] for r in runs]),
                    "hot_p99_inflation": harness.spread([r["hot_p99"] / resident[r["round"]]["hot_p99"] for r in runs]),
                    "cores": harness.spread([r["cores"] for r in runs]),
                    "others_cores": harness.spread([r["others_cores"] for r in runs]),
                    "errors": sum(r["errors"] for r in runs),
                    "error_samples": sorted({e for r in runs for e in r["error_samples"]})[:5],
                    "min_cosine_vs_resident": min((r["min_cosine_vs_resident"] for r in runs
                                                   if r["min_cosine_vs_resident"] is not None), default=None),
                    "load_p50": {src: percentile(v, 50) for src, v in loads.items()},
                    "load_p99": {src: percentile(v, 99) for src, v in loads.items()},
                    "load_count_all_rounds": {src: len(v) for src, v in loads.items()},
                    "mean_batch_seconds": mid["device_busy"] * mid["seconds"] / max(mid["batches"], 1),
                    **{k: mid[k] for k in ("latency_p50", "latency_p99", "hot_model", "hot_p50", "hot_p99", "cold_p50",
                                           "cold_p99", "request_hit_ratio", "lookups", "loads", "evictions",
                                           "evictions_of_top_k", "swap_wait_p50", "swap_wait_p99",
                                           "sequences_per_batch", "device_busy", "device_tokens_per_second")},
                })
    return rows


def checks(rows: list[dict], out: dict) -> list[dict]:
    """Issue 4's targets: host-tier reload p50 <= 50 ms, Zipf goodput >= 70% of resident, no errors."""
    host = [x for r in out["runs"].values() for run in r for x in run["load_seconds"]["host"]]
    p50 = percentile(host, 50) if host else out["probe"]["host"]["p50"]
    found = [{"check": "host-tier reload p50 <= 50 ms (all rounds' stream loads; the idle probe if none)",
              "value_ms": round(p50 * 1000, 3), "probe_ms": round(out["probe"]["host"]["p50"] * 1000, 3),
              "met": p50 <= 0.050}]
    for row in rows:
        if row["workload"] == "zipf" and row["config"] != "resident":
            ratio = row["goodput_vs_resident"]["median"]
            found.append({"check": f"{row['key']} goodput >= 0.70x resident", "ratio": ratio,
                          "met": ratio >= 0.70})
    errors = sum(row["errors"] for row in rows)
    found.append({"check": "zero errors", "errors": errors, "met": errors == 0})
    return found


def check_text(c: dict) -> str:
    value = (f"{c['value_ms']} ms (idle probe {c['probe_ms']} ms)" if "value_ms" in c
             else f"{c['ratio']:.2f}x" if "ratio" in c else f"{c['errors']} errors")
    return f"- {c['check']}: {value}: **{'met' if c['met'] else 'MISSED'}**"


def tables(rows: list[dict], probe: dict) -> list[str]:
    def ratio(row, key):
        return "reference" if row["config"] == "resident" else harness.show(row[key], "{:.2f}x")

    main = [[f"{r['n']} ({r['k']})", r["workload"], r["config"], harness.show(r["goodput_rps"], "{:.1f}"),
             ratio(r, "goodput_vs_resident"), f"{ms(r['latency_p50'])} / {ms(r['latency_p99'])}",
             f"{ms(r['hot_p50'])} / {ms(r['hot_p99'])}", ratio(r, "hot_p99_inflation"),
             f"{ms(r['cold_p50'])} / {ms(r['cold_p99'])}", f"{r['request_hit_ratio']:.2f}", str(r["errors"]),
             "reference" if r["config"] == "resident" else f"{r['min_cosine_vs_resident']:.6f}",
             harness.show(r["cores"], "{:.2f}"), f"{r['others_cores']['max']:.2f}"] for r in rows]

    def load(row, src):
        count = row["load_count_all_rounds"][src]
        return f"{ms(row['load_p50'][src])} / {ms(row['load_p99'][src])} ({count})" if count else "-"

    mechanics = [[f"{r['n']} ({r['k']})", r["workload"], r["config"],
                  f"{r['lookups'].get('hit', 0)}/{r['lookups'].get('host', 0)}/{r['lookups'].get('miss', 0)}",
                  f"{r['loads']['host']} / {r['loads']['disk']}", f"{r['evictions']} ({r['evictions_of_top_k']})",
                  load(r, "host"), load(r, "disk"), f"{ms(r['swap_wait_p50'])} / {ms(r['swap_wait_p99'])}",
                  f"{r['sequences_per_batch']:.1f}", ms(r["mean_batch_seconds"]), f"{r['device_busy']:.2f}",
                  f"{r['device_tokens_per_second']:,.0f}" if r["device_tokens_per_second"] else "-"] for r in rows]
    labels = {"host": "host tier (evicted model kept built in RAM)",
              "disk-page-cache": "disk, weight file in the OS page cache",
              "disk-cold-file": "disk, weight file dropped from the page cache first (posix_fadvise DONTNEED)"}
    probes = [[label, ms(probe[src]["p50"]), ms(probe[src]["p99"]), ms(probe[src]["max"]),
               str(len(probe[src]["samples"])), ms(probe[src]["first_request_p50"]),
               ms(probe[src]["again_request_p50"])] for src, label in labels.items()]
    return [
        *harness.table(["N (k)", "stream", "config", "req/s", "x resident", "p50 / p99 ms", "hot p50 / p99 ms",
                        "hot p99 x", "cold-arrival p50 / p99 ms", "request hits", "errors", "min cosine", "cores",
                        "others (max)"], main),
        "",
        ("Swap mechanics (each setup's median round): pool lookups hit/host/miss, loads by source, evictions (of "
         "the stream's k most requested models), load latency by source over all rounds, swap wait, sequences per "
         "batch, mean batch time, device busy (forward-pass seconds / wall seconds) and device tokens/s."),
        "",
        *harness.table(["N (k)", "stream", "config", "lookups", "loads host / disk", "evictions (of top k)",
                        "host load p50 / p99 ms (n)", "disk load p50 / p99 ms (n)", "swap wait p50 / p99 ms",
                        "seqs/batch", "mean batch ms", "device busy", "device tokens/s"], mechanics),
        "",
        "## Load latency by source (probe: single loads on an idle engine, budget for one model)",
        "",
        *harness.table(["load source", "load p50 ms", "load p99 ms", "load max ms", "loads",
                        "first request after the load, p50 ms", "the same request again, p50 ms"], probes),
    ]


def report(bench: harness.Bench, args, out: dict, rows: list[dict], found: list[dict], corpus) -> list[str]:
    fp, rc = out["footprint_bytes"], out["probe"]["read_checkpoint"]
    streams = "; ".join(f"`{key}`: {s['requests']} requests, {s['texts']} texts over {s['models']} models, hottest "
                        f"{s['hottest']} {100 * s['hottest_share']:.0f}%, the k most requested "
                        f"{100 * s['share_in_top_k']:.0f}%" for key, s in out["streams"].items())
    return [
        (f"N copies m0..m(N-1) of all-MiniLM-L6-v2, each its own folder ({args.link} of the files), float32, footprint "
         f"{fp / 2**20:.1f} MiB (weights + reserve), weight file {out['weight_file_bytes'] / 2**20:.1f} MiB. Budgets: "
         + "; ".join(f"N={n}: k={args.k[n]}" for n in args.n) + " (k footprints + 8 MiB). Configs: **resident** = "
         "budget for all N (the peer, nothing swaps); **host** = budget for k, host tier with room for all N; "
         "**disk** = budget for k, no host tier (every reload reads the file and rebuilds the model). "
         f"max_batch_tokens {args.max_batch_tokens}, swap_age_seconds {args.swap_age}."),
        "",
        (f"Dataset: {corpus.describe()}. Requests: {args.requests} per run, 1-4 texts each, seeded, closed loop from "
         f"{args.concurrency} clients pulling the next request of one fixed sequence, the same for all three configs. "
         f"Zipf: model rank r with probability proportional to 1/r^{ZIPF_S}; thrash: round-robin over k+1 models. "
         f"Streams: {streams}. Before timing, every model a stream uses gets one tiny request, least requested "
         "first (files read once, tokenizers built, the most requested models resident)."),
        "",
        bench.method_line() + " The three configs of a stream are neighbours in the order.",
        "",
        ("Req/s: completed requests / wall seconds of the stream; x resident: each round's req/s over the resident "
         "run's of the same round, median (min-max); hot: the stream's most requested model, hot p99 x its p99 over "
         "the resident run's (same convention); all other figures come from the setup's median round by req/s. "
         "Cold-arrival: requests whose model was not resident when issued; request hits: the share that was. Min "
         "cosine: every output vector against the resident run's vector for the same request (all rounds). Cores: "
         "this process's CPU over the whole run (engine start and warm-up included) per wall second; others: every "
         "other process, max over rounds."),
        "",
        *tables(rows, out["probe"]),
        "",
        (f"`read_checkpoint` (safetensors `load_file`) maps the weight file: p50 {ms(rc['page_cache_p50'])} ms with "
         "the "
         f"file in the page cache, {ms(rc['cold_file_p50'])} ms after dropping it; touching every page afterwards "
         f"takes p50 {ms(rc['page_in_page_cache_p50'])} ms from the page cache, {ms(rc['page_in_cold_file_p50'])} ms "
         "from a dropped file. On a CPU the host tier keeps the built model in RAM (`to_host`/`to_device` are no-ops), "
         "so a host-tier reload is bookkeeping on the loader thread; a GPU adds a host-to-device copy."),
        "",
        "Targets (issue 4):",
        "",
        *[check_text(c) for c in found],
    ]


def plot(rows: list[dict], bench: harness.Bench):
    def draw(path: Path) -> None:
        bars = [{"label": f"N={r['n']} (k={r['k']}) {r['workload']}", "spread": r["goodput_vs_resident"],
                 "group": r["config"], "digits": 2} for r in rows if r["config"] != "resident"]
        harness.bar_chart(path, f"Hot swap: goodput over all-resident, {bench.facts['cpu']['model']}", bars,
                          "req/s over the all-resident run of the same round (median, whiskers min-max)",
                          f"commit {bench.facts['git']['short']}, {bench.facts['date']}")
    return draw


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="4:2,16:4",
                        help="N:k pairs, N models with a budget for k of them (default 4:2,16:4)")
    parser.add_argument("--requests", type=int, default=None, help="requests per run (default 240; 60 with --quick)")
    parser.add_argument("--concurrency", type=int, default=8, help="closed-loop clients (default 8)")
    parser.add_argument("--swap-age", type=float, default=0.1, help="EngineConfig.swap_age_seconds (default 0.1)")
    parser.add_argument("--max-batch-tokens", type=int, default=4096)
    parser.add_argument("--probe-cycles", type=int, default=12, help="loads per source in the load probe")
    parser.add_argument("--link", choices=["copy", "hardlink", "symlink"], default="copy",
                        help="how the N model folders are made (default copy: distinct files, distinct page cache)")
    parser.add_argument("--texts", type=int, default=2000, help="corpus size to draw requests from")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", default=None, help="where the model folders go (default: a temp dir, removed)")
    parser.add_argument("--keep", action="store_true", help="keep the temp model folders")
    harness.add_arguments(parser, rounds=3, quiet_wait=60.0)
    args = parser.parse_args(argv)
    bench = harness.Bench("hotswap", args, argv)
    pairs = [p.split(":") for p in args.models.split(",")]
    args.n = [int(n) for n, _ in pairs]
    args.k = {int(n): int(k) for n, k in pairs}
    if any(not 1 <= args.k[n] < n for n in args.n):
        parser.error("--models: need 1 <= k < N")
    args.requests = args.requests or (60 if args.quick else 240)
    torch.set_num_threads(args.threads)

    corpus = build_corpus(args.texts, seed=args.seed)
    out = measure(bench, args, corpus.texts)
    rows = summarise(args, out)
    found = checks(rows, out)
    data = {"model": "all-MiniLM-L6-v2 (N copies m0..m{N-1})", "dtype": "float32",
            "dataset": {"description": corpus.describe(), "seed": corpus.seed, **corpus.stats},
            "method": {**bench.method(), "models": args.n, "resident_capacity_k": {str(n): args.k[n] for n in args.n},
                       "model_folders": args.link, "budget": "k * footprint + 8 MiB (resident: N * footprint + 8 MiB)",
                       "requests_per_run": args.requests, "concurrency": args.concurrency, "zipf_s": ZIPF_S,
                       "swap_age_seconds": args.swap_age, "max_batch_tokens": args.max_batch_tokens,
                       "seed": args.seed},
            "footprint_bytes": out["footprint_bytes"], "weight_file_bytes": out["weight_file_bytes"],
            "streams": out["streams"], "probe": out["probe"], "results": rows, "checks": found, "rounds": out["runs"]}
    bench.write(data, "Hot swap: N models under a budget for k (cpu)", report(bench, args, out, rows, found, corpus),
                plot(rows, bench))


if __name__ == "__main__":
    main()
