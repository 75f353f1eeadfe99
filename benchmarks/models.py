"""Reranking, ColBERT, GLiNER and zero-shot classification: Shoal against sentence-transformers'
CrossEncoder, PyLate, the gliner package and transformers' zero-shot-classification pipeline, same inputs.

Workloads (from the corpus of benchmarks/corpus.py, 2,000 texts by default):
  - rerank: `--queries` query-like texts (default 20), each scored against 100 passages (a
    seeded sample of the corpus' passages per query), one query at a time, as a reranker is called:
      * `CrossEncoder(folder, max_length=512).predict(pairs, batch_size=32)`, float32 and with the
        model in bfloat16 (`model_kwargs={"torch_dtype": torch.bfloat16}`)
      * Shoal's engine in process, `await engine.score("rerank", query, passages)`, float32 and bfloat16
  - colbert: every corpus text as a ColBERT document:
      * PyLate `ColBERT.encode(texts, is_query=False, batch_size=32)` (float32)
      * Shoal's engine in process, one `engine.encode("colbert", texts, output="multivector",
        input_type="document")` call with all texts, float32 and bfloat16
  - gliner: the first `--gliner-passages` corpus passages (default 1,000) with 5 entity labels:
      * the gliner package, `GLiNER.inference(passages, labels, threshold, batch_size=8)` (its
        default batch size), float32, in its own venv (`--gliner-python`, default .gliner-venv,
        made by scripts/install-gliner.sh) through a harness worker
      * Shoal's engine in process, one `engine.extract("gliner", passages, labels=..., threshold=...)`
        call, float32
  - zero-shot: the first `--zero-shot-passages` corpus passages (default 500) x 5 candidate labels,
    single-label, the default hypothesis template "This example is {}.":
      * transformers `pipeline("zero-shot-classification", model=folder, dtype=float32)` called with all
        passages, `candidate_labels` and `batch_size=32` (pairs per forward pass; its default is 1)
      * Shoal's engine in process, `engine.classify("nli", chunk, labels=...)` for chunks of 100 passages
        (500 pairs, under the 2,048-pair request limit), all chunks in flight at once, float32
  - compress: `--compress-contexts` contexts (default 100), each 10 consecutive corpus passages joined by
    line breaks (a retrieved context of about 700 tokens), LLMLingua-2 token-level compression at rate 0.5
    with force_tokens ["\n", "?"]:
      * the llmlingua package, `PromptCompressor(folder, device_map="cpu", use_llmlingua2=True)` (float32),
        one `compress_prompt(contexts, rate, force_tokens, use_context_level_filter=False)` call with all
        contexts (its default batch of 50 windows, each padded to 512 tokens), in its own venv
        (`--llmlingua-python`, default .llmlingua-venv, made by scripts/install-llmlingua.sh) through a
        harness worker
      * Shoal's engine in process, one `engine.compress("compressor", contexts, rate, force_tokens)` call
    and, untimed, the compression both reach at rates 0.33, 0.5 and 0.7 (cl100k_base tokens kept)

The models are built here from the real all-MiniLM-L6-v2 weights (there is no model hub):
  - cross-encoder: `BertForSequenceClassification.from_pretrained(minilm, num_labels=1)`, MiniLM's
    encoder with a new seeded one-logit head (the shape of cross-encoder/ms-marco-MiniLM-L6-v2);
  - ColBERT: PyLate `models.ColBERT` over MiniLM, embedding_size=128, PyLate's other defaults;
  - GLiNER: the gliner package's uni-encoder span model over MiniLM (its defaults: markerV0 spans
    up to 12 words, hidden size 512, one LSTM layer, first-subtoken pooling), seeded new layers,
    built and saved (safetensors) by the gliner worker and loaded back by it as a user would. Its
    threshold keeps about 10% of the spans a flat decoding finds at threshold 0 on 50 passages, so
    that decoding has a realistic few entities per passage to sort out;
  - NLI: `BertForSequenceClassification.from_pretrained(minilm, num_labels=3)` with a new seeded head
    labelled contradiction / neutral / entailment (MiniLM-L6's size, the size of the small NLI
    cross-encoders). The head is random: the figures measure speed, not accuracy; the agreement shows
    that both sides compute the same probabilities;
  - keep/drop token classifier: `BertForTokenClassification.from_pretrained(minilm, num_labels=2)`, a
    seeded new head, the embeddings grown by the 100 rows llmlingua's [NEWi] force tokens use, saved in a
    folder whose name holds "bert-base-multilingual-cased" (llmlingua picks its BERT word rules by that
    substring of the path; the vocabulary is MiniLM's uncased WordPiece, which those rules read alike).
    LLMLingua-2's own models are BERT-base and XLM-R-large; this one is MiniLM-L6's size, its head random:
    the figures measure speed and the rate-to-ratio mapping, not what a trained head keeps.

Everything but the gliner package runs in this process (PyLate's reference is the in-memory model
that saved the folder), in interleaved rounds through benchmarks/harness.py. Real tokens (pairs with their
special tokens; ColBERT documents with the [D] prefix, after truncation; no padding) are
counted once with Shoal's tokenizers and must equal each Shoal run's `input_tokens`.
Agreement with the float32 peer: rerank, max-abs score difference and same top-1 passage;
ColBERT, equal vector counts, max-abs difference and minimum cosine; GLiNER, the passages whose
entities (label, character offsets) are identical and the max-abs score difference; zero-shot, the
max-abs difference of the label probabilities and the passages with the same top label.

    python benchmarks/models.py             # full run, writes results/models-cpu.{json,md,png}
    python benchmarks/models.py --quick     # 4 queries, 200 texts, one round; writes nothing unless --save
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
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks import harness  # noqa: E402
from benchmarks.corpus import build_corpus  # noqa: E402

PEER_BATCH = 32
PASSAGES_PER_QUERY = 100
COLBERT_DIM = 128
HEAD_SEED = 0
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")
TARGETS = {"rerank-engine-float32": ("rerank-st-float32", 1.2), "colbert-engine-float32": ("colbert-pylate", 1.2)}
GLINER_LABELS = ["person", "organization", "location", "date", "event"]
GLINER_PEER_BATCH = 8  # GLiNER.inference's default
GLINER_SHARE = 0.10  # the threshold keeps this share of the flat decoding's spans at threshold 0
ZERO_SHOT_LABELS = ["history", "science", "sports", "politics", "entertainment"]
NLI_LABELS = {0: "contradiction", 1: "neutral", 2: "entailment"}
ZERO_SHOT_PEER_BATCH = 32  # pairs per forward pass of the pipeline
ZERO_SHOT_CHUNK = 100  # passages per engine.classify call: 500 pairs, under the 2,048-pair limit
COMPRESS_RATE = 0.5  # llmlingua's default rate, timed
COMPRESS_RATES = (0.33, 0.5, 0.7)  # untimed: the compression reached at each
COMPRESS_FORCE = ["\n", "?"]  # llmlingua's documented example
COMPRESS_PASSAGES = 10  # corpus passages per context
WORKERS: list = []  # peers in their own venvs, closed at the end (besides the gliner worker)


@dataclass
class Workload:
    name: str
    items: int  # pairs or documents
    unit: str
    real_tokens: int
    description: str
    notes: list = field(default_factory=list)  # lines for the report, after the table


@dataclass
class Runner:
    """One system of one workload: `call(warm)` runs it, returning its outputs and tokens;
    or `worker` runs it in its own process (its first round returns the outputs)."""
    key: str
    workload: str
    label: str
    kind: str  # peer | engine
    dtype: str
    shape: str
    call: object = None
    worker: harness.Worker | None = None


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


def build_nli(base: Path, folder: Path) -> Path:
    """MiniLM's encoder with a new 3-way head (seeded) labelled as MNLI models are, so transformers'
    pipeline and Shoal both take it for a zero-shot classifier; saved (safetensors) with its tokenizer."""
    import transformers

    transformers.logging.set_verbosity_error()
    torch.manual_seed(HEAD_SEED)
    model = transformers.BertForSequenceClassification.from_pretrained(
        str(base), num_labels=3, id2label=NLI_LABELS, label2id={v: k for k, v in NLI_LABELS.items()})
    model.config.architectures = ["BertForSequenceClassification"]
    model.save_pretrained(str(folder), safe_serialization=True)
    for name in TOKENIZER_FILES:
        shutil.copy(base / name, folder / name)
    return folder


def build_compressor(base: Path, folder: Path) -> Path:
    """MiniLM's encoder with a new 2-way (drop, keep) token head (seeded) and 100 spare embedding
    rows for llmlingua's [NEWi] force tokens, saved (safetensors) with its tokenizer."""
    import transformers

    transformers.logging.set_verbosity_error()
    torch.manual_seed(HEAD_SEED)
    model = transformers.BertForTokenClassification.from_pretrained(str(base), num_labels=2)
    model.resize_token_embeddings(model.config.vocab_size + 100)
    model.config.architectures = ["BertForTokenClassification"]
    model.save_pretrained(str(folder), safe_serialization=True)
    for name in TOKENIZER_FILES:
        shutil.copy(base / name, folder / name)
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


