"""Soak and fault runs against a real `shoal serve` subprocess (issue 9, item 6).

Everything goes over loopback HTTP from this process (httpx, and raw sockets for clients
that hang up), to `shoal serve` started as a subprocess, never an in-process engine:

  1. soak:    8 tiny BERT models (distinct seeds) under a memory budget that holds 2 and a
              host cache that holds 3; Zipf(1.1) model choice, 1-8 texts per request,
              64 closed-loop clients; ~10% of requests hang up mid-request (raw socket closed
              0-300 ms after sending), ~10% carry a short X-Shoal-Deadline-Ms (50-500 ms).
  2. sigterm: SIGTERM with ~200 requests in flight (every request must end in its correct
              result or a clean error / refusal), and SIGTERM with nothing pending.
  3. replace: the model folder of m0 replaced (atomically) while m0 is served, then an
              operator unload and more traffic: do answers switch to the new weights? And
              the same without traffic pressure: does unload / load pick up the new file?
  4. faults:  a model with corrupt bytes from the start, one corrupted after start-up and
              one whose folder is deleted after start-up, under the soak's traffic.

Every 200 is compared with that model's sentence-transformers output (computed up front
for the whole text pool; atol 1e-5). A request that gets no answer within its bound (its
deadline, else the server's default deadline, plus a margin) counts as hung. Nothing is
retried or filtered: whatever the server does shows in the counts.

Run from the repository root:
    python benchmarks/soak.py            # full run (10,000 soak requests), writes benchmarks/results/soak-cpu.{md,json}
    python benchmarks/soak.py --quick    # smoke run (1,000 soak requests), writes nothing unless --save
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx
import numpy as np

from benchmarks import harness
from engine import spec_from_folder
from engine.pool import footprint
from tests.texts import varied_texts
from tests.tiny import tiny_bert, write_sentence_transformers_config

MODELS = 8
ZIPF_S = 1.1
ATOL = 1e-5
DEADLINE_HEADER = "X-Shoal-Deadline-Ms"
SLACK = 1 << 20  # budget = k footprints + this: room for k, never k + 1
FLOAT32 = 4
SERVER_DEADLINE = 60.0  # --deadline-seconds: the bound of requests without their own deadline
MARGIN = 30.0  # client-side grace past a request's bound before it counts as hung
DRAIN = 10.0  # --drain-seconds
LATE = 1.0  # a 504 later than its deadline by more than this is late
QUEUE_EMPTY_LIMIT = 10.0  # how long to watch the queue gauges after traffic stops
RSS_GROWTH = 50.0  # MiB of RSS growth over the soak's second half reported as a possible leak


def log(message: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def percentile(values, q: float) -> float | None:
    return float(np.percentile(values, q)) if len(values) else None


# ---- models and references ---------------------------------------------------------------
@dataclass
class Models:
    root: Path
    folders: dict[str, Path]  # name -> folder (m0..m7, and m0-next: m0's replacement)
    references: dict[str, np.ndarray]  # name -> sentence-transformers vectors of the whole text pool
    texts: list[str]
    footprint: int
    weight_bytes: int
    shape: dict


def build_model(folder: Path, seed: int, shape: dict) -> Path:
    tiny_bert(folder, seed=seed, **shape)
    write_sentence_transformers_config(folder, pooling="mean", normalize=True)
    return folder


def reference_vectors(folder: Path, texts: list[str]) -> np.ndarray:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(folder), device="cpu")
    return np.asarray(model.encode(texts, normalize_embeddings=True, batch_size=32), dtype=np.float32)


def build_models(root: Path, texts: list[str], shape: dict) -> Models:
    folders, references = {}, {}
    seeds = {f"m{i}": 100 + i for i in range(MODELS)} | {"m0-next": 900}  # m0-next: what replaces m0's weights
    for name, seed in seeds.items():
        folders[name] = build_model(root / name, seed=seed, shape=shape)
        references[name] = reference_vectors(folders[name], texts)
        log(f"built {name} (seed {seed}) and its reference over {len(texts)} texts")
    fp = footprint(spec_from_folder("m0", folders["m0"]), FLOAT32)
    weight = (folders["m0"] / "model.safetensors").stat().st_size
    return Models(root, folders, references, texts, fp, weight, shape)


def faulty_folder(models: Models, name: str, seed: int) -> Path:
    """A valid model folder of the soak's shape, for a fault phase to break."""
    return build_model(models.root / "faults" / name, seed, models.shape)


def corrupt(folder: Path) -> None:
    """Replace the weight file's bytes with noise of the same length (no valid header)."""
    weights = folder / "model.safetensors"
    noise = np.random.default_rng(7).integers(0, 256, size=weights.stat().st_size, dtype=np.uint8).tobytes()
    replace_file(weights, noise)


def replace_file(target: Path, data: bytes) -> None:
    """Atomic: a reader sees the old file or the new one, never a half-written one."""
    temporary = target.with_name("." + target.name + ".new")
    temporary.write_bytes(data)
    os.replace(temporary, target)


# ---- the server ----------------------------------------------------------------------------
def shoal_command(tree: Path | None = None) -> list[str]:
    """`shoal` beside this interpreter, or `python -m gateway.cli` run inside `tree` (a
    snapshot: `-m` puts the current folder first on sys.path, ahead of the editable install)."""
    beside = Path(sys.executable).parent / "shoal"
    if tree is None and beside.exists():
        return [str(beside)]
    return [sys.executable, "-m", "gateway.cli"]


class Server:
    """`shoal serve` on a free loopback port; its log goes to a file kept for the report."""

    def __init__(self, label: str, models: dict[str, Path], budget: int, host_cache: int, log_dir: Path,
                 threads: int, tree: Path | None = None, extra_env: dict[str, str] | None = None):
        self.label = label
        self.port = harness.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        options = ["serve", "--host", "127.0.0.1", "--port", str(self.port), "--device", "cpu", "--dtype", "float32",
                   "--memory-budget", str(budget), "--host-cache", str(host_cache),
                   "--deadline-seconds", str(SERVER_DEADLINE), "--drain-seconds", str(DRAIN),
                   "--load-timeout-seconds", "30", "--log-level", "info"]
        for name, folder in models.items():
            options += ["--model", f"{name}={folder}"]
        self.tree = tree
        self.command = shoal_command(tree) + options
        self.log_path = log_dir / f"server-{label}.log"
        env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS=str(threads), **(extra_env or {}))
        with open(self.log_path, "w") as log_file:  # the child keeps its own copy of the descriptor
            self.process = subprocess.Popen(self.command, cwd=tree or ROOT, env=env, stdout=log_file,
                                            stderr=subprocess.STDOUT)
        self.started = time.monotonic()

    def shown_command(self) -> str:
        """The command line with the temp folder abbreviated, for the report."""
        return " ".join(["shoal"] + self.command[len(shoal_command(self.tree)):])

    async def wait_ready(self, timeout: float = 120.0) -> float:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=5.0) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"shoal serve exited with {self.process.returncode}; see {self.log_path}")
                try:
                    if (await client.get(self.url + "/readyz")).status_code == 200:
                        return time.monotonic() - self.started
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.2)
        raise RuntimeError(f"shoal serve was not ready after {timeout:.0f} s; see {self.log_path}")

    def memory(self) -> dict:
        """VmRSS and VmHWM (peak RSS) in MiB, from /proc."""
        found = {}
        try:
            for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
                if line.startswith(("VmRSS:", "VmHWM:")):
                    key, value = line.split(":", 1)
                    found[key.lower().replace("vm", "")] = round(int(value.split()[0]) / 1024, 1)
        except OSError:
            pass
        return {"rss_mib": found.get("rss"), "peak_rss_mib": found.get("hwm")}

    async def terminate(self, limit: float) -> dict:
        """SIGTERM, then wait (polling, so the event loop keeps running) up to `limit` s."""
        sent = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        while self.process.poll() is None and time.monotonic() - sent < limit:
            await asyncio.sleep(0.01)
        exited = self.process.poll() is not None
        seconds = time.monotonic() - sent
        if not exited:
            self.kill()
        return {"exit_seconds": round(seconds, 3), "exited": exited, "returncode": self.process.returncode}

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def log_findings(self) -> dict:
        """Error lines and tracebacks in the server log (a clean run has only expected load errors)."""
        text = self.log_path.read_text(errors="replace")
        errors: Counter = Counter()
        for line in text.splitlines():
            if '"level": "error"' in line or '"level": "critical"' in line:
                try:
                    entry = json.loads(line)
                    errors[f"{entry.get('message')} | {entry.get('reason', entry.get('exception', ''))}"[:200]] += 1
                except ValueError:
                    errors[line[:200]] += 1
        return {"error_lines": sum(errors.values()), "tracebacks": text.count("Traceback"),
                "errors": dict(errors.most_common(8)), "log": str(self.log_path)}


