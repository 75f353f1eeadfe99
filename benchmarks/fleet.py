"""Fleet: model-affinity routing in front of Shoal replicas, measured for real and projected.

Real run. 24 tiny BERT embedders (`tests/tiny.py`, distinct seeds, sentence-transformers
configs), 3 `shoal serve` replicas on loopback, each with a `--memory-budget` that holds 4 of
them and no host tier (`--host-cache 0`: a miss reads and builds the model from disk). In
front, the real HAProxy 2.6 runs the router config that the ConfigMap ships
(k8s/base/router/haproxy.cfg), rendered with static `server shoalN` lines for the loopback
replicas by the same `render` as tests/deploy/test_router.py, in three variants that differ
by one line each:

  - round-robin: `balance roundrobin` instead of `balance hash var(txn.shoal_model)`;
  - affinity:    the shipped hash (`hash-type consistent sdbm avalanche`), `hash-balance-factor` removed;
  - bounded:     the shipped config as is (affinity + `hash-balance-factor 150`).

One seeded request trace (each request's model drawn from Zipf(1.1) over the 24 models, m00
the hottest; 1-4 corpus texts each, sent with `X-Shoal-Model` as Shoal's client does) runs
through every variant, closed loop from C clients (default 12): before each run every replica
unloads every model, a warm-up prefix of the trace runs (not measured), then the measured
part. Per run, from the replicas' own /metrics (deltas over the measured part): loads
(`shoal_model_loads_total`), pool lookups (`shoal_pool_lookups_total` hit/host/miss),
requests; from the client: goodput (requests answered 200 per second), p50/p99 latency,
errors by status, which replica answered (the router's `X-Shoal-Replica`). Every
`--check-every`-th answer is compared with sentence-transformers for its model.

Simulation. A trace-driven discrete-event simulation that runs the real `engine.pool.ModelPool`
(its footprints, budget and LRU eviction, on a virtual clock, with a loader that returns a
stand-in model: no torch work) behind a re-implementation of HAProxy 2.6's consistent-hash
ring (`full_hash(puid * 4096 + i)` points, 16 per unit of weight; sdbm + avalanche keys; the
closest point wins; bounded load as `chash_server_is_eligible`: a server takes a request while
its requests in flight are under its share of ceil((in flight + 1) * factor / 100) slots,
else the walk goes on to the next point). Before anything else the run checks that model
against the real HAProxy with stub servers: owners of 524 names on 3 and on 16 servers, and
every choice of a sequence of held (in-flight) requests under bounded load. A simulated
replica behaves as Shoal's device worker and scheduler do (per-model queues, one batch at a
time from the resident model with the oldest request, up to the token budget; one load at a
time beside the batches, started as `start_swaps` does, with `swap_age_seconds`), with t_load
the replicas' measured mean load time and t_hit (worker time per request) fitted to the real
goodput. It is validated against the real 3-replica run on the same trace (hit ratios side
by side, with routing modelled and with the real run's routing replayed), then projects
1..16 replicas over 500 Zipf(1.1) models.

Hit ratio here = 1 - loads / requests the replicas answered: the share of requests that did
not need a model load (the simulator counts the same way). `shoal_pool_lookups_total` is
reported as it is, but it cannot give the hit ratio: the device worker starts loads itself
(`begin_load`) and only leases resident models, so the counter sees hits only.

Run from the repository root:
    python benchmarks/fleet.py              # full run: 3 rounds x 3 variants, 300 + 1,800 requests per run
    python benchmarks/fleet.py --quick      # smoke run: 1 round, 60 + 240 requests, a small projection
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import concurrent.futures
import dataclasses
import heapq
import importlib
import itertools
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter, deque
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx
import numpy as np

from benchmarks import harness

SHIPPED = ROOT / "k8s" / "base" / "router" / "haproxy.cfg"
HAPROXY = "/usr/sbin/haproxy"
ZIPF_S = 1.1
VARIANTS = ("round-robin", "affinity", "bounded")
LABELS = {"round-robin": "round-robin", "affinity": "affinity", "bounded": "affinity + bounded load (shipped)"}
SHAPE = {"hidden": 128, "layers": 2, "heads": 4, "intermediate": 512}  # ~4.3M parameters, 32.5 MiB footprint
FLOAT32 = 4
ROUTE = "/v1/encode"


# ---- HAProxy 2.6's consistent hashing, as the simulator runs it ------------------------------
M32 = 0xFFFFFFFF
BE_WEIGHT_SCALE = 16  # ring points per unit of server weight
SRV_EWGHT_RANGE = 256 * BE_WEIGHT_SCALE  # puid stride of the point keys


def full_hash(a: int) -> int:
    """HAProxy's `full_hash` (Bob Jenkins' 32-bit integer avalanche, times 3221225473)."""
    a &= M32
    a = ((a + 0x7ed55d16) + (a << 12)) & M32
    a = ((a ^ 0xc761c23c) ^ (a >> 19)) & M32
    a = ((a + 0x165667b1) + (a << 5)) & M32
    a = ((a + 0xd3a2646c) ^ (a << 9)) & M32
    a = ((a + 0xfd7046c5) + (a << 3)) & M32
    a = ((a ^ 0xb55a4f09) ^ (a >> 16)) & M32
    return (a * 3221225473) & M32


def sdbm(data: bytes) -> int:
    h = 0
    for c in data:
        h = (c + (h << 6) + (h << 16) - h) & M32
    return h


class Ring:
    """`balance hash` + `hash-type consistent sdbm avalanche` (+ `hash-balance-factor`) over
    servers shoal1..shoalN (puid 1..N, equal weights): lb_chash.c's tree, closest point and
    bounded-load walk. `factor` 0: no bound."""

    def __init__(self, servers: int, weight: int = 100, factor: int = 0):
        self.servers, self.factor = servers, factor
        self.eweight = weight * BE_WEIGHT_SCALE
        self.total_weight = servers * self.eweight
        points = sorted((full_hash(puid * SRV_EWGHT_RANGE + i), puid - 1)
                        for puid in range(1, servers + 1) for i in range(self.eweight))
        self.keys = [k for k, _ in points]
        self.owner = [s for _, s in points]
        self._closest: dict[str, int] = {}

    def slots(self, server: int, in_flight_total: int) -> int:
        """chash_server_is_eligible: the server's share of the slots (cumulative weights in
        server order), at least 1."""
        total = ((in_flight_total + 1) * self.factor + 99) // 100
        per_weight, remainder = divmod(total, self.total_weight)
        cumulative = server * self.eweight
        slots = (self.eweight * per_weight + ((cumulative + self.eweight) * remainder) // self.total_weight
                 - (cumulative * remainder) // self.total_weight)
        return max(slots, 1)

    def closest(self, key: str) -> int:
        """Index of the ring point the key lands on (ties go to the point before)."""
        found = self._closest.get(key)
        if found is None:
            h = full_hash(sdbm(key.encode()))
            after = bisect.bisect_left(self.keys, h) % len(self.keys)
            before = after - 1  # -1: the last point (the ring wraps)
            found = (before % len(self.keys) if (h - self.keys[before]) & M32 <= (self.keys[after] - h) & M32
                     else after)
            self._closest[key] = found
        return found

    def owner_of(self, key: str) -> int:
        return self.owner[self.closest(key)]

    def pick(self, key: str, in_flight: list[int] | None = None) -> int:
        point = self.closest(key)
        if not self.factor or in_flight is None:
            return self.owner[point]
        total, wrapped = sum(in_flight), 0
        while in_flight[self.owner[point]] >= self.slots(self.owner[point], total):
            point += 1
            if point == len(self.keys):
                point, wrapped = 0, wrapped + 1
                if wrapped > 1:
                    break
        return self.owner[point]


def balance_factor(config: str) -> int:
    (factor,) = re.findall(r"^\s*hash-balance-factor\s+(\d+)\s*$", config, re.MULTILINE)
    return int(factor)


def variant_config(shipped: str, variant: str) -> str:
    """The shipped haproxy.cfg, changed by one line for a variant (before `render`)."""
    factor = re.compile(r"^\s*hash-balance-factor\s+\d+\s*\n", re.MULTILINE)
    balance = re.compile(r"^(\s*)balance hash var\(txn\.shoal_model\)\s*$", re.MULTILINE)
    assert len(factor.findall(shipped)) == 1 and len(balance.findall(shipped)) == 1, "unexpected haproxy.cfg shape"
    if variant == "bounded":
        return shipped
    config = factor.sub("", shipped)
    return balance.sub(r"\1balance roundrobin", config) if variant == "round-robin" else config


def haproxy_version() -> str:
    out = subprocess.run([HAPROXY, "-v"], check=False, capture_output=True, text=True, timeout=10).stdout
    match = re.search(r"version (\S+)", out)
    return match[1] if match else "unknown"


def router_module():
    """tests/deploy/test_router.py: `render` (the shipped config with static servers) and its
    `Router` (haproxy -db on the rendered config, its exporter, wait_up)."""
    return importlib.import_module("tests.deploy.test_router")


# ---- the ring model checked against the real HAProxy (stub servers) ------------------------
class Stubs:
    """N loopback HTTP servers that answer 200 at once, or hold each POST until released;
    they record (model header, server index) per POST in arrival order."""

    def __init__(self, count: int):
        self.ports = [harness.free_port() for _ in range(count)]
        self.arrivals: list[tuple[str, int]] = []
        self.hold = False
        self.tasks: set[asyncio.Task] = set()

    async def start(self) -> None:
        self.released = asyncio.Event()
        self.servers = [await asyncio.start_server(lambda r, w, i=i: self._handle(i, r, w), "127.0.0.1", port)
                        for i, port in enumerate(self.ports)]

    async def _handle(self, index: int, reader, writer) -> None:
        self.tasks.add(asyncio.current_task())
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = re.search(rb"content-length: *(\d+)", head, re.IGNORECASE)
                if length:
                    await reader.readexactly(int(length[1]))
                if head.startswith(b"POST"):
                    self.arrivals.append((re.search(rb"x-shoal-model: *(\S+)", head, re.IGNORECASE)[1].decode(), index))
                    if self.hold:
                        await self.released.wait()
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def close(self) -> None:
        for server in self.servers:
            server.close()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def check_ring(shipped: str, folder: Path, servers: int, names: list[str], held: int, seed: int) -> dict:
    """Owners of `names` through the real HAProxy (affinity variant) against `Ring`, then a
    sequence of `held` requests through the shipped config (bounded load) whose answers are
    held, each choice against `Ring.pick` with the same requests in flight."""
    test_router = router_module()
    result: dict = {"servers": servers}
    for variant in ("affinity", "bounded"):
        stubs = Stubs(servers)
        await stubs.start()
        router = test_router.Router(variant_config(shipped, variant), stubs.ports, folder)
        try:
            await asyncio.to_thread(router.wait_up, {f"shoal{i}" for i in range(1, servers + 1)})
            async with httpx.AsyncClient(base_url=router.url, timeout=30,
                                         limits=httpx.Limits(max_connections=held + 10)) as http:
                if variant == "affinity":
                    ring = Ring(servers)
                    for name in names:
                        await http.post(ROUTE, json={}, headers={"x-shoal-model": name})
                    got = dict(stubs.arrivals)
                    wrong = [n for n in names if got.get(n) != ring.owner_of(n)]
                    result["owners"] = {"names": len(names), "agree": len(names) - len(wrong), "disagree": wrong[:10]}
                    continue
                ring, stubs.hold = Ring(servers, factor=balance_factor(shipped)), True
                rng = np.random.default_rng(seed)
                in_flight, agree, tasks, spilled = [0] * servers, 0, [], 0
                for _ in range(held):  # 60% one hot model, the rest spread
                    name = names[0] if rng.random() < 0.6 else names[int(rng.integers(len(names)))]
                    want = ring.pick(name, in_flight)
                    before = len(stubs.arrivals)
                    tasks.append(asyncio.create_task(http.post(ROUTE, json={}, headers={"x-shoal-model": name})))
                    deadline = time.monotonic() + 10
                    while len(stubs.arrivals) == before and time.monotonic() < deadline:
                        await asyncio.sleep(0.002)
                    if len(stubs.arrivals) == before:
                        raise RuntimeError("a held request never reached a stub server")
                    _, server = stubs.arrivals[-1]
                    in_flight[server] += 1
                    agree += server == want
                    spilled += server != ring.owner_of(name)
                stubs.released.set()
                await asyncio.gather(*tasks)
                result["bounded"] = {"requests": held, "agree": agree, "spilled": spilled, "in_flight_at_end": in_flight,
                                     "factor": ring.factor}
        finally:
            router.close()
            await stubs.close()
    return result


# ---- models, replicas, metrics ---------------------------------------------------------------
def build_models(root: Path, count: int, seed: int, log) -> dict[str, Path]:
    """m00..m(count-1): tiny BERTs with distinct seeds, reused when already built in `root`."""
    soak = importlib.import_module("benchmarks.soak")
    folders = {}
    for i in range(count):
        name = f"m{i:02d}"
        folder = root / name
        marker = folder / ".fleet-built"
        wanted = f"{seed + i} {sorted(SHAPE.items())}"
        if not (marker.exists() and marker.read_text() == wanted):
            shutil.rmtree(folder, ignore_errors=True)
            soak.build_model(folder, seed=seed + i, shape=SHAPE)
            marker.write_text(wanted)
        folders[name] = folder
    log("models", count=count, root=root)
    return folders


def samples_of(text: str) -> list[tuple[str, dict, float]]:
    return importlib.import_module("benchmarks.soak").metric_samples(text)


def replica_counters(text: str) -> dict:
    """The counters a run is judged by, from one replica's /metrics."""
    soak = importlib.import_module("benchmarks.soak")
    s = soak.metric_samples(text)
    requests = Counter()
    for name, labels, value in s:
        if name == "shoal_requests_total" and labels.get("route") == ROUTE:
            requests[labels.get("status", "")] += value
    return {
        "requests": dict(requests),
        "loads": soak.metric_by(s, "shoal_model_loads_total", "source"),
        "lookups": soak.metric_by(s, "shoal_pool_lookups_total", "result"),
        "evictions": soak.metric_sum(s, "shoal_model_evictions_total"),
        "load_seconds_sum": soak.metric_sum(s, "shoal_model_load_duration_seconds_sum"),
        "load_seconds_count": soak.metric_sum(s, "shoal_model_load_duration_seconds_count"),
        "batches": soak.metric_sum(s, "shoal_batch_duration_seconds_count"),
        "batch_seconds": soak.metric_sum(s, "shoal_batch_duration_seconds_sum"),
    }