class GlinerPeer:
    """The gliner package in its own venv, as a harness.Worker target: builds the benchmark's
    GLiNER over MiniLM once (seeded), saves it for Shoal, loads it back, picks the threshold
    (see the module doc), then runs `inference` over the passages each round (the entities of
    the first round come back for the agreement)."""

    def __init__(self, base: str, folder: str, texts: list[str], labels: list[str], batch_size: int, seed: int):
        import warnings

        from gliner import GLiNER
        from gliner.config import GLiNERConfig

        warnings.simplefilter("ignore")  # "new embeddings initialized ...": new tokens are the point here
        torch.manual_seed(seed)
        built = GLiNER.from_config(GLiNERConfig(model_name=base), backbone_from_pretrained=True, local_files_only=True)
        built.save_pretrained(folder, safe_serialization=True)
        self.model = GLiNER.from_pretrained(folder, local_files_only=True)
        self.texts, self.labels, self.batch_size = texts, labels, batch_size
        found = self.model.inference(texts[:50], labels, threshold=0.0)
        scores = sorted((e["score"] for entities in found for e in entities), reverse=True)
        keep = max(1, int(len(scores) * GLINER_SHARE))
        self.threshold = (scores[keep - 1] + scores[keep]) / 2  # between two scores: float noise cannot decide

    def info(self) -> dict:
        from importlib import metadata

        return {"threshold": self.threshold, "gliner": metadata.version("gliner")}

    def run(self, round_: int) -> dict:
        found = self.model.inference(self.texts, self.labels, threshold=self.threshold, batch_size=self.batch_size)
        return {"entities": found} if round_ == 1 else {}


