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

The registry is keyed by family: `BertModel`, `BertForSequenceClassification` and
`BertForMaskedLM` all share `BertEncoder`; the task comes from the ModelSpec."""

from __future__ import annotations

from .bert import BertEncoder

TASK_SUFFIXES = ("ForSequenceClassification", "ForTokenClassification", "ForMaskedLM", "ForCausalLM", "Model")

FAMILIES = {
    "Bert": BertEncoder,
}

BY_MODEL_TYPE = {
    "bert": BertEncoder,
}


def family_of(architecture: str) -> str:
    for suffix in TASK_SUFFIXES:
        if architecture.endswith(suffix):
            return architecture[: -len(suffix)]
    return architecture


def find_architecture(model_type: str, architectures: tuple[str, ...]):
    """The native implementation for a model, or None (the generic fallback serves it)."""
    for name in architectures:
        if family_of(name) in FAMILIES:
            return FAMILIES[family_of(name)]
    return BY_MODEL_TYPE.get(model_type)