# ---- requests -------------------------------------------------------------------------------
@dataclass
class Planned:
    model: str
    rows: list[int]
    kind: str = "plain"  # plain | deadline (X-Shoal-Deadline-Ms) | disconnect (raw socket, closed unread)
    deadline_ms: int | None = None
    hang_up_after: float | None = None


@dataclass
class Outcome:
    planned: Planned
    outcome: str  # ok | mismatch | status | disconnected | hung | refused | dropped | error
    status: int | None
    started: float
    ended: float
    error: str | None = None
    match: str | None = None  # which reference a 200 matched (replace phase: old or new)
    max_abs_error: float | None = None

    @property
    def seconds(self) -> float:
        return self.ended - self.started


def zipf_weights(n: int) -> np.ndarray:
    weights = 1.0 / np.arange(1, n + 1) ** ZIPF_S
    return weights / weights.sum()


def plan_requests(count: int, models: list[str], weights, texts: int, rng, disconnect: float = 0.1,
                  deadline: float = 0.1) -> list[Planned]:
    """A seeded request sequence: model by `weights`, 1-8 texts, kinds drawn per request."""
    plan = []
    for choice, size, draw in zip(rng.choice(len(models), size=count, p=weights), rng.integers(1, 9, size=count),
                                  rng.random(count), strict=True):
        planned = Planned(models[choice], [int(i) for i in rng.integers(0, texts, size=size)])
        if draw < disconnect:
            planned.kind, planned.hang_up_after = "disconnect", float(rng.uniform(0.0, 0.3))
        elif draw < disconnect + deadline:
            planned.kind, planned.deadline_ms = "deadline", int(rng.integers(50, 501))
        plan.append(planned)
    return plan


@dataclass
class Traffic:
    """What every sender needs: where the server is, the texts, and the references per model
    (label -> vectors; the replace phase gives m0 two)."""
    url: str
    port: int
    texts: list[str]
    candidates: dict[str, dict[str, np.ndarray]]

    def body(self, planned: Planned) -> dict:
        return {"model": planned.model, "inputs": [self.texts[i] for i in planned.rows]}


def bound(planned: Planned) -> float:
    """How long a request may go unanswered before it counts as hung."""
    own = planned.deadline_ms / 1000 if planned.deadline_ms else SERVER_DEADLINE
    return own + MARGIN


def judge(traffic: Traffic, planned: Planned, vectors) -> tuple[str, str | None, float | None]:
    got = np.asarray(vectors, dtype=np.float32)
    worst = None
    for label, reference in traffic.candidates.get(planned.model, {}).items():
        expected = reference[planned.rows]
        if got.shape != expected.shape:
            continue
        error = float(np.abs(got - expected).max())
        if error <= ATOL:
            return "ok", label, error
        worst = error if worst is None else min(worst, error)
    return "mismatch", None, worst


def error_text(response: httpx.Response) -> str:
    try:
        error = response.json()["error"]
        return f"{error.get('type')}: {error.get('message')}"
    except (ValueError, KeyError, TypeError):
        return response.text[:200]


async def post(client: httpx.AsyncClient, traffic: Traffic, planned: Planned) -> Outcome:
    headers = {DEADLINE_HEADER: str(planned.deadline_ms)} if planned.deadline_ms else {}
    started = time.monotonic()

    def done(outcome: str, status: int | None = None, error: str | None = None) -> Outcome:
        return Outcome(planned, outcome, status, started, time.monotonic(), error)

    try:
        response = await asyncio.wait_for(client.post("/v1/encode", json=traffic.body(planned), headers=headers),
                                          bound(planned))
    except asyncio.TimeoutError:
        return done("hung")
    except httpx.ConnectError as error:
        return done("refused", error=type(error).__name__)
    except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as error:
        return done("dropped", error=f"{type(error).__name__}: {error}")
    except httpx.HTTPError as error:
        return done("error", error=f"{type(error).__name__}: {error}")
    if response.status_code != 200:
        return done("status", response.status_code, error_text(response))
    outcome = done("ok", 200)
    outcome.outcome, outcome.match, outcome.max_abs_error = judge(traffic, planned, response.json()["embeddings"])
    return outcome


def raw_request(traffic: Traffic, planned: Planned) -> bytes:
    body = json.dumps(traffic.body(planned)).encode()
    head = (f"POST /v1/encode HTTP/1.1\r\nHost: 127.0.0.1:{traffic.port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n")
    if planned.deadline_ms:
        head += f"{DEADLINE_HEADER}: {planned.deadline_ms}\r\n"
    return (head + "\r\n").encode() + body


async def post_and_hang_up(traffic: Traffic, planned: Planned) -> Outcome:
    """The whole request on a raw socket, closed unread after `hang_up_after` seconds: the
    way a client that times out or crashes leaves."""
    started = time.monotonic()
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", traffic.port), 10)
    except (OSError, asyncio.TimeoutError) as error:
        return Outcome(planned, "refused", None, started, time.monotonic(), type(error).__name__)
    try:
        writer.write(raw_request(traffic, planned))
        await writer.drain()
        await asyncio.sleep(planned.hang_up_after)
    except OSError:
        pass
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass
    return Outcome(planned, "disconnected", None, started, time.monotonic())