class LlmlinguaPeer:
    """The llmlingua package in its own venv, as a harness.Worker target: loads the compressor
    as a user does (tests/llmlingua_reference.py, offline), compresses every context once per
    rate of the sweep (untimed, for `info`), then all contexts at COMPRESS_RATE each round (the
    texts of the first round come back for the agreement)."""

    def __init__(self, folder: str, contexts: list[str], rate: float, rates: list[float], force: list[str]):
        from tests.llmlingua_reference import compressor, versions

        self.model, self.versions = compressor(folder), versions()
        self.contexts, self.rate, self.force = contexts, rate, force
        self.sweep = {str(r): self._compress(r) for r in rates}

    def _compress(self, rate: float) -> dict:
        result = self.model.compress_prompt(self.contexts, rate=rate, force_tokens=self.force,
                                            use_context_level_filter=False)
        return {"texts": result["compressed_prompt_list"], "original": result["origin_tokens"],
                "kept": result["compressed_tokens"]}

    def info(self) -> dict:
        return {**self.versions, "sweep": self.sweep}

    def run(self, round_: int) -> dict:
        texts = self._compress(self.rate)["texts"]
        return {"entities": texts} if round_ == 1 else {}


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


def gliner_agreement(found: list, reference: list) -> tuple[float, str]:
    """Entities as (label, start, end) per passage, identical or not; max-abs score difference
    over the identical ones."""
    same, diff, entities = 0, 0.0, sum(len(r) for r in reference)
    for ours, theirs in zip(found, reference):
        key = sorted((e["label"], e["start"], e["end"], e["score"]) for e in ours)
        want = sorted((e["label"], e["start"], e["end"], e["score"]) for e in theirs)
        if [k[:3] for k in key] == [w[:3] for w in want]:
            same += 1
            diff = max([diff] + [abs(k[3] - w[3]) for k, w in zip(key, want)])
    text = f"same entities in {same}/{len(reference)} passages ({entities:,} entities); max-abs {diff:.2e}"
    return (diff if same == len(reference) else float("inf")), text


def zero_shot_agreement(scores: np.ndarray, reference: np.ndarray) -> tuple[float, str]:
    diff = float(np.abs(scores - reference).max())
    same_top = int((scores.argmax(1) == reference.argmax(1)).sum())
    return diff, f"max-abs {diff:.2e}; same top label {same_top}/{len(reference)}"


def compress_agreement(texts: list[str], reference: list[str]) -> tuple[float, str]:
    same = sum(a == b for a, b in zip(texts, reference))
    text = f"identical text in {same}/{len(reference)} contexts"
    return (0.0 if same == len(reference) == len(texts) else float("inf")), text


# ---- the systems --------------------------------------------------------------------------
def engine_for(name: str, folder: Path, dtype: str, loop: asyncio.AbstractEventLoop):
    from engine import Engine, EngineConfig, spec_from_folder

    engine = Engine([spec_from_folder(name, folder)], EngineConfig(device="cpu", dtype=dtype))
    loop.run_until_complete(engine.start())
    loop.run_until_complete(engine.load(name))
    return engine


def runners(args, inputs: dict, folders: dict, colbert_model, gliner_peer, loop, engines: list) -> list[Runner]:
    """Every system of the chosen workloads, built and ready; `engines` collects what to stop."""
    queries, passages = inputs["rerank"]
    texts = inputs["colbert"]
    found = []
    if "rerank" in args.workloads:
        from sentence_transformers import CrossEncoder

        for dtype in args.peer_dtypes:
            model = CrossEncoder(str(folders["rerank"]), device="cpu", max_length=512,
                                 model_kwargs={"torch_dtype": getattr(torch, dtype)})

            def predict(warm: bool, model=model):
                q, p = (queries[:2], passages[:2]) if warm else (queries, passages)
                scores = [np.asarray(model.predict([(x, y) for y in ps], batch_size=PEER_BATCH,
                                                   show_progress_bar=False), dtype=np.float64)
                          for x, ps in zip(q, p)]
                return scores, None

            found.append(Runner(f"rerank-st-{dtype}", "rerank", "sentence-transformers CrossEncoder", "peer", dtype,
                                f"predict({PASSAGES_PER_QUERY} pairs, batch_size={PEER_BATCH}) per query", predict))
        for dtype in args.engine_dtypes:
            engine = engine_for("rerank", folders["rerank"], dtype, loop)
            engines.append(engine)

            def score(warm: bool, engine=engine):
                q, p = (queries[:2], passages[:2]) if warm else (queries, passages)
                results = [loop.run_until_complete(engine.score("rerank", x, ps)) for x, ps in zip(q, p)]
                return [np.asarray(r.scores, dtype=np.float64) for r in results], sum(r.input_tokens for r in results)

            found.append(Runner(f"rerank-engine-{dtype}", "rerank", "Shoal engine (in process)", "engine", dtype,
                                f"score(query, {PASSAGES_PER_QUERY} passages) per query", score))
    if "colbert" in args.workloads:
        def pylate(warm: bool):
            out = colbert_model.encode(texts[:64] if warm else texts, is_query=False, batch_size=PEER_BATCH,
                                       show_progress_bar=False)
            return [np.asarray(x, dtype=np.float32) for x in out], None

        found.append(Runner("colbert-pylate", "colbert", "PyLate ColBERT", "peer", "float32",
                            f"encode(is_query=False, batch_size={PEER_BATCH})", pylate))
        for dtype in args.engine_dtypes:
            engine = engine_for("colbert", folders["colbert"], dtype, loop)
            engines.append(engine)

            def encode(warm: bool, engine=engine):
                result = loop.run_until_complete(engine.encode("colbert", texts[:64] if warm else texts,
                                                               output="multivector", input_type="document"))
                return [np.asarray(x) for x in result.embeddings], result.input_tokens

            found.append(Runner(f"colbert-engine-{dtype}", "colbert", "Shoal engine (in process)", "engine", dtype,
                                "one encode(multivector, document) call with all texts", encode))
    if "gliner" in args.workloads:
        passages, threshold = inputs["gliner"], gliner_peer.info["threshold"]
        found.append(Runner("gliner-package", "gliner", f"gliner {gliner_peer.info['gliner']} (own venv)", "peer",
                            "float32", f"inference(threshold, batch_size={GLINER_PEER_BATCH})", worker=gliner_peer))
        engine = engine_for("gliner", folders["gliner"], "float32", loop)
        engines.append(engine)

        def extract(warm: bool):
            result = loop.run_until_complete(engine.extract("gliner", passages[:16] if warm else passages,
                                                            labels=GLINER_LABELS, threshold=threshold))
            return [[vars(e) for e in entities] for entities in result.entities], result.input_tokens

        found.append(Runner("gliner-engine-float32", "gliner", "Shoal engine (in process)", "engine", "float32",
                            "one extract(labels, threshold) call with all passages", extract))
    if "zero-shot" in args.workloads:
        found += zero_shot_runners(inputs["zero-shot"], folders["zero-shot"], loop, engines)
    if "compress" in args.workloads:
        found += compress_runners(*inputs["compress"], folders["compress"], loop, engines)
    return found


