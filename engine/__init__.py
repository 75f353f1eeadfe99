"""Shoal's inference engine: packed forward passes, batching and the model pool.

Imports nothing beyond torch, safetensors, tokenizers, numpy and the standard library."""

from .catalog import DEFAULT_MODEL_NAME, default_model_spec, load_catalog, parse_model_argument, spec_from_reference
from .engine import Encoded, Engine, EngineConfig, EngineObserver, ModelStatus
from .errors import (DeadlineExceeded, EngineError, InputTooLong, InvalidInput, ModelLoadError, ModelNotFound,
                     NotReady, Overloaded, TooManyInputs, UnsupportedOutput)
from .spec import ModelSpec, spec_from_folder

__all__ = [
    "DEFAULT_MODEL_NAME", "DeadlineExceeded", "Encoded", "Engine", "EngineConfig", "EngineError", "EngineObserver",
    "InputTooLong", "InvalidInput", "ModelLoadError", "ModelNotFound", "ModelSpec", "ModelStatus", "NotReady",
    "Overloaded", "TooManyInputs", "UnsupportedOutput", "default_model_spec", "load_catalog", "parse_model_argument",
    "spec_from_folder", "spec_from_reference",
]
