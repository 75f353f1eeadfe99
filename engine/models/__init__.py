"""Architecture registry: HF architecture names -> a packed forward pass.

One file per family. Each implementation is an `nn.Module` with:

- `__init__(config: dict)`: built on the meta device; weights are assigned at load.
- `forward(batch: PackedBatch, attention: AttentionFn) -> Tensor[T, hidden]`: the final
  hidden states of the base model for the packed tokens (no padding anywhere).
- `position_offset: int`: the first position id (RoBERTa family: padding_idx + 1).
- `map_weights(checkpoint, config) -> dict`: checkpoint names -> this module's
  `state_dict()` names, exactly (loaded strictly); fused projections are built here.
- `head_weights(checkpoint, config, task) -> HeadWeights` for the heads the family has:
  "sequence_classification", "token_classification", "masked_lm" (see engine/heads.py).
- `format_pairs(tokenizer, instruction, pairs, truncate)`, for families whose rerankers read
  a (query, document) pair through their own prompt (tasks with `prompted_pairs`).

The registry is keyed by family: `BertModel`, `BertForSequenceClassification` and
`BertForMaskedLM` all share `BertEncoder`; the task comes from the ModelSpec."""

from __future__ import annotations

import importlib

TASK_SUFFIXES = ("ForSequenceClassification", "ForTokenClassification", "ForMaskedLM", "ForCausalLM", "Model")

# family -> "module:Class", imported when a model of that family is first loaded
FAMILIES = {
    "Bert": "bert:BertEncoder",
    "DistilBert": "distilbert:DistilBertEncoder",
    "MPNet": "mpnet:MPNetEncoder",
    "XLMRoberta": "xlm_roberta:XLMRobertaEncoder",
    "Roberta": "xlm_roberta:XLMRobertaEncoder",
    "Camembert": "xlm_roberta:XLMRobertaEncoder",
    "ModernBert": "modernbert:ModernBertEncoder",
    "Qwen3": "qwen3:Qwen3Encoder",
    "DebertaV2": "deberta:DebertaV2Encoder",  # DeBERTa v1 ("deberta") runs through the fallback
}

BY_MODEL_TYPE = {
    "bert": "Bert", "distilbert": "DistilBert", "mpnet": "MPNet", "xlm-roberta": "XLMRoberta",
    "roberta": "Roberta", "camembert": "Camembert", "modernbert": "ModernBert", "qwen3": "Qwen3",
    "deberta-v2": "DebertaV2",
}


def family_of(architecture: str) -> str:
    for suffix in TASK_SUFFIXES:
        if architecture.endswith(suffix):
            return architecture[: -len(suffix)]
    return architecture


def native_family(model_type: str, architectures: tuple[str, ...]) -> str | None:
    for name in architectures:
        if family_of(name) in FAMILIES:
            return family_of(name)
    return BY_MODEL_TYPE.get(model_type)


def find_architecture(model_type: str, architectures: tuple[str, ...]):
    """The native implementation for a model, or None (the generic fallback serves it)."""
    family = native_family(model_type, architectures)
    if family is None:
        return None
    module, _, name = FAMILIES[family].partition(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