def minus(after, before):
    """after - before, for the nested counters of `replica_counters`."""
    if isinstance(after, dict):
        return {k: minus(v, before.get(k, 0 if not isinstance(v, dict) else {})) for k, v in after.items()}
    return round(after - before, 6)


def router_counters(text: str) -> dict:
    soak = importlib.import_module("benchmarks.soak")
    s = soak.metric_samples(text)
    return {"retries": soak.metric_sum(s, "haproxy_backend_retry_warnings_total", proxy="shoal"),
            "redispatches": soak.metric_sum(s, "haproxy_backend_redispatch_warnings_total", proxy="shoal")}


# ---- traces ----------------------------------------------------------------------------------
@dataclass
class Request:
    model: str
    texts: list[str]


def zipf_ranks(models: int, count: int, rng) -> np.ndarray:
    weights = 1.0 / np.arange(1, models + 1) ** ZIPF_S
    return rng.choice(models, size=count, p=weights / weights.sum())


def zipf_mass(models: int, top: int) -> float:
    weights = 1.0 / np.arange(1, models + 1) ** ZIPF_S
    return float(weights[:top].sum() / weights.sum())


def build_trace(names: list[str], count: int, texts: list[str], seed: int) -> list[Request]:
    rng = np.random.default_rng(seed)
    ranks = zipf_ranks(len(names), count, rng)
    sizes = rng.integers(1, 5, size=count)
    return [Request(names[r], [texts[j] for j in rng.integers(0, len(texts), size=s)]) for r, s in zip(ranks, sizes)]