class Progress:
    """A progress line every 10% of the plan (or every 20 s), with the outcomes so far."""

    def __init__(self, label: str, total: int):
        self.label, self.total = label, total
        self.next_step, self.last = max(1, total // 10), time.monotonic()
        self.started = time.monotonic()

    def update(self, outcomes: list[Outcome]) -> None:
        done = len(outcomes)
        if done < self.next_step and time.monotonic() - self.last < 20:
            return
        self.next_step = (done // max(1, self.total // 10) + 1) * max(1, self.total // 10)
        self.last = time.monotonic()
        counts = Counter(o.outcome if o.outcome != "status" else str(o.status) for o in outcomes)
        log(f"  {self.label}: {done}/{self.total} in {time.monotonic() - self.started:.0f} s "
            + " ".join(f"{k}={v}" for k, v in sorted(counts.items())))


async def drive(traffic: Traffic, plan: list[Planned], concurrency: int, label: str,
                stop_on_refusal: bool = False, outcomes: list[Outcome] | None = None) -> list[Outcome]:
    """`concurrency` closed-loop clients pulling the next request of `plan`. With
    `stop_on_refusal` a client stops at its first refused connection (the server is gone).
    Outcomes go to `outcomes` as they come, so a phase can act once traffic has run a while."""
    outcomes = [] if outcomes is None else outcomes
    cursor = 0
    progress = Progress(label, len(plan))

    async def client_loop() -> None:
        nonlocal cursor
        # One keep-alive connection per client, in its own pool: httpcore's shared pool does
        # O(connections x requests) work per request, which at 200 connections made this
        # process, not the server, the bottleneck (the server saw ~10 of 200 requests).
        async with httpx.AsyncClient(base_url=traffic.url, limits=httpx.Limits(max_connections=1),
                                     timeout=SERVER_DEADLINE + 2 * MARGIN) as client:
            while cursor < len(plan):
                planned = plan[cursor]
                cursor += 1
                if planned.kind == "disconnect":
                    outcome = await post_and_hang_up(traffic, planned)
                else:
                    outcome = await post(client, traffic, planned)
                outcomes.append(outcome)
                progress.update(outcomes)
                if stop_on_refusal and outcome.outcome == "refused":
                    return

    await asyncio.gather(*(client_loop() for _ in range(concurrency)))
    return outcomes


# ---- summaries ------------------------------------------------------------------------------
def summarize(outcomes: list[Outcome]) -> dict:
    """Counts by outcome and status, latency of 200s, how 504s kept their deadlines, error samples."""
    answered = [o for o in outcomes if o.status is not None]
    ok = [o.seconds for o in outcomes if o.status == 200]
    timed_out = [o for o in outcomes if o.status == 504]
    late = [o for o in timed_out if o.planned.deadline_ms and o.seconds > o.planned.deadline_ms / 1000 + LATE]
    errors = Counter(f"{o.status or o.outcome} {o.error}"[:200] for o in outcomes if o.error)
    mismatched = [o for o in outcomes if o.outcome == "mismatch"]
    return {
        "sent": len(outcomes),
        "answered": len(answered),
        "by_status": {str(k): v for k, v in sorted(Counter(o.status for o in answered).items())},
        "by_outcome": dict(sorted(Counter(o.outcome for o in outcomes).items())),
        "by_kind": {kind: dict(sorted(Counter(str(o.status or o.outcome) for o in outcomes
                                               if o.planned.kind == kind).items()))
                    for kind in sorted({o.planned.kind for o in outcomes})},
        "disconnected": sum(o.outcome == "disconnected" for o in outcomes),
        "mismatches": len(mismatched),
        "mismatch_samples": [{"model": o.planned.model, "rows": o.planned.rows, "max_abs_error": o.max_abs_error}
                             for o in mismatched[:5]],
        "hung": sum(o.outcome == "hung" for o in outcomes),
        "server_errors_5xx": sum(1 for o in answered if o.status >= 500 and o.status != 504 and o.status != 503),
        "latency_200_p50_ms": _ms(percentile(ok, 50)), "latency_200_p99_ms": _ms(percentile(ok, 99)),
        "latency_200_max_ms": _ms(max(ok) if ok else None),
        "deadline_504_p50_ms": _ms(percentile([o.seconds for o in timed_out], 50)),
        "deadline_504_p99_ms": _ms(percentile([o.seconds for o in timed_out], 99)),
        "late_504": len(late), "504_without_own_deadline": sum(1 for o in timed_out if not o.planned.deadline_ms),
        "worst_504_past_deadline_ms": _ms(max((o.seconds - o.planned.deadline_ms / 1000 for o in timed_out
                                               if o.planned.deadline_ms), default=None)),
        "error_samples": dict(errors.most_common(8)),
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


# ---- metrics --------------------------------------------------------------------------------
_SAMPLE = re.compile(r"^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)$")


def metric_samples(text: str) -> list[tuple[str, dict, float]]:
    samples = []
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
            samples.append((match.group(1), labels, float(match.group(3))))
    return samples


def metric_sum(samples, name: str, **labels) -> float:
    return sum(v for n, found, v in samples if n == name and all(found.get(k) == x for k, x in labels.items()))


def metric_by(samples, name: str, label: str) -> dict:
    found: Counter = Counter()
    for n, labels, v in samples:
        if n == name:
            found[labels.get(label, "")] += v
    return {k: round(v, 3) for k, v in sorted(found.items())}


async def scrape(client: httpx.AsyncClient) -> list:
    return metric_samples((await client.get("/metrics", timeout=10)).text)


async def server_gauges(url: str) -> dict:
    async with httpx.AsyncClient(base_url=url) as client:
        samples = await scrape(client)
    return {"in_flight": metric_sum(samples, "shoal_requests_in_flight"),
            "queue_depth": metric_sum(samples, "shoal_queue_depth"),
            "queue_tokens": metric_sum(samples, "shoal_queue_tokens")}


async def queue_settles(url: str) -> dict:
    """Poll /metrics from the moment traffic stops until shoal_queue_tokens, shoal_queue_depth
    and shoal_requests_in_flight all read 0 (or QUEUE_EMPTY_LIMIT passes)."""
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=url) as client:
        while True:
            samples = await scrape(client)
            gauges = {"queue_tokens": metric_sum(samples, "shoal_queue_tokens"),
                      "queue_depth": metric_sum(samples, "shoal_queue_depth"),
                      "in_flight": metric_sum(samples, "shoal_requests_in_flight")}
            elapsed = time.monotonic() - started
            if not any(gauges.values()) or elapsed > QUEUE_EMPTY_LIMIT:
                settled = not any(gauges.values())
                return {"settled": settled, "seconds_to_zero": round(elapsed, 3) if settled else None,
                        "last": gauges, "per_model_tokens": metric_by(samples, "shoal_queue_tokens", "model")}
            await asyncio.sleep(0.05)


async def pool_view(url: str) -> dict:
    """Loads, evictions and load failures from /metrics, states from /v1/models."""
    async with httpx.AsyncClient(base_url=url) as client:
        samples = await scrape(client)
        models = (await client.get("/v1/models", timeout=10)).json()["data"]
    return {
        "loads_by_source": metric_by(samples, "shoal_model_loads_total", "source"),
        "evictions_by_reason": metric_by(samples, "shoal_model_evictions_total", "reason"),
        "load_failures": metric_by(samples, "shoal_model_load_failures_total", "model"),
        "server_requests_by_status": metric_by(samples, "shoal_requests_total", "status"),
        "states": {m["id"]: m["state"] for m in models},
        "errors": {m["id"]: m["error"] for m in models if m.get("error")},
    }


# ---- phases ---------------------------------------------------------------------------------
@dataclass
class Context:
    args: argparse.Namespace
    models: Models
    log_dir: Path
    budget: int
    host_cache: int
    rng: np.random.Generator
    tree: Path | None = None  # serve from this snapshot instead of the working tree
    commands: dict = field(default_factory=dict)

    def main_models(self) -> dict[str, Path]:
        return {f"m{i}": self.models.folders[f"m{i}"] for i in range(MODELS)}

    def traffic(self, server: Server, candidates: dict | None = None) -> Traffic:
        default = {f"m{i}": {"reference": self.models.references[f"m{i}"]} for i in range(MODELS)}
        return Traffic(server.url, server.port, self.models.texts, candidates or default)

    async def start(self, label: str, models: dict[str, Path], host_cache: int | None = None) -> Server:
        server = Server(label, models, self.budget, self.host_cache if host_cache is None else host_cache,
                        self.log_dir, self.args.threads, self.tree, self.args.server_env)
        self.commands[label] = server.shown_command()
        seconds = await server.wait_ready()
        log(f"  {label}: shoal serve (pid {server.process.pid}) ready in {seconds:.1f} s on {server.url}")
        return server


async def warm(traffic: Traffic, names: list[str]) -> dict:
    """One small request per model: every weight file read once, tokenizers built, the host
    tier filled, so RSS after this is the steady state that later growth is measured from."""
    plan = [Planned(name, [0, 20, 40]) for name in names]
    outcomes = await drive(traffic, plan, 1, "warm-up")
    return {o.planned.model: o.outcome if o.status == 200 else f"{o.status} {o.error}" for o in outcomes}


async def phase_soak(ctx: Context) -> dict:
    log(f"soak: {ctx.args.requests} requests, {ctx.args.concurrency} clients, Zipf({ZIPF_S}) over {MODELS} models")
    server = await ctx.start("soak", ctx.main_models())
    try:
        traffic = ctx.traffic(server)
        memory = {"ready": server.memory()}
        warmed = await warm(traffic, list(ctx.main_models()))
        memory["after_warm_up"] = server.memory()
        plan = plan_requests(ctx.args.requests, list(ctx.main_models()), zipf_weights(MODELS), len(ctx.models.texts),
                             ctx.rng)
        started, outcomes, samples = time.monotonic(), [], []
        sampler = asyncio.ensure_future(sample_rss(server, outcomes, samples))
        await drive(traffic, plan, ctx.args.concurrency, "soak", outcomes=outcomes)
        seconds = time.monotonic() - started
        sampler.cancel()
        queue = await queue_settles(server.url)
        memory["after_traffic"] = server.memory()
        await asyncio.sleep(5.0)
        memory["after_5s_idle"] = server.memory()
        pool = await pool_view(server.url)
        stop = await server.terminate(DRAIN + 30)
    finally:
        server.kill()
    result = {"seconds": round(seconds, 1), "requests_per_second": round(len(outcomes) / seconds, 1),
              "warm_up": warmed, "summary": summarize(outcomes), "queue_after_traffic": queue, "memory": memory,
              "rss_growth_mib": _growth(memory), "rss_trend": _trend(samples, len(plan)),
              "rss_samples": samples, "pool": pool, "sigterm_after_soak": stop,
              "server_log": server.log_findings(),
              "models_share": _shares(plan)}
    log(f"soak: done in {seconds:.0f} s; {_brief(result['summary'])}; queue settled "
        f"{queue['seconds_to_zero']} s; RSS {memory['after_warm_up']['rss_mib']} -> "
        f"{memory['after_5s_idle']['rss_mib']} MiB")
    return result


async def sample_rss(server: Server, outcomes: list[Outcome], samples: list[dict]) -> None:
    """The server's RSS every 2 s against requests answered: a leak grows with requests, an
    allocator settling after the first swaps does not."""
    started = time.monotonic()
    while True:
        samples.append({"seconds": round(time.monotonic() - started, 1), "requests": len(outcomes),
                        "rss_mib": server.memory()["rss_mib"]})
        await asyncio.sleep(2.0)


def _trend(samples: list[dict], total: int) -> dict:
    """RSS after 10%, 50% and all of the requests; the second half's growth is the leak signal."""
    def at(share: float) -> float | None:
        return next((x["rss_mib"] for x in samples if x["requests"] >= share * total), samples[-1]["rss_mib"])

    if not samples:
        return {}
    marks = {"at_10%": at(0.1), "at_50%": at(0.5), "at_end": samples[-1]["rss_mib"]}
    marks["second_half_growth_mib"] = round(marks["at_end"] - marks["at_50%"], 1)
    return marks


def _growth(memory: dict) -> float | None:
    before, after = memory["after_warm_up"]["rss_mib"], memory["after_5s_idle"]["rss_mib"]
    return None if before is None or after is None else round(after - before, 1)


def _shares(plan: list[Planned]) -> dict:
    counts = Counter(p.model for p in plan)
    return {m: round(c / len(plan), 3) for m, c in sorted(counts.items())}


def _brief(summary: dict) -> str:
    return (f"status {summary['by_status']}, disconnected {summary['disconnected']}, mismatches "
            f"{summary['mismatches']}, hung {summary['hung']}, p50/p99 {summary['latency_200_p50_ms']}/"
            f"{summary['latency_200_p99_ms']} ms")


async def phase_sigterm_load(ctx: Context) -> dict:
    """~200 closed-loop clients; SIGTERM once traffic is steady; every client keeps sending
    until its connection is refused."""
    clients = ctx.args.sigterm_clients
    log(f"sigterm under load: {clients} clients, then SIGTERM (--drain-seconds {DRAIN:g})")
    server = await ctx.start("sigterm-load", ctx.main_models())
    try:
        traffic = ctx.traffic(server)
        await warm(traffic, list(ctx.main_models()))
        plan = plan_requests(clients * 200, list(ctx.main_models()), zipf_weights(MODELS), len(ctx.models.texts),
                             ctx.rng, disconnect=0.0, deadline=0.0)
        outcomes: list[Outcome] = []
        task = asyncio.ensure_future(drive(traffic, plan, clients, "sigterm-load", True, outcomes))
        await asyncio.sleep(ctx.args.sigterm_after)
        await answered_at_least(outcomes, clients)  # every client has had an answer: the queue is full
        seen = await server_gauges(server.url)  # the server's own count: a client's count includes unsent ones
        sent_at = time.monotonic()
        log("  sending SIGTERM")
        stop = await server.terminate(DRAIN + 60)
        log(f"  server exited: {stop}")
        outcomes = await asyncio.wait_for(task, SERVER_DEADLINE + 2 * MARGIN)
    finally:
        server.kill()
    in_flight = [o for o in outcomes if o.started < sent_at < o.ended]
    after = [o for o in outcomes if o.started >= sent_at]
    return {"clients": clients, "sigterm_after_seconds": ctx.args.sigterm_after, "drain_seconds": DRAIN, **stop,
            "server_gauges_just_before_sigterm": seen,
            "answered_before_sigterm": sum(1 for o in outcomes if o.ended <= sent_at),
            "in_flight_at_sigterm": summarize(in_flight), "sent_after_sigterm": summarize(after),
            "all": summarize(outcomes), "server_log": server.log_findings()}


async def phase_sigterm_idle(ctx: Context, keep_connection: bool) -> dict:
    """Nothing pending: exit should take well under the drain time. With `keep_connection`
    an idle keep-alive connection stays open (a pooled client), which must not hold the exit."""
    label = "sigterm-idle-keepalive" if keep_connection else "sigterm-idle"
    log(f"{label}: one request, then SIGTERM with nothing pending")
    server = await ctx.start(label, {"m0": ctx.models.folders["m0"]})
    client = httpx.AsyncClient(base_url=server.url)
    try:
        answer = await client.post("/v1/encode", json={"model": "m0", "inputs": ["warm"]}, timeout=60)
        if not keep_connection:
            await client.aclose()
        await asyncio.sleep(1.0)
        stop = await server.terminate(DRAIN + 30)
    finally:
        await client.aclose()
        server.kill()
    log(f"  {label}: exited in {stop['exit_seconds']} s (drain {DRAIN:g} s)")
    return {"first_request_status": answer.status_code, "drain_seconds": DRAIN, **stop,
            "server_log": server.log_findings()}


async def model_state(url: str, model: str) -> str:
    async with httpx.AsyncClient(base_url=url) as client:
        models = (await client.get("/v1/models", timeout=10)).json()["data"]
    return next(m["state"] for m in models if m["id"] == model)


async def unload_until_done(url: str, model: str, limit: float = 30.0) -> dict:
    """POST /unload, retrying 409 (busy or loading) every 20 ms."""
    attempts: Counter = Counter()
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=url) as client:
        while time.monotonic() - started < limit:
            response = await client.post(f"/v1/models/{model}/unload", timeout=30)
            attempts[response.status_code] += 1
            if response.status_code != 409:
                body = response.json() if response.status_code == 200 else error_text(response)
                return {"status": response.status_code, "body": body, "attempts": dict(attempts),
                        "seconds": round(time.monotonic() - started, 3), "at": time.monotonic()}
            await asyncio.sleep(0.02)
    return {"status": 409, "attempts": dict(attempts), "seconds": limit, "at": time.monotonic()}


async def phase_replace_quiet(ctx: Context, host_cache: int, label: str) -> dict:
    """The operator's path without traffic pressure (nothing else evicts m0): serve m0, replace
    its weight file, unload, ask again, load, ask again. Which weights answer each time?"""
    log(f"{label}: m0 alone; replace its weights, then unload and load it")
    folder = ctx.models.root / label / "m0"
    shutil.copytree(ctx.models.folders["m0"], folder)
    server = await ctx.start(label, {"m0": folder}, host_cache)
    candidates = {"m0": {"old": ctx.models.references["m0"], "new": ctx.models.references["m0-next"]}}
    traffic, steps = ctx.traffic(server, candidates), {}
    ask = Planned("m0", [20, 40, 60])
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=SERVER_DEADLINE) as client:
            steps["served"] = _which(await post(client, traffic, ask))
            replace_file(folder / "model.safetensors", (ctx.models.folders["m0-next"] / "model.safetensors").read_bytes())
            steps["after_replace"] = _which(await post(client, traffic, ask))
            steps["unload"] = _answer(await client.post("/v1/models/m0/unload"))
            steps["after_unload"] = _which(await post(client, traffic, ask))
            steps["unload_again"] = _answer(await client.post("/v1/models/m0/unload"))
            steps["load"] = _answer(await client.post("/v1/models/m0/load"))
            steps["after_load"] = _which(await post(client, traffic, ask))
    finally:
        server.kill()
    log(f"  {label}: {steps}")
    return {"host_cache": host_cache, "steps": steps, "server_log": server.log_findings()}


