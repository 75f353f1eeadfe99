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


def split_checkpoint(checkpoint: dict[str, torch.Tensor], backbone_prefix: str,
                     head_names: dict[str, str]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """A package's checkpoint as (backbone weights under the backbone's own names, head weights
    renamed by `head_names`, checkpoint prefix -> head prefix); other weights are dropped
    (GLiNER's and GLiClass's checkpoints: their modules name their own BACKBONE_PREFIX and
    HEAD_NAMES)."""
    backbone, head = {}, {}
    for name, tensor in checkpoint.items():
        if name.startswith(backbone_prefix):
            backbone[name.removeprefix(backbone_prefix)] = tensor
            continue
        for prefix, renamed in head_names.items():
            if name.startswith(prefix):
                head[renamed + name.removeprefix(prefix)] = tensor
    return backbone, head