def percentile(values, q: float) -> float | None:
    return float(np.percentile(values, q)) if len(values) else None


# ---- the real run ----------------------------------------------------------------------------
async def drive(url: str, trace: list[Request], start: int, stop: int, clients: int,
                sample: set[int]) -> tuple[float, list[tuple]]:
    """Requests start..stop-1 of the trace from `clients` closed-loop clients pulling the next
    one; per request (status, seconds, replica, vectors if sampled)."""
    records: list[tuple | None] = [None] * (stop - start)
    cursor = start
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=180, limits=limits) as http:
        async def client():
            nonlocal cursor
            while cursor < stop:
                i = cursor
                cursor += 1
                request = trace[i]
                began = time.perf_counter()
                try:
                    response = await http.post(ROUTE, json={"model": request.model, "inputs": request.texts},
                                               headers={"x-shoal-model": request.model})
                    status, replica = response.status_code, response.headers.get("x-shoal-replica")
                    vectors = response.json()["embeddings"] if status == 200 and i in sample else None
                except httpx.HTTPError as error:
                    status, replica, vectors = type(error).__name__, None, None
                records[i - start] = (status, time.perf_counter() - began, replica, vectors)

        began = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        return time.perf_counter() - began, records


class Fleet:
    """The replicas and one router per variant, for the whole run."""

    def __init__(self, bench: harness.Bench, args, folders: dict[str, Path], budget: int, workdir: Path):
        soak = importlib.import_module("benchmarks.soak")
        self.bench, self.args = bench, args
        tree = harness.ROOT if getattr(args, "snapshot", False) else None  # --snapshot: serve the snapshot's files
        self.replicas = [soak.Server(f"replica{i}", folders, budget, args.host_cache, workdir, args.threads, tree)
                         for i in range(1, args.replicas + 1)]
        self.routers: dict[str, object] = {}
        shown = self.replicas[0].shown_command().replace(str(workdir), "<workdir>")
        shown = re.sub(r"--port \d+", "--port PORT", shown)
        models = re.findall(r"--model \S+", shown)
        self.command = shown.replace(" ".join(models), f"{models[0]} ... {models[-1]}") if len(models) > 2 else shown

    async def start(self, shipped: str, workdir: Path) -> None:
        for replica in self.replicas:
            await replica.wait_ready(300)
        test_router = router_module()
        names = {f"shoal{i}" for i in range(1, len(self.replicas) + 1)}
        for variant in VARIANTS:
            router = test_router.Router(variant_config(shipped, variant), [r.port for r in self.replicas], workdir)
            self.routers[variant] = router
            await asyncio.to_thread(router.wait_up, names, 60)

    def pids(self, variant: str) -> list[int]:
        return [r.process.pid for r in self.replicas] + [self.routers[variant].process.pid]

    async def reset(self, http: httpx.AsyncClient) -> int:
        """Every replica unloads every resident model: each run starts from empty replicas."""
        unloaded = 0
        for replica in self.replicas:
            models = (await http.get(replica.url + "/v1/models")).json()["data"]
            for model in models:
                if model.get("state") in ("resident", "loading"):
                    for _ in range(50):
                        response = await http.post(f"{replica.url}/v1/models/{model['id']}/unload")
                        if response.status_code != 409:
                            break
                        await asyncio.sleep(0.1)
                    unloaded += 1
        return unloaded

    async def counters(self, http: httpx.AsyncClient, variant: str) -> dict:
        replicas = [replica_counters((await http.get(r.url + "/metrics")).text) for r in self.replicas]
        router = router_counters((await http.get(self.routers[variant].stats + "/metrics")).text)
        return {"replicas": replicas, "router": router}

    async def run(self, variant: str, trace: list[Request], sample: set[int]) -> dict:
        args, router = self.args, self.routers[variant]
        async with httpx.AsyncClient(timeout=60) as http:
            unloaded = await self.reset(http)
            warm_seconds, warm = await drive(router.url, trace, 0, args.warmup, args.concurrency, set())
            before = await self.counters(http, variant)
            seconds, records = await drive(router.url, trace, args.warmup, len(trace), args.concurrency, sample)
            after = await self.counters(http, variant)
        replicas = [minus(a, b) for a, b in zip(after["replicas"], before["replicas"])]
        router_delta = minus(after["router"], before["router"])
        statuses = Counter(str(r[0]) for r in records)
        ok = [r for r in records if r[0] == 200]
        latencies = [r[1] for r in records]
        served = sum(sum(r["requests"].values()) for r in replicas)
        loads = sum(sum(r["loads"].values()) for r in replicas)
        lookups = Counter()
        for r in replicas:
            lookups.update(r["lookups"])
        load_count = sum(r["load_seconds_count"] for r in replicas)
        ring = Ring(len(self.replicas))
        names = [f"shoal{i}" for i in range(1, len(self.replicas) + 1)]
        assignment = [names.index(r[2]) if r[2] in names else -1 for r in [*warm, *records]]
        measured = assignment[args.warmup:]
        off_owner = sum(1 for i, a in enumerate(measured) if a != ring.owner_of(trace[args.warmup + i].model))
        owners: dict[str, set] = {}
        for i, a in enumerate(measured):
            owners.setdefault(trace[args.warmup + i].model, set()).add(a)
        return {
            "seconds": seconds, "warmup_seconds": warm_seconds, "unloaded_before": unloaded,
            "requests": len(records), "ok": len(ok), "statuses": dict(statuses),
            "warmup_statuses": dict(Counter(str(r[0]) for r in warm)),
            "goodput_rps": len(ok) / seconds,
            "latency_p50": percentile(latencies, 50), "latency_p99": percentile(latencies, 99),
            "replica_requests": served, "loads": loads, "loads_per_1000": 1000 * loads / len(records),
            "hit_ratio": 1 - loads / served if served else None,
            "lookups": dict(lookups), "evictions": sum(r["evictions"] for r in replicas),
            "load_seconds_mean": (sum(r["load_seconds_sum"] for r in replicas) / load_count) if load_count else None,
            "load_count": load_count,
            "batches": sum(r["batches"] for r in replicas), "batch_seconds": sum(r["batch_seconds"] for r in replicas),
            "per_replica": [{"requests": sum(r["requests"].values()), "loads": sum(r["loads"].values()),
                             "statuses": r["requests"]} for r in replicas],
            "router": router_delta,
            "off_owner_share": off_owner / len(measured),
            "replicas_per_model": {m: len(s) for m, s in sorted(owners.items())},
            "_assignment": assignment,
            "_vectors": {i: r[3] for i, r in zip(range(args.warmup, len(trace)), records) if r[3] is not None},
        }

    def close(self) -> None:
        for router in self.routers.values():
            router.close()
        for replica in self.replicas:
            harness.stop_process(replica.process, timeout=30)


