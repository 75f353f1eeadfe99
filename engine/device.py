"""Choosing the device and the serving dtype."""

from __future__ import annotations

import logging

import torch

log = logging.getLogger("shoal.engine")

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for, but torch sees no CUDA device")
    return device


def cpu_supports_bfloat16() -> bool:
    """AVX512-BF16 or AMX: oneDNN then runs bfloat16 matmuls natively."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    if name not in DTYPES:
        raise ValueError(f"--dtype must be one of auto, {', '.join(DTYPES)}; got {name!r}")
    dtype = DTYPES[name]
    if device.type == "cpu" and dtype == torch.bfloat16 and not cpu_supports_bfloat16():
        log.warning("this CPU has no native bfloat16 (AVX512-BF16 or AMX): bfloat16 will be slow")
    return dtype