def compress_runners(contexts: list[str], peer: harness.Worker, folder: Path, loop, engines: list) -> list[Runner]:
    """The llmlingua worker and Shoal's engine on the same model and contexts, float32; each
    returns the compressed text of every context."""
    engine = engine_for("compressor", folder, "float32", loop)
    engines.append(engine)

    def compress(warm: bool):
        result = loop.run_until_complete(engine.compress("compressor", contexts[:4] if warm else contexts,
                                                         rate=COMPRESS_RATE, force_tokens=COMPRESS_FORCE))
        return [c.compressed for c in result.contexts], result.input_tokens

    return [Runner("compress-llmlingua", "compress", f"llmlingua {peer.info['llmlingua']} (own venv)", "peer",
                   "float32", f"compress_prompt(all contexts, rate={COMPRESS_RATE}), batches of 50", worker=peer),
            Runner("compress-engine-float32", "compress", "Shoal engine (in process)", "engine", "float32",
                   f"one compress(all contexts, rate={COMPRESS_RATE}) call", compress)]


def zero_shot_runners(passages: list[str], folder: Path, loop, engines: list) -> list[Runner]:
    """transformers' pipeline and Shoal's engine on the same NLI model, both float32 on --threads
    torch threads; each returns the [passages, labels] probabilities in ZERO_SHOT_LABELS order."""
    from transformers import pipeline

    classifier = pipeline("zero-shot-classification", model=str(folder), device="cpu", dtype=torch.float32)

    def peer(warm: bool):
        found = classifier(passages[:8] if warm else passages, candidate_labels=ZERO_SHOT_LABELS,
                           batch_size=ZERO_SHOT_PEER_BATCH)
        return np.array([[dict(zip(r["labels"], r["scores"]))[label] for label in ZERO_SHOT_LABELS]
                         for r in found]), None

    engine = engine_for("nli", folder, "float32", loop)
    engines.append(engine)

    async def chunks(texts: list[str]) -> list:
        return await asyncio.gather(*(engine.classify("nli", texts[i:i + ZERO_SHOT_CHUNK], labels=ZERO_SHOT_LABELS)
                                      for i in range(0, len(texts), ZERO_SHOT_CHUNK)))

    def classify(warm: bool):
        results = loop.run_until_complete(chunks(passages[:8] if warm else passages))
        assert all(r.labels == tuple(ZERO_SHOT_LABELS) for r in results)
        return np.concatenate([r.probabilities for r in results]), sum(r.input_tokens for r in results)

    return [Runner("zero-shot-pipeline", "zero-shot", "transformers zero-shot-classification pipeline", "peer",
                   "float32", f"one call with all passages, batch_size={ZERO_SHOT_PEER_BATCH}", peer),
            Runner("zero-shot-engine-float32", "zero-shot", "Shoal engine (in process)", "engine", "float32",
                   f"classify({ZERO_SHOT_CHUNK} passages, labels) calls, all in flight", classify)]


def query_parity(colbert_model, folder: Path, queries: list[str], loop) -> str:
    """Untimed: ColBERT query vectors against PyLate. Under sentence-transformers 6, PyLate pads a
    query batch to its longest query, not to query_length; one query longer than the query
    length in the (single) batch restores PyLate's documented expansion, as in
    tests/engine/test_colbert_parity.py."""
    long_query = "mountain coffee " * 30
    batch = queries + [long_query]
    expected = colbert_model.encode(batch, is_query=True, batch_size=len(batch), show_progress_bar=False)
    engine = engine_for("colbert", folder, "float32", loop)
    try:
        got = loop.run_until_complete(engine.encode("colbert", batch, output="multivector", input_type="query"))
    finally:
        loop.run_until_complete(engine.stop())
    _, text = colbert_agreement([np.asarray(g) for g in got.embeddings],
                                [np.asarray(e, dtype=np.float32) for e in expected])
    return f"{len(batch)} queries (one batch, with one {len(long_query.split())}-word query): {text}"