def check_answers(trace: list[Request], folders: dict[str, Path], vectors: dict, log) -> dict:
    """Sampled answers against sentence-transformers: the answering model's own vectors (min
    cosine, max abs difference), and how far they are from another model's (max cosine to
    the next model's vectors for the same texts), so a wrong model would show."""
    from sentence_transformers import SentenceTransformer

    names = sorted(folders)
    wanted: dict[str, set[int]] = {}
    for runs in vectors.values():
        for i in runs:
            wanted.setdefault(trace[i].model, set()).add(i)
    needed: dict[str, set[int]] = {}
    for model, indices in wanted.items():
        needed.setdefault(model, set()).update(indices)
        needed.setdefault(names[(names.index(model) + 1) % len(names)], set()).update(indices)
    references: dict[tuple[str, int], np.ndarray] = {}
    for who, indices in sorted(needed.items()):
        st = SentenceTransformer(str(folders[who]), device="cpu")
        for i in sorted(indices):
            references[who, i] = np.asarray(st.encode(trace[i].texts, normalize_embeddings=True), np.float32)
    min_cos, max_abs, max_other, answers = 1.0, 0.0, -1.0, 0
    for runs in vectors.values():
        for i, got in runs.items():
            got = np.asarray(got, np.float32)
            model = trace[i].model
            own = references[model, i]
            other = references[names[(names.index(model) + 1) % len(names)], i]
            min_cos = min(min_cos, float((got * own).sum(axis=1).min()))
            max_abs = max(max_abs, float(np.abs(got - own).max()))
            max_other = max(max_other, float((got * other).sum(axis=1).max()))
            answers += 1
    result = {"answers": answers, "requests": len({i for runs in vectors.values() for i in runs}),
              "models": len(wanted), "min_cosine": min_cos, "max_abs_diff": max_abs,
              "max_cosine_to_another_model": max_other, "passed": answers > 0 and min_cos >= 0.9999 and max_abs <= 1e-4}
    log("answers", **{k: v for k, v in result.items()})
    return result


# ---- the simulator ---------------------------------------------------------------------------
class VirtualClock:
    """Stands in for the `time` module inside engine.pool: the simulation's clock, strictly
    increasing between calls (so LRU order never depends on a tie)."""

    def __init__(self):
        self.now = 0.0
        self._last = 0.0

    def _read(self) -> float:
        self._last = max(self.now, self._last + 1e-9)
        return self._last

    def time(self) -> float:
        return self._read()

    def monotonic(self) -> float:
        return self._read()

    def perf_counter(self) -> float:
        return self._read()


class StandIn:
    """What the simulator's loader returns instead of a ServedModel: no tensors."""

    def __init__(self, spec, element_size: int):
        self.spec = spec
        self.resident_bytes = spec.parameter_count * element_size

    def to_host(self) -> None:
        pass

    def to_device(self) -> None:
        pass


class DeferredExecutor(concurrent.futures.Executor):
    """A replica's loader thread in virtual time: the pool hands it the load, which runs (a
    stand-in, instant) when the simulation says t_load has passed."""

    def __init__(self):
        self.pending: list[tuple] = []

    def submit(self, fn, /, *args, **kwargs):
        future = concurrent.futures.Future()
        self.pending.append((future, fn, args, kwargs))
        return future

    def finish(self) -> None:
        for future, fn, args, kwargs in self.pending:
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as error:  # noqa: BLE001 - the pool handles it
                future.set_exception(error)
        self.pending = []


class SimObserver:
    def __init__(self):
        self.loads = 0
        self.evictions = 0
        self.lookups: Counter = Counter()

    def model_loaded(self, model, seconds, source="disk"):
        self.loads += 1

    def model_load_failed(self, model):
        raise RuntimeError(f"stand-in load of {model} failed")

    def model_evicted(self, model, reason):
        self.evictions += 1

    def pool_lookup(self, result):
        self.lookups[result] += 1


@dataclass
class SimSetup:
    replicas: int
    policy: str  # round-robin | affinity | bounded
    budget: int
    clients: int
    t_hit: float  # seconds of worker time per request in a batch
    t_load: float  # seconds a load holds the loader (concurrent with batches)
    factor: int  # hash-balance-factor
    warmup: int
    swap_age: float = 0.1  # EngineConfig.swap_age_seconds
    max_batch_tokens: int = 4096  # the CPU default


class SimReplica:
    """One `shoal serve` as its device worker and scheduler behave (engine/worker.py,
    engine/scheduler.py), around the real ModelPool: per-model queues; a worker that runs one
    batch at a time, from the resident model with the oldest waiting request, every queued
    request of that model up to the token budget (t_hit per request); a loader that runs one
    load at a time (t_load, beside the batches), started as `start_swaps` does: a cold model's
    work waits for `swap_age` (or a full batch of tokens) while resident models have work, at
    once otherwise, and evictions go through `pool.begin_load(model, queued=waiting)`."""

    def __init__(self, index: int, sim: Simulation):
        pool_module = importlib.import_module("engine.pool")
        self.index, self.sim = index, sim
        self.observer = SimObserver()
        self.executor = DeferredExecutor()
        self.pool = pool_module.ModelPool(list(sim.specs.values()), lambda spec: StandIn(spec, FLOAT32), FLOAT32,
                                          sim.setup.budget, 0, self.observer)
        self.pool.executor = self.executor
        self.queues: dict[str, deque] = {}  # models with waiting requests only
        self.busy = False
        self.loading = False

    def resident(self, model: str) -> bool:
        return self.pool.entries[model].state == "resident"

    def waiting(self) -> dict[str, tuple[float, int]]:
        sim = self.sim
        return {m: (sim.arrived[q[0]], sum(sim.tokens[i] for i in q)) for m, q in self.queues.items()}

    async def arrive(self, i: int) -> None:
        model = self.sim.models[i]
        self.queues.setdefault(model, deque()).append(i)
        if not self.resident(model):
            await self.start_swaps()
            self.sim.at(self.sim.clock.now + self.sim.setup.swap_age, self.start_swaps)
        if not self.busy:
            await self.turn()

    async def start_swaps(self) -> None:
        if self.loading:
            return
        now, setup = self.sim.clock.now, self.sim.setup
        waiting = self.waiting()
        resident_busy = any(self.resident(m) for m in waiting)
        due = sorted((oldest, m) for m, (oldest, tokens) in waiting.items()
                     if not self.resident(m) and (not resident_busy or now - oldest >= setup.swap_age
                                                  or tokens >= setup.max_batch_tokens))
        for _, model in due:
            load = self.pool.begin_load(model, queued=waiting)
            if load is not None:
                self.loading = True
                await asyncio.sleep(0)  # the load task reaches the loader: evictions done, the read pending
                self.sim.at(now + setup.t_load, lambda load=load: self.loaded(load))
                return

    async def loaded(self, load) -> None:
        self.executor.finish()
        await load  # the pool's own completion: state, last_used, loads counter
        self.loading = False
        if not self.busy:
            await self.turn()

    async def turn(self) -> None:
        await self.start_swaps()
        ready = [(self.sim.arrived[q[0]], m) for m, q in self.queues.items() if self.resident(m)]
        if not ready:
            return
        model = min(ready)[1]
        queue, batch, tokens = self.queues[model], [], 0
        while queue and (not batch or tokens + self.sim.tokens[queue[0]] <= self.sim.setup.max_batch_tokens):
            tokens += self.sim.tokens[queue[0]]
            batch.append(queue.popleft())
        if not queue:
            del self.queues[model]
        await self.pool.acquire(model)
        self.busy = True
        self.sim.at(self.sim.clock.now + self.sim.setup.t_hit * len(batch),
                    lambda: self.batch_done(model, batch))

    async def batch_done(self, model: str, batch: list[int]) -> None:
        self.pool.release(model)
        self.busy = False
        for i in batch:
            self.sim.answered(i, self.index)
        await self.turn()