def _which(outcome: Outcome) -> str:
    """Which weights answered: old, new, or what went wrong."""
    if outcome.status == 200 and outcome.match:
        return outcome.match
    return f"{outcome.status or outcome.outcome} {outcome.error or 'matches neither'}"


def _answer(response: httpx.Response) -> str:
    body = response.json() if response.status_code == 200 else error_text(response)
    return f"{response.status_code} {body.get('state') if isinstance(body, dict) else body}"


async def phase_replace(ctx: Context, host_cache: int, label: str) -> dict:
    """m0 served from its own copy; once traffic runs, its weight file is atomically replaced
    by another model's (same shape, other seed), then m0 is unloaded by the operator API."""
    count = ctx.args.replace_requests
    log(f"{label}: {count} requests (half to m0); m0's weights replaced a third of the way in, then unloaded")
    folder = ctx.models.root / label / "m0"
    shutil.copytree(ctx.models.folders["m0"], folder)
    served = dict(ctx.main_models(), m0=folder)
    server = await ctx.start(label, served, host_cache)
    candidates = {f"m{i}": {"old": ctx.models.references[f"m{i}"]} for i in range(MODELS)}
    candidates["m0"] = {"old": ctx.models.references["m0"], "new": ctx.models.references["m0-next"]}
    events: dict = {}
    try:
        traffic = ctx.traffic(server, candidates)
        await warm(traffic, list(served))
        weights = np.array([0.5] + list(zipf_weights(MODELS - 1) * 0.5))
        plan = plan_requests(count, list(served), weights, len(ctx.models.texts), ctx.rng, disconnect=0.0,
                             deadline=0.0)
        outcomes: list[Outcome] = []
        task = asyncio.ensure_future(drive(traffic, plan, ctx.args.concurrency, label, outcomes=outcomes))
        await answered_at_least(outcomes, count // 3)
        events = await replace_then_unload(ctx, folder, server.url)
        await task
        view = await pool_view(server.url)
    finally:
        server.kill()
    return {"host_cache": host_cache, "requests": count, **_switch_report(outcomes, events),
            "all": summarize(outcomes), "pool": view, "server_log": server.log_findings()}


async def answered_at_least(outcomes: list[Outcome], count: int) -> None:
    while len(outcomes) < count:
        await asyncio.sleep(0.01)


async def replace_then_unload(ctx: Context, folder: Path, url: str) -> dict:
    replace_file(folder / "model.safetensors", (ctx.models.folders["m0-next"] / "model.safetensors").read_bytes())
    replaced = time.monotonic()
    log("  m0's model.safetensors replaced (os.replace)")
    await asyncio.sleep(0.5)
    before = await model_state(url, "m0")
    unload = await unload_until_done(url, "m0")
    unload["state_before"] = before
    log(f"  unload m0: {unload['status']} {unload.get('body')} after {unload['attempts']}")
    return {"replaced_at": replaced, "unload": unload}


def _switch_report(outcomes: list[Outcome], events: dict) -> dict:
    """m0's 200s by when they were answered (before the replacement, between it and the unload,
    after the unload) and which reference they equal; flips: old answers to requests sent after
    a new one came back (stale weights served once the new ones had been)."""
    replaced, unloaded = events["replaced_at"], events["unload"]["at"]
    m0 = sorted((o for o in outcomes if o.planned.model == "m0" and o.status == 200), key=lambda o: o.started)
    windows = {"before_replace": lambda o: o.ended < replaced,
               "replace_to_unload": lambda o: replaced <= o.ended < unloaded,
               "after_unload": lambda o: o.ended >= unloaded}
    by_window = {name: dict(Counter(o.match or "neither" for o in m0 if test(o))) for name, test in windows.items()}
    first_new = min((o.ended for o in m0 if o.match == "new"), default=None)
    flips = sum(1 for o in m0 if first_new is not None and o.started > first_new and o.match == "old")
    five_hundreds = [o for o in outcomes if o.status and o.status >= 500]
    unload = {k: v for k, v in events["unload"].items() if k != "at"}
    return {"unload": unload, "m0_answers": by_window,
            "switched_to_new": first_new is not None,
            "first_new_answer_after_replace_seconds": None if first_new is None else round(first_new - replaced, 3),
            "first_new_answer_after_unload_seconds": None if first_new is None else round(first_new - unloaded, 3),
            "old_answers_after_first_new": flips,
            "errors_5xx": dict(Counter(f"{o.status} {o.planned.model}: {o.error}"[:200] for o in five_hundreds))}


async def phase_faults(ctx: Context) -> dict:
    """Three bad models beside the eight good ones, under the soak's traffic mix: `broken`
    has noise for weights from the start; `corrupted` is valid at start-up and gets noise
    after; `gone` is valid at start-up and its folder is deleted after."""
    count = ctx.args.fault_requests
    log(f"faults: {count} requests, 5% each to broken / corrupted / gone, the rest Zipf over m0..m7")
    broken = faulty_folder(ctx.models, "broken", 500)
    corrupt(broken)
    corrupted, gone = faulty_folder(ctx.models, "corrupted", 501), faulty_folder(ctx.models, "gone", 502)
    served = dict(ctx.main_models(), broken=broken, corrupted=corrupted, gone=gone)
    server = await ctx.start("faults", served)
    try:
        corrupt(corrupted)
        shutil.rmtree(gone)
        log("  corrupted's weights overwritten with noise, gone's folder deleted")
        traffic = ctx.traffic(server)
        await warm(traffic, list(ctx.main_models()))
        weights = np.array(list(zipf_weights(MODELS) * 0.85) + [0.05] * 3)
        plan = plan_requests(count, list(served), weights, len(ctx.models.texts), ctx.rng)
        outcomes = await drive(traffic, plan, ctx.args.concurrency, "faults")
        queue = await queue_settles(server.url)
        view = await pool_view(server.url)
    finally:
        server.kill()
    bad = {name: _fault_report([o for o in outcomes if o.planned.model == name], ctx.models.root)
           for name in ("broken", "corrupted", "gone")}
    good = summarize([o for o in outcomes if o.planned.model.startswith("m")])
    return {"requests": count, "faulty_models": bad, "good_models": good, "queue_after_traffic": queue,
            "pool": view, "server_log": server.log_findings()}


def _fault_report(outcomes: list[Outcome], root: Path) -> dict:
    refused = [o for o in outcomes if o.status == 503]
    messages = Counter(o.error for o in refused)
    return {**summarize(outcomes),
            "latency_503_p50_ms": _ms(percentile([o.seconds for o in refused], 50)),
            "latency_503_p99_ms": _ms(percentile([o.seconds for o in refused], 99)),
            "latency_503_max_ms": _ms(max((o.seconds for o in refused), default=None)),
            "messages": dict(messages.most_common(4)),
            "messages_name_a_server_path": sum(n for m, n in messages.items() if m and str(root) in m)}


# ---- report ---------------------------------------------------------------------------------
def findings(data: dict) -> list[str]:
    """Everything that breaks the issue's guarantees, stated plainly (nothing is filtered)."""
    found = []
    soak = data["phases"]["soak"]
    s = soak["summary"]
    for key in ("mismatches", "hung", "server_errors_5xx", "504_without_own_deadline"):
        if s[key]:
            found.append(f"soak: {key} = {s[key]}")
    if s["late_504"]:
        found.append(f"soak: {s['late_504']} 504s came more than {LATE:g} s after their deadline (worst "
                     f"{s['worst_504_past_deadline_ms']} ms past it, client-side time)")
    unexpected = {k: v for k, v in s["by_status"].items() if k not in ("200", "504")}
    if unexpected:
        found.append(f"soak: unexpected statuses {unexpected} ({s['error_samples']})")
    if not soak["queue_after_traffic"]["settled"] or (soak["queue_after_traffic"]["seconds_to_zero"] or 0) > 2:
        found.append(f"soak: queue gauges after traffic {soak['queue_after_traffic']}")
    if soak["sigterm_after_soak"]["exit_seconds"] > 2:
        found.append(f"soak: SIGTERM after the traffic took {soak['sigterm_after_soak']['exit_seconds']} s")
    if (soak["rss_trend"].get("second_half_growth_mib") or 0) > RSS_GROWTH:
        found.append(f"soak: RSS grew {soak['rss_trend']['second_half_growth_mib']} MiB over the second half of the "
                     f"requests ({soak['rss_trend']})")
    if soak["server_log"]["tracebacks"]:
        found.append(f"soak: {soak['server_log']['tracebacks']} tracebacks in the server log")
    load = data["phases"]["sigterm_load"]
    if not load["exited"] or load["exit_seconds"] > DRAIN:
        found.append(f"sigterm under load: exit after {load['exit_seconds']} s (drain {DRAIN:g} s)")
    # Requests written after SIGTERM onto a keep-alive connection that the server then closes
    # unanswered ("dropped") are HTTP/1.1's keep-alive race, not lost work; before it, they are.
    for part, kinds in (("in_flight_at_sigterm", ("hung", "dropped", "mismatch", "error")),
                        ("sent_after_sigterm", ("hung", "mismatch", "error"))):
        bad = {k: load[part]["by_outcome"].get(k, 0) for k in kinds}
        if any(bad.values()) or set(load[part]["by_status"]) - {"200", "503"}:
            found.append(f"sigterm under load, {part.replace('_', ' ')}: {bad}, statuses {load[part]['by_status']}")
    for key in ("sigterm_idle", "sigterm_idle_keepalive"):
        idle = data["phases"][key]
        if not idle["exited"] or idle["exit_seconds"] > 2:
            found.append(f"{key}: exit after {idle['exit_seconds']} s with nothing pending (drain {DRAIN:g} s)")
    for key in ("replace_host_cache", "replace_no_host_cache"):
        r = data["phases"][key]
        if r["errors_5xx"] or r["all"]["hung"] or r["all"]["by_outcome"].get("mismatch"):
            found.append(f"{key}: 5xx {r['errors_5xx']}, hung {r['all']['hung']}, answers matching neither model "
                         f"{r['all']['by_outcome'].get('mismatch', 0)}")
        if not r["switched_to_new"]:
            found.append(f"{key}: answers never switched to the replaced weights after the unload "
                         f"(m0 answers {r['m0_answers']})")
    for key in ("replace_quiet_host_cache", "replace_quiet_no_host_cache"):
        steps = data["phases"][key]["steps"]
        if steps.get("after_load") != "new":
            found.append(f"{key}: after the weight file was replaced, POST /unload and POST /load still served "
                         f"{steps.get('after_load')!r} weights ({steps})")
    faults = data["phases"]["faults"]
    for name, f in faults["faulty_models"].items():
        if f["hung"] or set(f["by_status"]) - {"503", "504"} or f["messages_name_a_server_path"]:
            found.append(f"faults, {name}: statuses {f['by_status']}, hung {f['hung']}, messages {f['messages']}")
    g = faults["good_models"]
    if g["mismatches"] or g["hung"] or g["server_errors_5xx"] or set(g["by_status"]) - {"200", "504"}:
        found.append(f"faults, good models: statuses {g['by_status']}, mismatches {g['mismatches']}, hung {g['hung']}")
    return found


def markdown(data: dict) -> list[str]:
    sections = [_md_header(data), _md_soak(data["phases"]["soak"]), _md_sigterm(data["phases"]),
                _md_replace(data["phases"]), _md_faults(data["phases"]["faults"]),
                ["## Findings", ""] + ([f"- {item}" for item in data["findings"]] or ["- none"])]
    return [line for section in sections for line in section + [""]]


def _md_header(data: dict) -> list[str]:
    m = data["models"]
    return [
        (f"Served: {data['served_code']}. Load average at the start of each phase in the JSON; other work on the "
         f"machine lengthens every latency. Before the first phase: {data['quiet_before'] or 'no quiet wait'}."), "",
        (f"- Models: {MODELS} tiny BERTs ({_shape(m['shape'])}, seeds 100-107, mean pooling, normalized), weight "
         f"file {m['weight_file_mib']} MiB, footprint {m['footprint_mib']} MiB; `--memory-budget` {m['budget_bytes']} "
         f"({m['budget_mib']} MiB: 2 fit), `--host-cache` {m['host_cache_bytes']} ({m['host_cache_mib']} MiB: 3 fit), "
         f"`--deadline-seconds {SERVER_DEADLINE:g} --drain-seconds {DRAIN:g}`; one `shoal serve` subprocess per phase."),
        (f"- Traffic: Zipf({ZIPF_S}) model choice, 1-8 texts per request from a pool of {m['texts']} varied texts "
         f"(tests/texts.py), {data['method']['concurrency']} closed-loop clients (one keep-alive connection each); "
         f"~10% hang up 0-300 ms after sending the whole request (raw socket, closed unread), ~10% carry "
         f"`{DEADLINE_HEADER}` 50-500. Every 200 is compared with `SentenceTransformer(folder).encode(texts, "
         f"normalize_embeddings=True)` (atol {ATOL:g}). Hung: no answer within the request's deadline (else "
         f"--deadline-seconds) + {MARGIN:g} s. Late 504: answered more than {LATE:g} s after its deadline "
         "(client-side time)."),
    ]


def _md_soak(soak: dict) -> list[str]:
    s, memory, queue, trend = soak["summary"], soak["memory"], soak["queue_after_traffic"], soak["rss_trend"]
    return [
        "## Soak", "",
        ("| requests | 200 | 504 | other statuses | disconnected | mismatches | hung | 200 p50 / p99 ms "
         "| 504 p50 / p99 ms (late) | RSS MiB warm / 50% / end / idle | queue gauges to 0 | req/s |"),
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
        (f"| {s['sent']} | {s['by_status'].get('200', 0)} | {s['by_status'].get('504', 0)} | "
         f"{_others(s['by_status'], ('200', '504'))} | {s['disconnected']} | {s['mismatches']} | {s['hung']} | "
         f"{s['latency_200_p50_ms']} / {s['latency_200_p99_ms']} | {s['deadline_504_p50_ms']} / "
         f"{s['deadline_504_p99_ms']} ({s['late_504']}) | {memory['after_warm_up']['rss_mib']} / "
         f"{trend.get('at_50%')} / {memory['after_traffic']['rss_mib']} / {memory['after_5s_idle']['rss_mib']} | "
         f"{_settled(queue)} | {soak['requests_per_second']} |"), "",
        (f"By kind: {s['by_kind']}. Server's count by status (499: client gone): "
         f"{soak['pool']['server_requests_by_status']}. Loads by source {soak['pool']['loads_by_source']}, "
         f"evictions {soak['pool']['evictions_by_reason']}. RSS {memory['ready']['rss_mib']} MiB at ready, "
         f"{memory['after_warm_up']['rss_mib']} after one request per model, {trend.get('at_10%')} at 10% of the "
         f"requests, peak {memory['after_5s_idle']['peak_rss_mib']}; growth over the second half "
         f"{trend.get('second_half_growth_mib')} MiB. Server log: {soak['server_log']['error_lines']} error lines, "
         f"{soak['server_log']['tracebacks']} tracebacks. SIGTERM after the soak: exit in "
         f"{soak['sigterm_after_soak']['exit_seconds']} s."),
    ]


def _md_sigterm(phases: dict) -> list[str]:
    idle, kept = phases["sigterm_idle"], phases["sigterm_idle_keepalive"]
    return [
        "## SIGTERM", "",
        ("| case | exit s (drain s) | server in flight / queued inputs at SIGTERM | client requests in flight at "
         "SIGTERM: outcomes | sent after SIGTERM: outcomes |"),
        "|---|---|---|---|---|",
        _sigterm_row("under load", phases["sigterm_load"]),
        f"| idle | {idle['exit_seconds']} ({DRAIN:g}) | 0 / 0 | - | - |",
        f"| idle, a keep-alive connection open | {kept['exit_seconds']} ({DRAIN:g}) | 0 / 0 | - | - |",
    ]


def _md_replace(phases: dict) -> list[str]:
    return [
        "## Model folder replaced while served", "",
        ("m0 gets 50% of the traffic (the rest Zipf over m1..m7); a third of the way in, its `model.safetensors` is "
         "replaced (os.replace) by another seed's, then `POST /v1/models/m0/unload` (409 retried). Answers are "
         "counted by when they came back and by which reference they equal."), "",
        ("| host cache | m0 state at unload | unload (attempts) | m0 200s answered before replace | replace -> unload "
         "| after unload | switched, first new answer after replace | old after new | 5xx | hung |"),
        "|---|---|---|---|---|---|---|---|---|---|",
        _replace_row(phases["replace_host_cache"]), _replace_row(phases["replace_no_host_cache"]), "",
        ("Without traffic pressure (m0 alone, so nothing else evicts it): which weights answer after the file is "
         "replaced, after `POST /unload` (its answer: the state), after a second unload and `POST /load`."), "",
        "| host cache | served | after replace | unload | after unload | unload again | load | after load |",
        "|---|---|---|---|---|---|---|---|",
    ] + [_quiet_row(phases[key]) for key in ("replace_quiet_host_cache", "replace_quiet_no_host_cache")]


def _quiet_row(phase: dict) -> str:
    steps = phase["steps"]
    cells = [steps.get(key, "-") for key in ("served", "after_replace", "unload", "after_unload", "unload_again",
                                             "load", "after_load")]
    return f"| {phase['host_cache'] // 2**20} MiB | " + " | ".join(cells) + " |"


def _md_faults(faults: dict) -> list[str]:
    lines = [
        "## Loaders that raise", "",
        ("`broken`: noise for weights from the start; `corrupted`: valid at start-up, noise written over its weights "
         "after; `gone`: valid at start-up, folder deleted after. 5% of the requests each, the soak's mix otherwise."),
        "", "| model | requests | statuses | 503 p50 / p99 / max ms | hung | message |", "|---|---|---|---|---|---|",
    ]
    for name, f in faults["faulty_models"].items():
        message = next(iter(f["messages"]), "-")
        lines.append(f"| {name} | {f['sent']} | {f['by_status']} | {f['latency_503_p50_ms']} / "
                     f"{f['latency_503_p99_ms']} / {f['latency_503_max_ms']} | {f['hung']} | {message} |")
    g = faults["good_models"]
    lines.append(f"| m0..m7 (good) | {g['sent']} | {g['by_status']} | - | {g['hung']} | mismatches {g['mismatches']} |")
    lines += ["", (f"Queue gauges after traffic: {_settled(faults['queue_after_traffic'])}; states "
              f"{faults['pool']['states']}.")]
    return lines


def _shape(shape: dict) -> str:
    return f"{shape['layers']} layers, hidden {shape['hidden']}, {shape['heads']} heads, max positions " \
           f"{shape['max_positions']}"


def _others(by_status: dict, skip: tuple) -> str:
    rest = {k: v for k, v in by_status.items() if k not in skip}
    return ", ".join(f"{k}: {v}" for k, v in rest.items()) or "0"


def _settled(queue: dict) -> str:
    if queue["settled"]:
        return f"{queue['seconds_to_zero']} s"
    return f"NOT within {QUEUE_EMPTY_LIMIT:g} s: {queue['last']}"


def _sigterm_row(label: str, phase: dict) -> str:
    seen = phase["server_gauges_just_before_sigterm"]
    return (f"| {label} ({phase['clients']} clients) | {phase['exit_seconds']} ({DRAIN:g}) | "
            f"{seen['in_flight']:.0f} / {seen['queue_depth']:.0f} | "
            f"{phase['in_flight_at_sigterm']['sent']}: {_outcomes(phase['in_flight_at_sigterm'])} | "
            f"{phase['sent_after_sigterm']['sent']}: {_outcomes(phase['sent_after_sigterm'])} |")


def _outcomes(summary: dict) -> str:
    parts = Counter()
    for counts in summary["by_kind"].values():
        parts.update(counts)
    return ", ".join(f"{k} {v}" for k, v in sorted(parts.items())) or "-"


def _replace_row(r: dict) -> str:
    w = r["m0_answers"]
    return (f"| {r['host_cache'] // 2**20} MiB | {r['unload']['state_before']} | {r['unload']['status']} "
            f"{r['unload'].get('body')} ({r['unload']['attempts']}) | {w['before_replace']} | {w['replace_to_unload']} "
            f"| {w['after_unload']} | {_yes(r['switched_to_new'])}, {r['first_new_answer_after_replace_seconds']} s "
            f"| {r['old_answers_after_first_new']} | "
            f"{r['errors_5xx'] or 0} | {r['all']['hung']} |")


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


# ---- main -----------------------------------------------------------------------------------
async def run_phases(ctx: Context) -> dict:
    runs = {
        "soak": lambda: phase_soak(ctx),
        "sigterm_load": lambda: phase_sigterm_load(ctx),
        "sigterm_idle": lambda: phase_sigterm_idle(ctx, keep_connection=False),
        "sigterm_idle_keepalive": lambda: phase_sigterm_idle(ctx, keep_connection=True),
        "replace_host_cache": lambda: phase_replace(ctx, ctx.host_cache, "replace-host-cache"),
        "replace_no_host_cache": lambda: phase_replace(ctx, 0, "replace-no-host-cache"),
        "replace_quiet_host_cache": lambda: phase_replace_quiet(ctx, ctx.host_cache, "replace-quiet-host-cache"),
        "replace_quiet_no_host_cache": lambda: phase_replace_quiet(ctx, 0, "replace-quiet-no-host-cache"),
        "faults": lambda: phase_faults(ctx),
    }
    phases = {}
    for name, run in runs.items():
        load = [round(x, 2) for x in os.getloadavg()]  # other work on the machine skews every latency
        phases[name] = {**await run(), "load_average_at_start": load}
    return phases


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=None, help="soak requests (default 10000; 1000 with --quick)")
    parser.add_argument("--concurrency", type=int, default=64, help="closed-loop clients (default 64)")
    parser.add_argument("--sigterm-clients", type=int, default=200, help="clients in flight at SIGTERM (default 200)")
    parser.add_argument("--sigterm-after", type=float, default=3.0,
                        help="seconds of traffic (and at least one answer per client) before SIGTERM")
    parser.add_argument("--replace-requests", type=int, default=None, help="replace phase (default 1500; 300 quick)")
    parser.add_argument("--fault-requests", type=int, default=None, help="fault phase (default 2000; 400 quick)")
    parser.add_argument("--texts", type=int, default=240, help="size of the varied text pool")
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--server-env", action="append", default=[], metavar="KEY=VALUE",
                        help="environment for every server (repeatable), e.g. MALLOC_MMAP_THRESHOLD_=1048576")
    parser.add_argument("--workdir", default=None, help="where models and server logs go (default: a temp dir)")
    harness.add_arguments(parser, rounds=None, quiet_wait=120.0)
    args = parser.parse_args(argv)
    args.requests = args.requests or (1000 if args.quick else 10000)
    args.replace_requests = args.replace_requests or (300 if args.quick else 1500)
    args.fault_requests = args.fault_requests or (400 if args.quick else 2000)
    args.server_env = dict(item.split("=", 1) for item in args.server_env)
    return args