# ---- measuring and reporting ---------------------------------------------------------------
def measure(bench: harness.Bench, found: list[Runner], workloads: dict) -> tuple[dict, dict]:
    """Interleaved rounds; each system's outputs of its first round kept for the agreement."""
    outputs: dict = {}

    def system(r: Runner) -> harness.InProcess:
        def run(round_: int) -> dict:
            out, tokens = r.call(False)  # timed by InProcess: the call alone
            expected = workloads[r.workload].real_tokens
            if tokens is not None and tokens != expected:
                raise RuntimeError(f"{r.key}: {tokens} input tokens reported, {expected} expected")
            outputs.setdefault(r.key, out)
            return {}
        return harness.InProcess(r.key, run)

    def keep_entities(worker, record: dict) -> None:  # a worker's outputs stay out of the results files
        if "entities" in record:
            outputs.setdefault(worker.key, record.pop("entities"))

    for r in found:
        if r.worker is None:  # workers are warm from their start
            bench.log("warming", system=r.key)
            r.call(True)
    records = bench.interleave([r.worker or system(r) for r in found], on_run=keep_entities)
    return records, outputs


def rows_of(found: list[Runner], records: dict, outputs: dict, workloads: dict) -> list[dict]:
    rows = []
    for r in found:
        w = workloads[r.workload]
        runs = records[r.key]
        reference = next(p for p in found if p.workload == r.workload and p.kind == "peer" and p.dtype == "float32")
        same_class = [p for p in found if p.workload == r.workload and p.kind == "peer"
                      and (p.dtype == "float32") == (r.dtype == "float32")]
        row = {"key": r.key, "workload": r.workload, "system": r.label, "kind": r.kind, "dtype": r.dtype,
               "shape": r.shape, "items_per_s": harness.spread([w.items / x["seconds"] for x in runs]),
               "tokens_per_s": harness.spread([w.real_tokens / x["seconds"] for x in runs]),
               "cores": harness.spread([x["cores"] for x in runs]),
               "others_cores": harness.spread([x["others_cores"] for x in runs]),
               "peer": (same_class or [reference])[0].key}
        check = {"rerank": rerank_agreement, "colbert": colbert_agreement, "gliner": gliner_agreement,
                 "zero-shot": zero_shot_agreement, "compress": compress_agreement}[r.workload]
        row["max_abs"], row["agreement"] = ((0.0, "reference") if r is reference
                                            else check(outputs[r.key], outputs[reference.key]))
        rows.append(row)
    by_key = {row["key"]: row for row in rows}
    for row in rows:
        row["vs_peer"] = row["tokens_per_s"]["median"] / by_key[row["peer"]]["tokens_per_s"]["median"]
        peers = [p for p in rows if p["workload"] == row["workload"] and p["kind"] == "peer"]
        if not any(p["dtype"] == row["dtype"] for p in peers):
            row["peer_note"] = "no peer in this precision"
    return rows


def checks(rows: list[dict]) -> list[dict]:
    by_key = {r["key"]: r for r in rows}
    found = []
    for key, (peer, target) in TARGETS.items():
        if key in by_key and peer in by_key:
            ratio = by_key[key]["tokens_per_s"]["median"] / by_key[peer]["tokens_per_s"]["median"]
            found.append({"check": f"{key} >= {target}x {peer}", "ratio": ratio, "met": ratio >= target})
    return found


def report(bench, rows, found, workloads, corpus, models, parity) -> list[str]:
    body = [f"Models, built from the real all-MiniLM-L6-v2 weights: {models['rerank']}; {models['colbert']}."
            if len(models) == 2 else "Models: " + "; ".join(models.values()) + ".",
            "", f"Dataset: {corpus.describe()}.", ""]
    for w in workloads.values():
        body.append(f"- {w.name}: {w.description}; {w.real_tokens:,} real tokens ({w.real_tokens / w.items:.1f} per "
                    f"{w.unit[:-1]}; special tokens counted, no padding), equal to each Shoal run's `input_tokens`.")
    body += ["", bench.method_line() + " All systems in this process but the gliner and llmlingua packages (workers "
             "in their own venvs).",
             "",
             ("Ratios: the row's median over the median of the peer in the same precision (float32 rows against the "
              "float32 peer, bfloat16 rows against the bfloat16 peer where there is one; PyLate runs float32 only, so "
              "the ColBERT bfloat16 rows are against it, as marked). Agreement is always against the float32 peer: "
              "rerank, max-abs difference of the sigmoid scores over all pairs and queries with the same top passage; "
              "ColBERT, equal vector counts, max-abs difference and minimum cosine over all token vectors; GLiNER, "
              "passages with identical entities (label, offsets) and the max-abs difference of their scores; "
              "zero-shot, max-abs difference of the label probabilities and passages with the same top label."), ""]
    cells = []
    for r in rows:
        ratio = "reference" if r["peer"] == r["key"] else f"{r['vs_peer']:.2f}x {r['peer']}"
        if r.get("peer_note"):
            ratio += f" ({r['peer_note']})"
        cells.append([r["workload"], r["key"], r["dtype"], r["shape"], harness.show(r["tokens_per_s"]),
                      harness.show(r["items_per_s"], "{:,.1f}"), ratio, r["agreement"],
                      harness.show(r["cores"], "{:.2f}"), f"{r['others_cores']['max']:.2f}"])
    body += harness.table(["workload", "system", "dtype", "submitted as", "tokens/s", "items/s", "x peer",
                           "agreement with the float32 peer", "cores", "others (max)"], cells)
    for w in workloads.values():
        body += w.notes
    if parity:
        body += ["", f"ColBERT query vectors (untimed, float32): {parity}."]
    body += ["", "Targets (issue 3):", ""]
    body += [f"- {c['check']}: {c['ratio']:.2f}x: **{'met' if c['met'] else 'MISSED'}**" for c in found]
    return body


