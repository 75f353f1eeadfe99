"""ModelSpec: everything the engine needs to know about a model, read from its folder
before any weight is loaded.

The folder is a Hugging Face model folder (config.json, *.safetensors, tokenizer.json)
optionally saved by sentence-transformers (modules.json, pooling config, prompts). A
catalog entry may override any derived field."""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .errors import ModelNotFound

POOLING_MODES = ("mean", "cls", "max", "lasttoken")
INPUT_TYPES = ("query", "document")

# Bytes per element for the safetensors dtypes we may meet.
_FLOAT_DTYPES = ("F64", "F32", "F16", "BF16")
_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}


@dataclass(frozen=True)
class ModelSpec:
    name: str
    path: Path
    source: str | None = None  # hub id or other origin, accepted as an alias in bodies
    model_type: str = ""
    architectures: tuple[str, ...] = ()
    config: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    max_length: int = 512
    pooling: str = "mean"
    normalize: bool = False
    dimension: int = 0
    prompts: dict[str, str] = field(default_factory=dict)  # input_type -> prefix
    weight_files: tuple[Path, ...] = ()
    parameter_count: int = 0  # elements, from safetensors headers
    checkpoint_bytes: int = 0
    pin: bool = False

    def weight_bytes(self, element_size: int) -> int:
        """Bytes the weights take once loaded in a dtype of `element_size` bytes."""
        return self.parameter_count * element_size

    def with_overrides(self, overrides: dict[str, Any]) -> "ModelSpec":
        known = {f.name for f in fields(self)}
        unknown = set(overrides) - known - {"query_prompt", "document_prompt"}
        if unknown:
            raise ValueError(f"model {self.name!r}: unknown catalog keys {sorted(unknown)}")
        changes = {k: v for k, v in overrides.items() if k in known and k not in ("path", "name")}
        prompts = dict(changes.pop("prompts", self.prompts))
        for input_type in INPUT_TYPES:
            if f"{input_type}_prompt" in overrides:
                prompts[input_type] = overrides[f"{input_type}_prompt"]
        spec = replace(self, **changes, prompts=prompts)
        spec.validate()
        return spec

    def validate(self) -> None:
        if self.pooling not in POOLING_MODES:
            raise ValueError(f"model {self.name!r}: pooling must be one of {POOLING_MODES}, got {self.pooling!r}")
        if self.max_length < 2:
            raise ValueError(f"model {self.name!r}: max_length must be at least 2")


