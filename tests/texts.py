"""Deterministic, varied test texts: 1 to 300+ tokens, unicode, whitespace-only strings."""

from __future__ import annotations

import random

WORDS = ("search vector database embedding model query passage token batch attention layer gpu memory "
         "retrieval ranking sparse dense colbert index neighbour cosine distance river mountain coffee "
         "the a of and to in is for on with as by at from").split()
UNICODE = ["Ünïcödé façade naïve coöperate", "日本語のテキストです。東京は大きい。", "中文文本测试，北京欢迎你",
           "Привет, как дела?", "مرحبا بالعالم", "שלום עולם", "emoji 🚀🔥 and 👩‍💻 sequences",
           "Ελληνικά γράμματα", "한국어 문장입니다", "ℌ𝔢𝔩𝔩𝔬 𝕨𝕠𝕣𝕝𝕕", "tab\tseparated\tvalues", "ﬁnancial ligature"]
WHITESPACE = [" ", "   ", "\n", "\t \n ", "\u00a0", "\u3000 \u2003"]


def varied_texts(n: int = 220, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    texts = ["a", "x", "Hello!", "?", "42", "I"] + WHITESPACE + UNICODE
    while len(texts) < n:
        kind = rng.random()
        if kind < 0.35:
            length = rng.randint(1, 12)
        elif kind < 0.8:
            length = rng.randint(20, 120)
        else:
            length = rng.randint(200, 420)  # past the 256-token limit: exercises truncation
        words = [rng.choice(WORDS) for _ in range(length)]
        if rng.random() < 0.2:
            words.insert(rng.randrange(len(words) + 1), rng.choice(UNICODE))
        text = " ".join(words)
        if rng.random() < 0.3:
            text = text.capitalize() + rng.choice([".", "?", "!", " 123.", ";"])
        texts.append(text)
    return texts[:n]