def plot(rows: list[dict], bench: harness.Bench):
    def draw(path: Path) -> None:
        bars = [{"label": f"{r['workload']}: {r['key']}", "spread": r["tokens_per_s"], "group": r["kind"]}
                for r in rows]
        harness.bar_chart(path, f"Rerank, ColBERT, GLiNER, zero-shot, compress, {bench.facts['cpu']['model']}, "
                                f"{bench.args.threads} threads",
                          bars, "real tokens per second (bar: median, whiskers: min-max over rounds)",
                          f"commit {bench.facts['git']['short']}, {bench.facts['date']}")
    return draw


def prepare(args, corpus, scratch: Path, loop) -> tuple[dict, dict, dict, object, object, dict, str | None]:
    """Builds the models (the GLiNER one in its worker, which stays up as the peer) and the
    workloads' inputs; counts their real tokens."""
    from engine import default_model_spec, spec_from_folder
    from engine.colbert import ColbertTokenizer
    from engine.tokenize import TextTokenizer

    base = Path(default_model_spec().path)
    all_queries = [t for t, k in zip(corpus.texts, corpus.kinds) if k == "query"]
    all_passages = [t for t, k in zip(corpus.texts, corpus.kinds) if k == "passage"]
    if len(all_queries) < args.queries or len(all_passages) < PASSAGES_PER_QUERY:
        raise SystemExit(f"the corpus has {len(all_queries)} queries and {len(all_passages)} passages: too few")
    queries = all_queries[:args.queries]
    passages = [random.Random(args.seed * 1000 + i).sample(all_passages, PASSAGES_PER_QUERY)
                for i in range(len(queries))]
    inputs = {"rerank": (queries, passages), "colbert": corpus.texts, "gliner": all_passages[:args.gliner_passages],
              "zero-shot": all_passages[:args.zero_shot_passages]}
    workloads, folders, models, colbert_model, gliner_peer, parity = {}, {}, {}, None, None, None
    if "rerank" in args.workloads:
        folders["rerank"] = build_cross_encoder(base, scratch / "rerank")
        spec = spec_from_folder("rerank", folders["rerank"])
        pairs = [(q, p) for q, ps in zip(queries, passages) for p in ps]
        lengths = [len(t.ids) for t in TextTokenizer(spec.path, spec.max_length).encode(pairs)]
        workloads["rerank"] = Workload(
            "rerank", len(pairs), "pairs", sum(lengths),
            f"{len(queries)} query-like texts x {PASSAGES_PER_QUERY} passages each (a seeded sample of the corpus' "
            f"passages per query) = {len(pairs)} pairs, one query per call; pair length mean "
            f"{statistics.mean(lengths):.1f}, max {max(lengths)} tokens (max length {spec.max_length})")
        models["rerank"] = (f"cross-encoder = BertForSequenceClassification(MiniLM-L6, num_labels=1, seeded new "
                            f"head), max length {spec.max_length}")
    if "colbert" in args.workloads:
        folders["colbert"], colbert_model = build_colbert(base, scratch / "colbert")
        spec = spec_from_folder("colbert", folders["colbert"])
        lengths = [len(t.ids) for t in ColbertTokenizer(spec.path, spec.colbert, spec.max_length)
                   .encode(corpus.texts, False)]
        truncated = sum(n >= spec.colbert.document_length for n in lengths)
        workloads["colbert"] = Workload(
            "colbert", len(corpus.texts), "documents", sum(lengths),
            f"all {len(corpus.texts)} corpus texts as documents; length mean {statistics.mean(lengths):.1f} tokens, "
            f"{truncated} truncated to the document length {spec.colbert.document_length}")
        models["colbert"] = (f"ColBERT = PyLate models.ColBERT(MiniLM-L6, embedding_size={COLBERT_DIM}), query_length "
                             f"{spec.colbert.query_length}, document_length {spec.colbert.document_length}")
        parity = query_parity(colbert_model, folders["colbert"], all_queries, loop)
    if "gliner" in args.workloads:
        gliner_peer, workloads["gliner"], models["gliner"] = prepare_gliner(args, base, inputs["gliner"], scratch)
        folders["gliner"] = scratch / "gliner"
    if "zero-shot" in args.workloads:
        folders["zero-shot"] = build_nli(base, scratch / "nli")
        workloads["zero-shot"], models["zero-shot"] = zero_shot_workload(folders["zero-shot"], inputs["zero-shot"])
    if "compress" in args.workloads:  # the folder's name is what llmlingua's word rules key on
        folders["compress"] = build_compressor(base, scratch / "bert-base-multilingual-cased-minilm-l6-keep-drop")
        contexts = [("\n".join(all_passages[(i * COMPRESS_PASSAGES + j) % len(all_passages)]
                               for j in range(COMPRESS_PASSAGES))) for i in range(args.compress_contexts)]
        peer, workloads["compress"], models["compress"] = prepare_compress(args, folders["compress"], contexts, loop)
        inputs["compress"] = (contexts, peer)
    return inputs, workloads, folders, colbert_model, gliner_peer, models, parity