def prepare(args: argparse.Namespace, root: Path) -> Context:
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # one bar per saved or loaded model drowns the progress lines
    texts = varied_texts(args.texts, seed=9)
    shape = {"layers": args.layers, "hidden": args.hidden, "heads": 4, "intermediate": 4 * args.hidden,
             "max_positions": 256}
    log(f"building {MODELS} + 1 tiny BERT models ({_shape(shape)}) in {root}")
    models = build_models(root, texts, shape)
    budget, host_cache = 2 * models.footprint + SLACK, 3 * models.footprint + SLACK
    log(f"footprint {models.footprint / 2**20:.1f} MiB: --memory-budget {budget} (2 fit), --host-cache {host_cache}")
    log_dir = root / "logs"
    log_dir.mkdir(exist_ok=True)
    ctx = Context(args, models, log_dir, budget, host_cache, np.random.default_rng(args.seed))
    return ctx


def plot(phases: dict, bench: harness.Bench):
    """The server's RSS against requests answered during the soak: a leak climbs with requests."""
    def draw(path: Path) -> None:
        samples = phases["soak"]["rss_samples"]
        harness.line_chart(path, f"Soak: server RSS over {phases['soak']['summary']['sent']:,} requests, "
                                 f"commit {bench.facts['git']['short']}",
                           {"RSS (MiB)": ([x["requests"] for x in samples], [x["rss_mib"] for x in samples])},
                           "requests answered", "server RSS, MiB")
    return draw


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    bench = harness.Bench("soak", args, argv)
    root = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="shoal-soak-"))
    root.mkdir(parents=True, exist_ok=True)
    ctx = prepare(args, root)
    ctx.tree = harness.ROOT if args.snapshot else None  # a --snapshot run serves the snapshot's files
    quiet = harness.wait_for_quiet(args.quiet_wait, args.quiet_cores) if args.quiet_wait > 0 else None
    bench.log("phases", quiet=quiet)
    phases = asyncio.run(run_phases(ctx))
    m = ctx.models
    data = {
        "dtype": "float32", "served_code": f"git archive of HEAD in {ctx.tree}" if ctx.tree else "the working tree",
        "quiet_before": quiet,
        "models": {"shape": m.shape, "count": MODELS, "texts": len(m.texts),
                   "footprint_mib": round(m.footprint / 2**20, 2),
                   "weight_file_mib": round(m.weight_bytes / 2**20, 2), "budget_mib": round(ctx.budget / 2**20, 2),
                   "host_cache_mib": round(ctx.host_cache / 2**20, 2), "budget_bytes": ctx.budget,
                   "host_cache_bytes": ctx.host_cache},
        "method": {"concurrency": args.concurrency, "zipf_s": ZIPF_S, "texts_per_request": "1-8, uniform",
                   "disconnect_share": 0.1, "disconnect_after_ms": "0-300, uniform", "deadline_share": 0.1,
                   "deadline_ms": "50-500, uniform", "atol": ATOL, "server_deadline_seconds": SERVER_DEADLINE,
                   "hung_margin_seconds": MARGIN, "drain_seconds": DRAIN, "seed": args.seed,
                   "server_threads": args.threads, "server_commands": ctx.commands, "server_env": args.server_env},
        "phases": phases,
    }
    data["findings"] = findings(data)
    for item in data["findings"]:
        log(f"FINDING: {item}")
    bench.write(data, "Soak and fault runs against `shoal serve` (cpu)", markdown(data), plot(phases, bench))
    if not args.workdir:
        log(f"server logs kept in {ctx.log_dir}")


if __name__ == "__main__":
    main()
