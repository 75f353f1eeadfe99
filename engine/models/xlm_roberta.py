"""XLM-RoBERTa / RoBERTa / CamemBERT encoder over packed, unpadded sequences.

The same post-LayerNorm layers and checkpoint names as BERT under a `roberta.` prefix; two
differences: position ids start after the padding index (`pad_token_id + 1`, as fairseq
numbered them), and with a single token type (type_vocab_size 1) every token gets type 0,
whatever type ids the tokenizer produced (HF's RoBERTa tokenizers do not pass them)."""

from __future__ import annotations

import torch

from ..attention import AttentionFn
from ..batch import PackedBatch
from ..heads import HeadWeights
from ..weights import pick_renamed, strip_prefix
from .bert import BertEncoder

PREFIXES = ("roberta.", "xlm-roberta.", "xlm_roberta.", "camembert.")


class XLMRobertaEncoder(BertEncoder):
    """Returns the last hidden state, [total_tokens, hidden]."""

    position_offset = 2  # pad_token_id + 1; set per model from its config

    def __init__(self, config: dict):
        super().__init__(config)
        self.position_offset = config.get("pad_token_id", 1) + 1

    def forward(self, batch: PackedBatch, attention: AttentionFn) -> torch.Tensor:
        x = self.word_embeddings(batch.input_ids) + self.position_embeddings(batch.position_ids)
        if self.token_type_embeddings.num_embeddings == 1:
            x = x + self.token_type_embeddings.weight[0]
        else:
            x = x + self.token_type_embeddings(batch.token_type_ids)
        x = self.embed_norm(x)
        for layer in self.layers:
            x = layer(x, batch, attention)
        return x

    @staticmethod
    def map_weights(checkpoint: dict[str, torch.Tensor], config: dict) -> dict[str, torch.Tensor]:
        """HF XLMRobertaModel names (BERT's, under `roberta.`) -> this module's names."""
        return BertEncoder.map_weights(strip_prefix(checkpoint, PREFIXES), config)

    @staticmethod
    def head_weights(checkpoint: dict[str, torch.Tensor], config: dict, task: str) -> HeadWeights:
        """The task head as `dense.*` / `norm.*` / `out.*`. Sequence classification reads
        the first token (<s>) through classifier.dense + tanh (RoBERTa has no pooler in its
        task models); the MLM decoder is tied to the word embeddings, its bias to lm_head.bias."""
        return roberta_style_head(strip_prefix(checkpoint, PREFIXES), config, task, "XLM-RoBERTa")


def roberta_style_head(w: dict[str, torch.Tensor], config: dict, task: str, family: str) -> HeadWeights:
    """RoBERTa's task heads (MPNet's are the same): sequence classification reads the first
    token through classifier.dense + tanh; the MLM head always uses exact gelu."""
    eps = config.get("layer_norm_eps", 1e-12)
    if task == "sequence_classification":
        return HeadWeights(pick_renamed(w, {"classifier.dense": "dense", "classifier.out_proj": "out"}),
                           "tanh", "cls", eps)
    if task == "token_classification":
        return HeadWeights(pick_renamed(w, {"classifier": "out"}), "identity", "cls", eps)
    if task == "masked_lm":
        return HeadWeights(lm_head(w), "gelu", "cls", eps)
    raise KeyError(f"{family} has no {task} head")


def lm_head(w: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """RoBERTa-style `lm_head.*` (also MPNet's): dense, layer_norm, and the decoder, which
    is what the forward pass applies. transformers 5 leaves tied weights out of the file:
    the decoder weight then is the word embeddings and its bias `lm_head.bias`; an untied
    model saves `lm_head.decoder.*`, whose bias may differ from `lm_head.bias`."""
    head = pick_renamed(w, {"lm_head.dense": "dense", "lm_head.layer_norm": "norm"})
    head["out.weight"] = w.get("lm_head.decoder.weight", w["embeddings.word_embeddings.weight"])
    head["out.bias"] = w.get("lm_head.decoder.bias", w["lm_head.bias"])
    return head