def prepare_compress(args, folder: Path, contexts: list[str], loop) -> tuple[harness.Worker, Workload, str]:
    """The llmlingua worker, the workload's real tokens (every window the model reads, framed
    [CLS] ... [SEP]), and, untimed, what both keep at each rate of COMPRESS_RATES."""
    from engine import spec_from_folder
    from engine.compress import CompressTokenizer

    if not Path(args.llmlingua_python).exists():
        raise SystemExit(f"no llmlingua environment at {args.llmlingua_python}: run scripts/install-llmlingua.sh")
    peer = harness.Worker("compress-llmlingua", "benchmarks.models:LlmlinguaPeer",
                          {"folder": str(folder), "contexts": contexts, "rate": COMPRESS_RATE,
                           "rates": list(COMPRESS_RATES), "force": COMPRESS_FORCE},
                          args.threads, python=args.llmlingua_python)
    WORKERS.append(peer)
    spec = spec_from_folder("compressor", folder)
    prepared = CompressTokenizer(spec.path, spec.max_length, spec.config.get("vocab_size")).prepare(
        contexts, COMPRESS_FORCE, 10**6)
    windows = [len(item.ids) for item in prepared.items]
    workload = Workload("compress", len(contexts), "contexts", sum(windows),
                        f"{len(contexts)} contexts of {COMPRESS_PASSAGES} consecutive corpus passages joined by "
                        f"line breaks, {statistics.mean(prepared.original_tokens):.0f} cl100k_base tokens each on "
                        f"average; {len(windows)} windows of at most {spec.max_length} model tokens (mean "
                        f"{statistics.mean(windows):.0f}); rate {COMPRESS_RATE}, force_tokens {COMPRESS_FORCE!r}")
    engine = engine_for("compressor", folder, "float32", loop)
    rows = []
    try:
        for rate in COMPRESS_RATES:
            ours = loop.run_until_complete(engine.compress("compressor", contexts, rate=rate,
                                                           force_tokens=COMPRESS_FORCE))
            theirs = peer.info["sweep"][str(rate)]
            same = sum(c.compressed == t for c, t in zip(ours.contexts, theirs["texts"]))
            rows.append([f"{rate}", f"{ours.original_tokens:,}", f"{ours.kept_tokens:,}", f"{theirs['kept']:,}",
                         f"{ours.kept_tokens / ours.original_tokens:.3f}",
                         f"{ours.original_tokens / ours.kept_tokens:.2f}x", f"{same}/{len(contexts)}"])
    finally:
        loop.run_until_complete(engine.stop())
    workload.notes += ["", f"Compression reached at each rate (untimed, float32, force_tokens {COMPRESS_FORCE!r}; "
                           "cl100k_base tokens of all contexts, as llmlingua counts them):", ""]
    workload.notes += harness.table(["rate", "original tokens", "kept (Shoal)", "kept (llmlingua)", "kept share",
                                     "compression", "identical texts"], rows)
    model = (f"keep/drop token classifier = BertForTokenClassification(MiniLM-L6, num_labels=2, seeded new head, "
             f"+100 spare embedding rows), max length {spec.max_length}, in a folder named "
             f"{folder.name!r} for llmlingua's word rules")
    return peer, workload, model


def zero_shot_workload(folder: Path, passages: list[str]) -> tuple[Workload, str]:
    """The real tokens of every (passage, hypothesis) pair, truncating the passage only, as both sides do."""
    from engine import spec_from_folder
    from engine.tokenize import TextTokenizer

    spec = spec_from_folder("nli", folder)
    if spec.task != "zero_shot":
        raise SystemExit(f"the NLI model was read as a {spec.task!r} model, not a zero-shot classifier")
    pairs = [(p, f"This example is {label}.") for p in passages for label in ZERO_SHOT_LABELS]
    lengths = [len(t.ids) for t in TextTokenizer(spec.path, spec.max_length).encode(pairs, True, False, True)]
    workload = Workload("zero-shot", len(passages), "passages", sum(lengths),
                        f"the first {len(passages)} corpus passages x labels {ZERO_SHOT_LABELS} = {len(pairs)} "
                        f"(passage, \"This example is <label>.\") pairs, single-label; pair length mean "
                        f"{statistics.mean(lengths):.1f}, max {max(lengths)} tokens (max length {spec.max_length})")
    model = (f"NLI = BertForSequenceClassification(MiniLM-L6, num_labels=3 labelled {list(NLI_LABELS.values())}, "
             f"seeded new head: speed, not accuracy), max length {spec.max_length}")
    return workload, model


