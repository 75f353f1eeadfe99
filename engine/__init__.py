"""Shoal's inference engine: packed forward passes, batching and the model pool.

Importing this package never imports torch: the gateway uses `engine.api` (types, the
`EngineAPI` protocol) and the spec and catalog readers; `Engine`, the implementation, is
imported from `engine.engine` on first use. Beyond torch, the engine needs only
safetensors, tokenizers, numpy and the standard library (transformers for the fallback)."""

from .api import (
    Classified,
    Encoded,
    EngineAPI,
    EngineConfig,
    EngineObserver,
    Extracted,
    ModelStatus,
    PoolStats,
    Scored,
    ServerInfo,
)
from .catalog import (DEFAULT_MODEL_NAME, default_model_spec, describe_model, load_catalog, parse_model_argument,
                      spec_from_reference)
from .errors import (
    Conflict,
    DeadlineExceeded,
    EngineError,
    InputTooLarge,
    InputTooLong,
    InvalidInput,
    LoadTimeout,
    ModelLoadError,
    ModelNotFound,
    NoRoom,
    NotReady,
    Overloaded,
    TooManyInputs,
    UnsupportedOutput,
)
from .spec import ModelSpec, spec_from_folder

__all__ = [
    "DEFAULT_MODEL_NAME", "Classified", "Conflict", "DeadlineExceeded", "Encoded", "Engine", "EngineAPI",
    "EngineConfig", "EngineError", "EngineObserver", "Extracted", "InputTooLarge", "InputTooLong", "InvalidInput",
    "LoadTimeout", "ModelLoadError", "ModelNotFound", "ModelSpec", "ModelStatus", "NoRoom", "NotReady", "Overloaded",
    "PoolStats", "Scored", "ServerInfo", "TooManyInputs", "UnsupportedOutput", "default_model_spec", "describe_model",
    "load_catalog",
    "parse_model_argument", "spec_from_folder", "spec_from_reference",
]


def __getattr__(name: str):
    if name == "Engine":  # the implementation imports torch: only when asked for
        from .engine import Engine

        return Engine
    raise AttributeError(f"module 'engine' has no attribute {name!r}")
