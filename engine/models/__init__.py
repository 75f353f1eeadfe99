"""Architecture registry: HF `model_type` / `architectures` -> a packed forward pass.

Each implementation is an nn.Module with `forward(batch, attention) -> [T, hidden]`, a
`position_offset` class attribute and a static `map_weights(checkpoint, config)`."""

from __future__ import annotations

from .bert import BertEncoder

BY_MODEL_TYPE = {
    "bert": BertEncoder,
}

BY_ARCHITECTURE = {
    "BertModel": BertEncoder,
}


def find_architecture(model_type: str, architectures: tuple[str, ...]):
    """The native implementation for a model, or None (the generic fallback serves it)."""
    for name in architectures:
        if name in BY_ARCHITECTURE:
            return BY_ARCHITECTURE[name]
    return BY_MODEL_TYPE.get(model_type)