def prepare_gliner(args, base: Path, passages: list[str], scratch: Path) -> tuple[harness.Worker, Workload, str]:
    """The gliner worker (it builds and saves the model), and the workload's real tokens:
    Shoal's windows (one per passage: none is longer than the backbone reads), each the label
    prompt and the passage's words with the special tokens, as the package tokenises them."""
    from engine import spec_from_folder
    from engine.gliner import GlinerTokenizer

    if not Path(args.gliner_python).exists():
        raise SystemExit(f"no gliner environment at {args.gliner_python}: run scripts/install-gliner.sh")
    folder = scratch / "gliner"
    peer = harness.Worker("gliner-package", "benchmarks.models:GlinerPeer",
                          {"base": str(base), "folder": str(folder), "texts": passages, "labels": GLINER_LABELS,
                           "batch_size": GLINER_PEER_BATCH, "seed": HEAD_SEED},
                          args.threads, python=args.gliner_python)
    spec = spec_from_folder("gliner", folder)
    items = GlinerTokenizer(spec.path, spec.gliner, spec.max_length).encode(passages, GLINER_LABELS)
    if len(items) != len(passages):
        raise SystemExit("a passage needs more than one window: the package would cut it; use shorter passages")
    lengths = [len(item.ids) for item in items]
    workload = Workload("gliner", len(passages), "passages", sum(lengths),
                        f"the first {len(passages)} corpus passages, labels {GLINER_LABELS}, threshold "
                        f"{peer.info['threshold']:.4f}; length with the label prompt mean {statistics.mean(lengths):.1f}, "
                        f"max {max(lengths)} tokens (max length {spec.max_length})")
    model = (f"GLiNER = gliner {peer.info['gliner']} uni-encoder span model over MiniLM-L6 (markerV0, max_width "
             f"{spec.gliner.max_width}, hidden {spec.gliner.hidden_size}, {spec.gliner.rnn_layers} LSTM layer, "
             f"{spec.gliner.subtoken_pooling}-subtoken pooling; seeded new layers)")
    return peer, workload, model


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=None, help="corpus size (default 2000; 200 with --quick)")
    parser.add_argument("--queries", type=int, default=None, help="rerank queries, 100 passages each (default 20; 4)")
    parser.add_argument("--workloads", default="rerank,colbert,gliner,zero-shot,compress",
                        help="comma-separated: rerank, colbert, gliner, zero-shot, compress")
    parser.add_argument("--gliner-passages", type=int, default=None, help="GLiNER passages (default 1000; 100 quick)")
    parser.add_argument("--zero-shot-passages", type=int, default=None,
                        help="zero-shot passages, 5 labels each (default 500; 50 quick)")
    parser.add_argument("--gliner-python", default=str(ROOT / ".gliner-venv" / "bin" / "python"),
                        help="the gliner package's venv python (scripts/install-gliner.sh)")
    parser.add_argument("--compress-contexts", type=int, default=None,
                        help=f"compression contexts, {COMPRESS_PASSAGES} passages each (default 100; 10 quick)")
    parser.add_argument("--llmlingua-python", default=str(ROOT / ".llmlingua-venv" / "bin" / "python"),
                        help="the llmlingua package's venv python (scripts/install-llmlingua.sh)")
    parser.add_argument("--engine-dtypes", default="float32,bfloat16", help="engine dtypes (default float32,bfloat16)")
    parser.add_argument("--peer-dtypes", default="float32,bfloat16", help="CrossEncoder dtypes (default both)")
    parser.add_argument("--seed", type=int, default=0, help="corpus and passage-sampling seed")
    harness.add_arguments(parser, rounds=3)
    args = parser.parse_args(argv)
    bench = harness.Bench("models", args, argv, packages=(*harness.PACKAGES, "pylate"))
    args.texts = args.texts or (200 if args.quick else 2000)
    args.queries = args.queries or (4 if args.quick else 20)
    args.gliner_passages = args.gliner_passages or (100 if args.quick else 1000)
    args.zero_shot_passages = args.zero_shot_passages or (50 if args.quick else 500)
    args.compress_contexts = args.compress_contexts or (10 if args.quick else 100)
    args.workloads, args.engine_dtypes = args.workloads.split(","), args.engine_dtypes.split(",")
    args.peer_dtypes = args.peer_dtypes.split(",")
    torch.set_num_threads(args.threads)
    import transformers

    transformers.logging.disable_progress_bar()
    corpus = build_corpus(args.texts, seed=args.seed)
    loop = asyncio.new_event_loop()
    scratch = Path(tempfile.mkdtemp(prefix="shoal-models-bench-"))
    engines: list = []
    gliner_peer = None
    try:
        inputs, workloads, folders, colbert_model, gliner_peer, models, parity = prepare(args, corpus, scratch,
                                                                                           loop)
        bench.log("prepared", **{w.name: w.real_tokens for w in workloads.values()}, parity=parity)
        found = runners(args, inputs, folders, colbert_model, gliner_peer, loop, engines)
        records, outputs = measure(bench, found, workloads)
    finally:
        for engine in engines:
            loop.run_until_complete(engine.stop())
        if gliner_peer is not None:
            gliner_peer.close()
        for worker in WORKERS:
            worker.close()
        shutil.rmtree(scratch, ignore_errors=True)
    rows = rows_of(found, records, outputs, workloads)
    found_checks = checks(rows)
    data = {"models": models, "dataset": {"description": corpus.describe(), "seed": corpus.seed, **corpus.stats},
            "workloads": {k: vars(w) for k, w in workloads.items()}, "method": bench.method(),
            "colbert_query_parity": parity, "results": rows, "checks": found_checks, "rounds": records}
    bench.write(data, "Reranking, ColBERT, GLiNER, zero-shot and compression: Shoal and sentence-transformers "
                      "CrossEncoder / PyLate / gliner / transformers pipeline / llmlingua (cpu)",
                report(bench, rows, found_checks, workloads, corpus, models, parity), plot(rows, bench))


if __name__ == "__main__":
    main()
