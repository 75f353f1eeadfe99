"""Qwen3 as the embedder and reranker it is published as, through the engine: a
Qwen3-Embedding-style sentence-transformers folder (last-token pooling, Normalize) against
sentence-transformers, and Qwen3-Reranker's yes/no scoring against transformers."""

from __future__ import annotations

import numpy as np
import torch

from engine import spec_from_folder
from tests.engine.heads_helpers import with_engine
from tests.texts import varied_texts
from tests.tiny import write_sentence_transformers_config
from tests.tiny_rotary import tiny_qwen3

TEXTS = varied_texts(24, seed=29)
# Qwen3-Reranker's prompt as its model card writes it (the reference; not imported from Shoal)
PREFIX = ("<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the "
          "Instruct provided. Note that the answer can only be \"yes\" or \"no\".<|im_end|>\n<|im_start|>user\n")
SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"


async def test_qwen3_embedding_pipeline_matches_sentence_transformers(tmp_path):
    from sentence_transformers import SentenceTransformer

    folder = tiny_qwen3(tmp_path / "embed", seed=3)
    write_sentence_transformers_config(folder, pooling="lasttoken", normalize=True, max_seq_length=128)
    spec = spec_from_folder("qwen3-embed", folder)
    assert (spec.task, spec.pooling) == ("embed", "lasttoken")
    expected = SentenceTransformer(str(folder), device="cpu").encode(TEXTS, normalize_embeddings=True)
    result = await with_engine(folder, lambda engine, name: engine.encode(name, TEXTS), max_batch_tokens=512)
    assert (result.embeddings * expected).sum(1).min() >= 0.9999


async def test_qwen3_reranker_scores_match_transformers(tmp_path):
    from transformers import AutoTokenizer, Qwen3ForCausalLM

    folder = tiny_qwen3(tmp_path / "rerank", task="causal_lm", seed=4)
    spec = spec_from_folder("qwen3-rerank", folder)
    assert spec.task == "causal_rerank" and spec.capabilities == ("score",)
    query, documents = "which river runs through paris", TEXTS[6:20]

    model = Qwen3ForCausalLM.from_pretrained(str(folder)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    yes, no = tokenizer.convert_tokens_to_ids("yes"), tokenizer.convert_tokens_to_ids("no")
    prefix = tokenizer.encode(PREFIX, add_special_tokens=False)
    suffix = tokenizer.encode(SUFFIX, add_special_tokens=False)
    expected = []
    with torch.no_grad():
        for document in documents:
            body = tokenizer.encode(f"<Instruct>: {INSTRUCTION}\n<Query>: {query}\n<Document>: {document}",
                                    add_special_tokens=False)
            ids = prefix + body[:spec.max_length - len(prefix) - len(suffix)] + suffix
            logits = model(input_ids=torch.tensor([ids])).logits[0, -1]
            expected.append(torch.softmax(logits[[no, yes]], -1)[1].item())

    result = await with_engine(folder, lambda engine, name: engine.score(name, query, documents))
    np.testing.assert_allclose(result.scores, expected, atol=1e-5)