class Simulation:
    """Closed-loop clients, the router (HAProxy's ring, round-robin, or a replayed routing),
    and the replicas, in virtual time; warm-up and measured part run one after the other,
    the first drained before the second starts, as in the real run."""

    def __init__(self, models: list[str], tokens: list[int], specs: dict, setup: SimSetup,
                 assign: list[int] | None = None):
        self.models, self.tokens, self.specs, self.setup, self.assign = models, tokens, specs, setup, assign
        self.clock = VirtualClock()
        self.ring = Ring(setup.replicas, factor=setup.factor if setup.policy == "bounded" else 0)
        self.turns = itertools.count()
        self.in_flight = [0] * setup.replicas
        self.arrived = [0.0] * len(models)
        self.placed = [-1] * len(models)
        self.events: list = []
        self.order = itertools.count()
        self.cursor = self.stop = 0

    def at(self, when: float, action) -> None:
        heapq.heappush(self.events, (when, next(self.order), action))

    def route(self, i: int) -> int:
        if self.assign is not None:
            return self.assign[i]
        if self.setup.policy == "round-robin":
            return next(self.turns) % self.setup.replicas
        return self.ring.pick(self.models[i], self.in_flight)

    def send_next(self) -> None:
        if self.cursor < self.stop:
            i = self.cursor
            self.cursor += 1
            r = self.route(i)
            self.placed[i] = r
            self.in_flight[r] += 1
            self.arrived[i] = self.clock.now
            self.at(self.clock.now, lambda: self.replicas[r].arrive(i))

    def answered(self, i: int, r: int) -> None:
        self.in_flight[r] -= 1
        self.send_next()  # that client's next request

    async def run(self) -> dict:
        pool_module = importlib.import_module("engine.pool")
        saved = pool_module.time, pool_module.release_freed_memory
        pool_module.time, pool_module.release_freed_memory = self.clock, (lambda: None)
        try:
            self.replicas = [SimReplica(r, self) for r in range(self.setup.replicas)]
            phases = []
            for start, stop in ((0, self.setup.warmup), (self.setup.warmup, len(self.models))):
                self.cursor, self.stop = start, stop
                loads = sum(r.observer.loads for r in self.replicas)
                began = self.clock.now
                for _ in range(self.setup.clients):
                    self.send_next()
                while self.events:
                    self.clock.now, _, action = heapq.heappop(self.events)
                    await action()
                phases.append((sum(r.observer.loads for r in self.replicas) - loads, self.clock.now - began))
        finally:
            pool_module.time, pool_module.release_freed_memory = saved
        (loads, seconds) = phases[1]
        measured = range(self.setup.warmup, len(self.models))
        requests = len(measured)
        off_owner = sum(self.placed[i] != self.ring.owner_of(self.models[i]) for i in measured)
        per_replica = Counter(self.placed[i] for i in measured)
        lookups = Counter()
        for r in self.replicas:
            lookups.update(r.observer.lookups)
        return {"requests": requests, "loads": loads, "hit_ratio": 1 - loads / requests,
                "loads_per_1000": 1000 * loads / requests, "off_owner_share": off_owner / requests,
                "goodput_rps": requests / seconds, "virtual_seconds": seconds,
                "per_replica": [per_replica.get(r, 0) for r in range(self.setup.replicas)],
                "lookups": dict(lookups)}


def simulate(models: list[str], tokens: list[int], specs: dict, setup: SimSetup,
             assign: list[int] | None = None) -> dict:
    return asyncio.run(Simulation(models, tokens, specs, setup, assign).run())


def sim_specs(base_spec, names: list[str]) -> dict:
    """One spec per name: the real tiny model's spec (so the real footprint), renamed."""
    return {name: dataclasses.replace(base_spec, name=name, source=None) for name in names}


