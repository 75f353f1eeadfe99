"""Reading checkpoints: safetensors files into one name -> tensor dict, with the renames
every architecture needs (old LayerNorm gamma/beta names)."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file


def read_checkpoint(files: tuple[Path, ...] | list[Path]) -> dict[str, torch.Tensor]:
    if not files:
        raise FileNotFoundError("no *.safetensors weights in the model folder")
    tensors: dict[str, torch.Tensor] = {}
    for path in files:
        for name, tensor in load_file(str(path)).items():
            tensors[_modern_name(name)] = tensor
    return tensors


def _modern_name(name: str) -> str:
    # TF-era checkpoints name LayerNorm parameters gamma/beta
    if name.endswith(".gamma"):
        return name[: -len("gamma")] + "weight"
    if name.endswith(".beta"):
        return name[: -len("beta")] + "bias"
    return name


def strip_prefix(tensors: dict[str, torch.Tensor], prefixes: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """Drop a base-model prefix (`bert.`, `model.`) where the checkpoint has one."""
    result = {}
    for name, tensor in tensors.items():
        for prefix in prefixes:
            if name.startswith(prefix):
                name = name[len(prefix):]
                break
        result[name] = tensor
    return result


def pick_renamed(weights: dict[str, torch.Tensor], names: dict[str, str]) -> dict[str, torch.Tensor]:
    """Pick `old.weight` / `old.bias` out of `weights` as `new.weight` / `new.bias`."""
    result = {}
    for old, new in names.items():
        for kind in ("weight", "bias"):
            if f"{old}.{kind}" in weights:
                result[f"{new}.{kind}"] = weights[f"{old}.{kind}"]
    return result