def read_json(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def safetensors_header(path: Path) -> dict[str, Any]:
    """The JSON header of a safetensors file: tensor names, dtypes and shapes."""
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        return json.loads(f.read(length))


def _count_parameters(files: list[Path]) -> tuple[int, int]:
    elements = nbytes = 0
    for path in files:
        for name, info in safetensors_header(path).items():
            if name == "__metadata__" or info["dtype"] not in _FLOAT_DTYPES:
                continue  # integer buffers (e.g. BERT's position_ids) are not served weights
            n = 1
            for dim in info["shape"]:
                n *= dim
            elements += n
            nbytes += n * _DTYPE_BYTES.get(info["dtype"], 4)
    return elements, nbytes


def _sentence_transformers_modules(folder: Path) -> dict[str, Path]:
    """Class name -> module folder, from modules.json. Matches on the class name because
    the module path changed across sentence-transformers versions."""
    modules_file = folder / "modules.json"
    if not modules_file.exists():
        return {}
    return {m["type"].rsplit(".", 1)[-1]: folder / m.get("path", "") for m in read_json(modules_file)}


def _pooling_mode(pooling_config: dict[str, Any]) -> str:
    if "pooling_mode" in pooling_config:  # newer sentence-transformers save a single string
        return {"mean": "mean", "cls": "cls", "max": "max", "lasttoken": "lasttoken"}.get(pooling_config["pooling_mode"], "mean")
    for key, mode in (("pooling_mode_cls_token", "cls"), ("pooling_mode_lasttoken", "lasttoken"),
                      ("pooling_mode_max_tokens", "max"), ("pooling_mode_mean_tokens", "mean")):
        if pooling_config.get(key):
            return mode
    return "mean"


def _max_length(folder: Path, config: dict[str, Any]) -> int:
    """sentence-transformers' rule: max_seq_length from sentence_bert_config.json, else the
    tokenizer's model_max_length, always capped by the position embeddings."""
    limit = None
    st_config = folder / "sentence_bert_config.json"
    if st_config.exists():
        limit = read_json(st_config).get("max_seq_length")
    if limit is None and (folder / "tokenizer_config.json").exists():
        value = read_json(folder / "tokenizer_config.json").get("model_max_length")
        if isinstance(value, int) and value < 10**9:  # HF uses a huge sentinel for "unset"
            limit = value
    positions = config.get("max_position_embeddings")
    if positions and config.get("model_type") in ("roberta", "xlm-roberta", "camembert"):
        positions -= config.get("pad_token_id", 1) + 1  # position ids start after padding_idx
    candidates = [v for v in (limit, positions) if v]
    return min(candidates) if candidates else 512


def _prompts(folder: Path) -> dict[str, str]:
    path = folder / "config_sentence_transformers.json"
    if not path.exists():
        return {}
    prompts = read_json(path).get("prompts") or {}
    result = {}
    if prompts.get("query"):
        result["query"] = prompts["query"]
    document = prompts.get("document") or prompts.get("passage") or prompts.get("corpus")
    if document:
        result["document"] = document
    return result


def spec_from_folder(name: str, folder: str | os.PathLike, source: str | None = None) -> ModelSpec:
    folder = Path(folder)
    if not (folder / "config.json").exists():
        raise ModelNotFound(f"model {name!r}: no config.json in {folder}")
    config = read_json(folder / "config.json")
    weight_files = sorted(folder.glob("*.safetensors"))
    elements, nbytes = _count_parameters(weight_files)
    modules = _sentence_transformers_modules(folder)
    pooling = "cls"  # plain HF encoders without a sentence-transformers config: CLS, like TEI
    if "Pooling" in modules and (modules["Pooling"] / "config.json").exists():
        pooling = _pooling_mode(read_json(modules["Pooling"] / "config.json"))
    spec = ModelSpec(
        name=name,
        path=folder,
        source=source,
        model_type=config.get("model_type", ""),
        architectures=tuple(config.get("architectures") or ()),
        config=config,
        max_length=_max_length(folder, config),
        pooling=pooling,
        normalize="Normalize" in modules,
        dimension=config.get("hidden_size", 0),
        prompts=_prompts(folder),
        weight_files=tuple(weight_files),
        parameter_count=elements,
        checkpoint_bytes=nbytes,
    )
    spec.validate()
    return spec


def hub_cache_dirs() -> list[Path]:
    dirs = []
    if os.environ.get("HF_HUB_CACHE"):
        dirs.append(Path(os.environ["HF_HUB_CACHE"]))
    if os.environ.get("HF_HOME"):
        dirs.append(Path(os.environ["HF_HOME"]) / "hub")
    dirs.append(Path.home() / ".cache" / "huggingface" / "hub")
    return dirs


def resolve_model_path(path_or_id: str) -> tuple[Path, str | None]:
    """A local folder, or a hub id found in the local Hugging Face cache (never the network).
    Returns the folder and the source id (None for plain folders)."""
    candidate = Path(path_or_id).expanduser()
    if candidate.is_dir():
        return candidate.resolve(), None
    if path_or_id.count("/") == 1 and not path_or_id.startswith((".", "/")):
        repo_folder = "models--" + path_or_id.replace("/", "--")
        for cache in hub_cache_dirs():
            snapshots = cache / repo_folder / "snapshots"
            ref = cache / repo_folder / "refs" / "main"
            if ref.exists() and (snapshots / ref.read_text().strip()).is_dir():
                return snapshots / ref.read_text().strip(), path_or_id
            if snapshots.is_dir():
                found = sorted(snapshots.iterdir(), key=lambda p: p.stat().st_mtime)
                if found:
                    return found[-1], path_or_id
    raise ModelNotFound(
        f"{path_or_id!r} is neither a folder nor a model in the local Hugging Face cache "
        f"({', '.join(str(d) for d in hub_cache_dirs())}); Shoal never downloads at run time"
    )