def request_tokens(trace: list[Request], folder: Path, max_length: int) -> list[int]:
    """Tokens per request as the replica counts them for its batch budget (special tokens,
    truncation at the model's max length)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    return [sum(min(len(e.ids), max_length) for e in tokenizer.encode_batch(r.texts)) for r in trace]


def calibrate(runs: dict, models: list[str], tokens: list[int], specs: dict, base: SimSetup) -> dict:
    """t_load: the replicas' mean load time (shoal_model_load_duration_seconds over all runs).
    t_hit: the one free parameter, fitted (golden-section search on log t_hit) so that the
    simulated goodput of the three variants best matches the real medians (least squares
    of log ratios)."""
    loads = sum(r["load_count"] for rs in runs.values() for r in rs)
    t_load = sum((r["load_seconds_mean"] or 0) * r["load_count"] for rs in runs.values() for r in rs) / max(loads, 1)
    real = {v: float(np.median([r["goodput_rps"] for r in runs[v]])) for v in VARIANTS}

    def error(log_t: float) -> float:
        total = 0.0
        for v in VARIANTS:
            setup = dataclasses.replace(base, policy=v, t_hit=float(np.exp(log_t)), t_load=t_load)
            total += np.log(simulate(models, tokens, specs, setup)["goodput_rps"] / real[v]) ** 2
        return total

    lo, hi = np.log(1e-4), np.log(0.2)
    golden = (np.sqrt(5) - 1) / 2
    a, b = hi - golden * (hi - lo), lo + golden * (hi - lo)
    fa, fb = error(a), error(b)
    for _ in range(14):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - golden * (hi - lo)
            fa = error(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + golden * (hi - lo)
            fb = error(b)
    t_hit = float(np.exp((lo + hi) / 2))
    return {"t_hit_s": t_hit, "t_load_s": t_load, "fit_rms_log_error": float(np.sqrt(min(fa, fb) / 3)),
            "real_goodput": real}


def parse_range(text: str) -> list[int]:
    out = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out += list(range(int(lo), int(hi or lo) + 1))
    return sorted(set(out))


# ---- summaries and the report -----------------------------------------------------------------
def summarise(runs: dict) -> list[dict]:
    rows = []
    for variant in VARIANTS:
        rs = runs[variant]
        mid = sorted(rs, key=lambda r: r["goodput_rps"])[(len(rs) - 1) // 2]
        statuses = Counter()
        for r in rs:
            statuses.update(r["statuses"])
        lookups = Counter()
        for r in rs:
            lookups.update(r["lookups"])
        rows.append({
            "variant": variant, "median_round": mid["round"],
            **{key: harness.spread([r[key] for r in rs]) for key in (
                "hit_ratio", "loads_per_1000", "goodput_rps", "latency_p50", "latency_p99", "off_owner_share",
                "cores", "others_cores")},
            "statuses_all_rounds": dict(statuses), "errors_all_rounds": sum(v for k, v in statuses.items() if k != "200"),
            "lookups_all_rounds": dict(lookups),
            "retries_all_rounds": sum(r["router"]["retries"] for r in rs),
            "redispatches_all_rounds": sum(r["router"]["redispatches"] for r in rs),
            "per_replica_median_round": [p["requests"] for p in mid["per_replica"]],
            "replicas_per_model_median_round": mid["replicas_per_model"],
            "load_ms_mean": float(np.mean([r["load_seconds_mean"] for r in rs if r["load_seconds_mean"]]) * 1000)
            if any(r["load_seconds_mean"] for r in rs) else None,
        })
    return rows


def scaled(s: dict, factor: float) -> dict:
    return {"median": s["median"] * factor, "min": s["min"] * factor, "max": s["max"] * factor,
            "rounds": [x * factor for x in s["rounds"]]}


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f}" if value >= 0.01 else f"{value * 1000:.1f}"


def report(bench: harness.Bench, args, out: dict, rows: list[dict]) -> list[str]:
    fp, budget = out["footprint_bytes"], out["budget_bytes"]
    rc = out["ring_check"]
    main = []
    for row in rows:
        errors = ", ".join(f"{k}: {v}" for k, v in sorted(row["statuses_all_rounds"].items()) if k != "200") or "none"
        main.append([LABELS[row["variant"]], harness.show(row["hit_ratio"], "{:.3f}"),
                     harness.show(row["loads_per_1000"], "{:.0f}"), harness.show(row["goodput_rps"], "{:.1f}"),
                     harness.show(scaled(row["latency_p50"], 1000), "{:.0f}"),
                     harness.show(scaled(row["latency_p99"], 1000), "{:.0f}"),
                     errors, harness.show(row["off_owner_share"], "{:.2f}"),
                     " / ".join(str(int(x)) for x in row["per_replica_median_round"]),
                     harness.show(row["cores"], "{:.2f}"), f"{row['others_cores']['max']:.2f}"])
    mechanics = [[LABELS[row["variant"]],
                  "/".join(str(int(row["lookups_all_rounds"].get(k, 0))) for k in ("hit", "host", "miss")),
                  f"{row['load_ms_mean']:.0f}" if row["load_ms_mean"] else "-",
                  f"{row['retries_all_rounds']:.0f} / {row['redispatches_all_rounds']:.0f}",
                  f"{np.mean(list(row['replicas_per_model_median_round'].values())):.2f}"] for row in rows]
    val = out["validation"]
    validation = []
    for row in rows:
        v = row["variant"]
        modelled, replayed = val["modelled"][v], val["replayed"][v]
        validation.append([LABELS[v], harness.show(row["hit_ratio"], "{:.3f}"), f"{modelled['hit_ratio']:.3f}",
                           harness.show(harness.spread([x["hit_ratio"] for x in replayed]), "{:.3f}"),
                           harness.show(row["loads_per_1000"], "{:.0f}"), f"{modelled['loads_per_1000']:.0f}",
                           harness.show(harness.spread([x["loads_per_1000"] for x in replayed]), "{:.0f}"),
                           harness.show(row["off_owner_share"], "{:.2f}"), f"{modelled['off_owner_share']:.2f}",
                           harness.show(row["goodput_rps"], "{:.0f}"), f"{modelled['goodput_rps']:.0f}"])
    proj = out["projection"]
    projection = []
    for n in proj["replicas"]:
        cells = [str(n), f"{n * args.capacity}", f"{zipf_mass(args.sim_models, n * args.capacity):.3f}"]
        for key in ("hit_ratio", "loads_per_1000"):
            for policy in VARIANTS:
                value = proj["results"][policy][str(n)][key]
                cells.append(f"{value:.3f}" if key == "hit_ratio" else f"{value:.0f}")
        projection.append(cells)
    cal = out["calibration"]
    worst = max(abs(val["modelled"][r["variant"]]["hit_ratio"] - r["hit_ratio"]["median"]) for r in rows)
    worst_replay = max(abs(harness.spread([x["hit_ratio"] for x in val["replayed"][r["variant"]]])["median"]
                           - r["hit_ratio"]["median"]) for r in rows)
    answers = out["answers"]
    return [
        (f"{args.models} tiny BERT embedders m00..m{args.models - 1:02d} (`tests/tiny.py` shape {SHAPE}, seeds "
         f"{args.model_seed}..{args.model_seed + args.models - 1}, float32), footprint {fp / 2**20:.1f} MiB each "
         f"(weights + reserve, as the pool counts it). {args.replicas} `shoal serve` replicas on loopback, each "
         f"`--memory-budget {budget}` ({budget / 2**20:.1f} MiB: room for {args.capacity}, never "
         f"{args.capacity + 1}) and `--host-cache {args.host_cache}`, {args.threads} torch thread(s) each: "
         f"`{out['replica_command']}`. In front, HAProxy {out['haproxy']} running "
         "k8s/base/router/haproxy.cfg rendered with static `server shoalN` lines (tests/deploy/test_router.py's "
         "`render`), in three variants: **round-robin** (`balance roundrobin`), **affinity** (the shipped "
         "`balance hash var(txn.shoal_model)` + `hash-type consistent sdbm avalanche`, without "
         "`hash-balance-factor`), **affinity + bounded load** (the shipped file as is, `hash-balance-factor "
         f"{out['factor']}`)."),
        "",
        (f"Trace: {args.warmup} warm-up + {args.requests} measured requests, each request's model drawn from "
         f"Zipf({ZIPF_S}) over the {args.models} models (m00 hottest: {100 * out['trace']['hottest_share']:.0f}% of "
         f"the measured requests; the {args.capacity * args.replicas} most requested hold "
         f"{100 * out['trace']['top_fleet_share']:.0f}%), 1-4 corpus texts each, seed {args.seed}, the same for "
         f"every variant and round; sent with `X-Shoal-Model` from {args.concurrency} closed-loop clients. Before "
         "each run every replica unloads every model; the warm-up runs and drains, then the measured part runs. "
         "Hit ratio = 1 - loads / requests the replicas answered (their `shoal_model_loads_total` and "
         "`shoal_requests_total` over the measured part); loads per 1,000 requests; goodput = requests answered "
         "200 per second; latency at the client; off-owner = share of requests answered by a replica other "
         "than the model's ring owner."),
        "",
        bench.method_line() + " Every figure is a median (min-max) over rounds; errors, lookups and retries add "
        "all rounds; requests per replica and replicas per model come from each variant's median round by goodput.",
        "",
        "## Real run: 3 replicas, 24 models, budget for 4 each",
        "",
        *harness.table(["router", "hit ratio", "loads / 1,000 req", "goodput req/s", "p50 ms", "p99 ms",
                        "errors by status", "off-owner share", "requests per replica", "cores", "others (max)"], main),
        "",
        *harness.table(["router", "pool lookups hit/host/miss", "mean load ms", "router retries / redispatches",
                        "replicas per model"], mechanics),
        "",
        ("`shoal_pool_lookups_total` counts hits only: the device worker loads cold models itself (`begin_load`, "
         "as a swap) and leases a model only once it is resident, so a miss never reaches the counter; the hit "
         "ratio above is therefore taken from loads and requests. Cores: the client (this process), the three "
         "replicas and the variant's HAProxy per wall second of the measured part; others: every other process."),
        "",
        (f"Answers: {answers['answers']} sampled answers (every {args.check_every}th measured request, "
         f"{answers['models']} models, all rounds and variants) against `SentenceTransformer(folder).encode(texts, "
         f"normalize_embeddings=True)`: min cosine {answers['min_cosine']:.6f}, max abs difference "
         f"{answers['max_abs_diff']:.1e}; the same answers against the next model's vectors: max cosine "
         f"{answers['max_cosine_to_another_model']:.3f} (a wrong model would show). "
         f"**{'passed' if answers['passed'] else 'FAILED'}**."),
        "",
        "## The router model, checked against the real HAProxy",
        "",
        *[(f"- {c['servers']} stub servers: ring owners of {c['owners']['names']} model names (`m00`..`m23`, "
           f"`m000`..`m499`) through the affinity variant: {c['owners']['agree']}/{c['owners']['names']} as the "
           f"simulator's ring; {c['bounded']['requests']} held requests (60% one hot model) through the shipped "
           f"config: {c['bounded']['agree']}/{c['bounded']['requests']} choices as the simulator's bounded-load "
           f"rule with the same requests in flight ({c['bounded']['spilled']} spilled off the owner; in flight at "
           f"the end {c['bounded']['in_flight_at_end']}).") for c in rc],
        "",
        "## Simulator against the real run (same trace, 3 replicas)",
        "",
        (f"The simulator runs engine/pool.py's `ModelPool` per replica (the real footprints and budget, LRU "
         "eviction through `begin_load`/`acquire`/`release`, on a virtual clock; the loader returns a stand-in, no "
         "torch) behind the ring above. A replica behaves as its device worker and scheduler do: per-model queues; "
         "one batch at a time, from the resident model with the oldest waiting request, every queued request of "
         "that model up to the 4,096-token budget (real token counts); one load at a time beside the batches, "
         "started as `start_swaps` does (a cold model waits `swap_age_seconds` = 0.1 s while resident models "
         "have work). Time: t_load = "
         f"{cal['t_load_s'] * 1000:.1f} ms per load (the replicas' mean `shoal_model_load_duration_seconds`), "
         f"t_hit = {cal['t_hit_s'] * 1000:.1f} ms of worker time per request (the one fitted parameter: the "
         "simulated goodput of the three variants against the real medians, rms log error "
         f"{cal['fit_rms_log_error']:.2f}). **Modelled**: the simulator routes too ({args.concurrency} "
         "closed-loop clients). **Replayed**: each real round's own routing (the replica that answered each "
         "request, warm-up included) fed to the simulated replicas."),
        "",
        *harness.table(["router", "hit ratio real", "sim modelled", "sim replayed", "loads/1k real",
                        "sim modelled", "sim replayed", "off-owner real", "sim modelled", "goodput real",
                        "sim modelled"], validation),
        "",
        (f"Largest hit-ratio gap to the real median: {worst:.3f} modelled, {worst_replay:.3f} replayed. Goodput is "
         "not a validated output: the simulated replicas are independent servers (as replicas on their own GPUs "
         "or nodes are), while the real ones share this machine's cores with each other, the router and the "
         "client; t_hit is the one number fitted to it. The projection reports hit ratio and loads only."),
        "",
        f"## Projection: {args.sim_models} models, 1..{max(proj['replicas'])} replicas",
        "",
        (f"Zipf({ZIPF_S}) over {args.sim_models} models (seed {args.seed + 1}), {args.sim_warmup} warm-up + "
         f"{args.sim_requests} measured requests per point, {proj['clients_per_replica']} closed-loop clients per "
         f"replica, every replica the real run's budget (room for {args.capacity} models), t_hit and t_load as "
         "calibrated above. Ideal = the Zipf mass of the (replicas x "
         f"{args.capacity}) most requested models: what a perfect partition of the fleet's room would hit."),
        "",
        *harness.table(["replicas", "fleet room (models)", "ideal hit",
                        *[f"hit {p}" for p in VARIANTS], *[f"loads/1k {p}" for p in VARIANTS]], projection),
    ]


def plot(out: dict, rows: list[dict], args, bench: harness.Bench):
    def draw(path: Path) -> None:
        plt = harness._pyplot()
        fig, axes = plt.subplots(2, 2, figsize=(13, 9))
        colors = {v: plt.get_cmap("tab10")(i) for i, v in enumerate(VARIANTS)}
        labels = [LABELS[r["variant"]].replace(" (shipped)", "\n(shipped)") for r in rows]
        x = np.arange(len(rows))
        for ax, key, title, scale in ((axes[0][0], "hit_ratio", "Hit ratio (1 - loads / requests)", 1),
                                      (axes[0][1], "goodput_rps", "Goodput (requests answered 200 / s)", 1)):
            for i, row in enumerate(rows):
                s = row[key]
                ax.bar(i, s["median"] * scale, color=colors[row["variant"]])
                ax.errorbar(i, s["median"] * scale, yerr=[[s["median"] - s["min"]], [s["max"] - s["median"]]],
                            color="black", capsize=4, lw=1)
                ax.text(i, s["max"] * scale, f"{s['median']:.3f}" if key == "hit_ratio" else f"{s['median']:.0f}",
                        ha="center", va="bottom", fontsize=8)
            ax.set_xticks(x, labels, fontsize=8)
            ax.set_title(f"Real run: {title}", fontsize=10)
        val = out["validation"]
        axes[0][0].scatter(x - 0.3, [val["modelled"][r["variant"]]["hit_ratio"] for r in rows], marker="x",
                           color="black", zorder=3, label="simulator, routing modelled")
        axes[0][0].scatter(x + 0.3, [np.median([y["hit_ratio"] for y in val["replayed"][r["variant"]]]) for r in rows],
                           marker="o", facecolors="none", edgecolors="black", zorder=3, label="simulator, routing replayed")
        axes[0][0].set_ylim(0, 1.1)
        axes[0][0].legend(fontsize=8, loc="lower right")
        for i, row in enumerate(rows):
            axes[0][1].text(i, row["goodput_rps"]["median"] / 2,
                            f"p50 {ms(row['latency_p50']['median'])} ms\np99 {ms(row['latency_p99']['median'])} ms",
                            ha="center", fontsize=8, color="white")
        proj = out["projection"]
        ns = proj["replicas"]
        for ax, key, title in ((axes[1][0], "hit_ratio", "hit ratio"), (axes[1][1], "loads_per_1000",
                                                                        "loads per 1,000 requests")):
            for policy in VARIANTS:
                ax.plot(ns, [proj["results"][policy][str(n)][key] for n in ns], marker=".", color=colors[policy],
                        label=LABELS[policy])
            if key == "hit_ratio":
                ax.plot(ns, [zipf_mass(args.sim_models, n * args.capacity) for n in ns], ls="--", color="gray",
                        label=f"ideal (Zipf mass of the replicas x {args.capacity} hottest)")
            ax.set_ylim(0, 1 if key == "hit_ratio" else 1000)
            ax.set_xlabel("replicas")
            ax.set_title(f"Simulation: {title}, {args.sim_models} models, room for {args.capacity} per replica",
                         fontsize=10)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        fig.suptitle(f"Fleet routing: {args.replicas} real replicas x {args.models} models, and a projection "
                     f"({bench.facts['cpu']['model']})", fontsize=11)
        fig.text(0.01, 0.005, f"commit {bench.facts['git']['short']}, {bench.facts['date']}; medians, whiskers "
                 "min-max over rounds", fontsize=7, color="dimgray")
        fig.tight_layout(rect=(0, 0.02, 1, 0.97))
        fig.savefig(path, dpi=110)
        plt.close(fig)
    return draw


# ---- main ------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=int, default=24, help="models served by every replica (default 24)")
    parser.add_argument("--replicas", type=int, default=3, help="real replicas (default 3)")
    parser.add_argument("--capacity", type=int, default=4, help="models a replica's memory budget holds (default 4)")
    parser.add_argument("--host-cache", type=int, default=0, help="--host-cache of every replica, bytes (default 0)")
    parser.add_argument("--concurrency", type=int, default=12, help="closed-loop clients (default 12)")
    parser.add_argument("--requests", type=int, default=None, help="measured requests per run (default 1800; 240 quick)")
    parser.add_argument("--warmup", type=int, default=None, help="warm-up requests per run (default 300; 60 quick)")
    parser.add_argument("--check-every", type=int, default=20, help="compare every n-th measured answer (default 20)")
    parser.add_argument("--texts", type=int, default=2000, help="corpus size to draw request texts from")
    parser.add_argument("--seed", type=int, default=0, help="trace seed (the projection's trace: seed + 1)")
    parser.add_argument("--model-seed", type=int, default=1000, help="seed of m00 (m01: +1, ...)")
    parser.add_argument("--sim-models", type=int, default=500, help="models in the projection (default 500)")
    parser.add_argument("--sim-replicas", default=None, help="replica counts to project (default 1-16; quick 1,2,4,8,16)")
    parser.add_argument("--sim-requests", type=int, default=None, help="measured requests per projected point "
                                                                         "(default 12000; 3000 quick)")
    parser.add_argument("--sim-warmup", type=int, default=None, help="warm-up per projected point (default 3000; 1000 quick)")
    parser.add_argument("--workdir", default=None, help="model folders and logs (default: a temp dir, removed)")
    parser.add_argument("--keep", action="store_true", help="keep the temp work folder")
    harness.add_arguments(parser, rounds=3, quiet_wait=60.0)
    parser.set_defaults(threads=1)  # per replica: three replicas, the router and the client share the cores
    args = parser.parse_args(argv)
    args.requests = args.requests or (240 if args.quick else 1800)
    args.warmup = args.warmup if args.warmup is not None else (60 if args.quick else 300)
    args.sim_requests = args.sim_requests or (3000 if args.quick else 12000)
    args.sim_warmup = args.sim_warmup if args.sim_warmup is not None else (1000 if args.quick else 3000)
    sim_replicas = parse_range(args.sim_replicas or ("1,2,4,8,16" if args.quick else "1-16"))
    if not Path(HAPROXY).exists():
        raise SystemExit(f"fleet: needs HAProxy 2.6 at {HAPROXY} (Debian's haproxy package)")

    bench = harness.Bench("fleet", args, argv, packages=(*harness.PACKAGES, "httpx"))
    bench.facts["peer_versions"] = {"router": {"haproxy": haproxy_version()}}
    log = bench.log
    from benchmarks.corpus import build_corpus
    from engine import spec_from_folder
    from engine.pool import footprint

    shipped = SHIPPED.read_text()
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="shoal-fleet-"))
    workdir.mkdir(parents=True, exist_ok=True)
    out: dict = {"haproxy": bench.facts["peer_versions"]["router"]["haproxy"], "factor": balance_factor(shipped)}
    try:
        # 1. the router model against the real HAProxy
        names = [f"m{i:02d}" for i in range(24)] + [f"m{i:03d}" for i in range(500)]
        out["ring_check"] = [asyncio.run(check_ring(shipped, workdir, n, names, held, args.seed))
                             for n, held in ((args.replicas, 60), (16, 160))]
        for c in out["ring_check"]:
            log("ring check", servers=c["servers"], owners=f"{c['owners']['agree']}/{c['owners']['names']}",
                bounded=f"{c['bounded']['agree']}/{c['bounded']['requests']}", spilled=c["bounded"]["spilled"])

        # 2. the real fleet
        folders = build_models(workdir / "models", args.models, args.model_seed, log)
        spec = spec_from_folder("m00", folders["m00"])
        fp = footprint(spec, FLOAT32)
        budget = args.capacity * fp + fp // 2
        out |= {"footprint_bytes": fp, "budget_bytes": budget}
        corpus = build_corpus(args.texts, seed=args.seed)
        model_names = sorted(folders)
        trace = build_trace(model_names, args.warmup + args.requests, corpus.texts, args.seed)
        measured = Counter(r.model for r in trace[args.warmup:])
        top = [m for m, _ in measured.most_common(args.capacity * args.replicas)]
        out["trace"] = {"requests": args.requests, "warmup": args.warmup, "models": len(measured),
                        "hottest_share": measured.most_common(1)[0][1] / args.requests,
                        "top_fleet_share": sum(measured[m] for m in top) / args.requests,
                        "texts": sum(len(r.texts) for r in trace[args.warmup:])}
        sample = set(range(args.warmup, len(trace), args.check_every))
        fleet = Fleet(bench, args, folders, budget, workdir)
        out["replica_command"] = fleet.command
        vectors: dict = {}
        assignments: dict = {}
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(fleet.start(shipped, workdir))
            log("fleet up", replicas=len(fleet.replicas), routers=",".join(fleet.routers))

            def system(variant: str) -> harness.InProcess:
                def run(round_: int) -> dict:
                    result = loop.run_until_complete(fleet.run(variant, trace, sample))
                    vectors[variant, round_] = result.pop("_vectors")
                    assignments[variant, round_] = result.pop("_assignment")
                    return result
                return harness.InProcess(variant, run, extra_pids=lambda: fleet.pids(variant))

            runs = bench.interleave([system(v) for v in VARIANTS], on_run=lambda s, r: log(
                "run", variant=s.key, hit_ratio=r["hit_ratio"], loads_per_1000=r["loads_per_1000"],
                goodput=r["goodput_rps"], p99_ms=r["latency_p99"] * 1000,
                errors=sum(v for k, v in r["statuses"].items() if k != "200"), off_owner=r["off_owner_share"]))
        finally:
            fleet.close()
            loop.close()
        out["runs"] = runs
        rows = summarise(runs)
        (workdir / "real-run.json").write_text(json.dumps(  # for a look at the routing afterwards (--workdir)
            {"models": [r.model for r in trace], "runs": runs, "budget": budget, "warmup": args.warmup,
             "assignments": {f"{v}/{r}": a for (v, r), a in assignments.items()}}, default=str))
        out["answers"] = check_answers(trace, folders, {k: v for k, v in vectors.items()}, log)

        # 3. the simulator: validation on the real trace, then the projection
        specs = sim_specs(spec, model_names)
        models = [r.model for r in trace]
        tokens = request_tokens(trace, folders["m00"], spec.max_length)
        base = SimSetup(args.replicas, "bounded", budget, args.concurrency, 0.0, 0.0, out["factor"], args.warmup)
        out["calibration"] = calibrate(runs, models, tokens, specs, base)
        log("calibration", t_hit_ms=out["calibration"]["t_hit_s"] * 1000,
            t_load_ms=out["calibration"]["t_load_s"] * 1000, rms_log_error=out["calibration"]["fit_rms_log_error"])

        def setup(n: int, policy: str, clients: int, warmup: int) -> SimSetup:
            return dataclasses.replace(base, replicas=n, policy=policy, clients=clients, warmup=warmup,
                                       t_hit=out["calibration"]["t_hit_s"], t_load=out["calibration"]["t_load_s"])

        out["validation"] = {
            "modelled": {v: simulate(models, tokens, specs, setup(args.replicas, v, args.concurrency, args.warmup))
                         for v in VARIANTS},
            "replayed": {v: [simulate(models, tokens, specs, setup(args.replicas, v, args.concurrency, args.warmup),
                                      assign=assignments[v, r["round"]]) for r in runs[v]
                             if -1 not in assignments[v, r["round"]]] for v in VARIANTS},
        }
        for v in VARIANTS:
            log("validation", variant=v, real=rows[VARIANTS.index(v)]["hit_ratio"]["median"],
                modelled=out["validation"]["modelled"][v]["hit_ratio"],
                replayed=",".join(f"{x['hit_ratio']:.3f}" for x in out["validation"]["replayed"][v]),
                goodput_real=rows[VARIANTS.index(v)]["goodput_rps"]["median"],
                goodput_modelled=out["validation"]["modelled"][v]["goodput_rps"])
        width = len(str(args.sim_models - 1))
        sim_names = [f"m{i:0{width}d}" for i in range(args.sim_models)]
        sim_trace = [sim_names[r] for r in zipf_ranks(args.sim_models, args.sim_warmup + args.sim_requests,
                                                       np.random.default_rng(args.seed + 1))]
        per_replica = max(1, args.concurrency // args.replicas)
        sim_all = sim_specs(spec, sim_names)
        sim_tokens = [int(t) for t in np.random.default_rng(args.seed + 2).choice(tokens, size=len(sim_trace))]
        projection = {policy: {} for policy in VARIANTS}
        started = time.monotonic()
        for n in sim_replicas:
            for policy in VARIANTS:
                projection[policy][str(n)] = simulate(sim_trace, sim_tokens, sim_all,
                                                      setup(n, policy, per_replica * n, args.sim_warmup))
            log("projection", replicas=n, **{p: round(projection[p][str(n)]["hit_ratio"], 3) for p in VARIANTS})
        out["projection"] = {"replicas": sim_replicas, "models": args.sim_models, "clients_per_replica": per_replica,
                             "requests": args.sim_requests, "warmup": args.sim_warmup, "seed": args.seed + 1,
                             "seconds": round(time.monotonic() - started, 1), "results": projection}
    finally:
        if not args.workdir and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    data = {"models": f"{args.models} tiny BERTs ({SHAPE}), float32",
            "method": {**bench.method(), "replicas": args.replicas, "capacity": args.capacity,
                       "host_cache": args.host_cache, "concurrency": args.concurrency, "requests": args.requests,
                       "warmup": args.warmup, "zipf_s": ZIPF_S, "seed": args.seed, "model_seed": args.model_seed,
                       "check_every": args.check_every,
                       "hit_ratio": "1 - loads / requests the replicas answered, over the measured part",
                       "variants": {v: LABELS[v] for v in VARIANTS}},
            "footprint_bytes": out["footprint_bytes"], "budget_bytes": out["budget_bytes"], "trace": out["trace"],
            "haproxy": out["haproxy"], "hash_balance_factor": out["factor"], "replica_command": out["replica_command"],
            "results": rows, "answers": out["answers"], "ring_check": out["ring_check"],
            "calibration": out["calibration"], "validation": out["validation"], "projection": out["projection"],
            "rounds": out["runs"]}
    bench.write(data, "Fleet: model-affinity routing in front of Shoal replicas (cpu)", report(bench, args, out, rows),
                plot(out, rows, args, bench))


if __name__ == "__main__":
    main()
