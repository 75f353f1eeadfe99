"""ModelSpec: everything the engine needs to know about a model, read from its folder
before any weight is loaded.

The folder is a Hugging Face model folder (config.json, *.safetensors, tokenizer.json)
optionally saved by sentence-transformers (modules.json, pooling config, prompts), or a
GLiNER folder saved by the gliner package (gliner_config.json, which holds the backbone's
config), or a GLiClass folder saved by the gliclass package (a config.json of model_type
"GLiClass" holding the backbone's config). A catalog entry may override any derived field."""

from __future__ import annotations

import json
import os
import string
import struct
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from . import gliclass as gliclass_config
from .errors import ModelNotFound, about_model
from .gliner import CONFIG_FILE as GLINER_CONFIG
from .gliner import GlinerSettings, read_settings
from .models import native_family
from .tasks import TASKS

POOLING_MODES = ("mean", "cls", "max", "lasttoken")
INPUT_TYPES = ("query", "document")

# The safetensors dtypes of served weights (integer buffers are not weights).
_FLOAT_DTYPES = ("F64", "F32", "F16", "BF16")


# What a catalog entry may set besides `path` / `source`.
_OVERRIDABLE = {"max_length", "pooling", "normalize", "prompts", "pin", "task", "instruction"}
CATALOG_KEYS = _OVERRIDABLE | {"query_prompt", "document_prompt"}


@dataclass(frozen=True)
class DenseLayer:
    """A sentence-transformers / PyLate Dense module: linear projection + activation."""

    folder: Path
    in_features: int
    out_features: int
    bias: bool
    activation: str  # a key of engine.heads.ACTIVATIONS


@dataclass(frozen=True)
class ColbertSettings:
    """PyLate's ColBERT settings (config_sentence_transformers.json)."""

    query_prefix: str = "[Q] "
    document_prefix: str = "[D] "
    query_length: int = 32
    document_length: int = 180
    do_query_expansion: bool = True
    attend_to_expansion_tokens: bool = False
    skiplist_words: tuple[str, ...] = tuple(string.punctuation)


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
    pin: bool = False
    task: str = "embed"  # a key of engine.tasks.TASKS
    labels: tuple[str, ...] = ()  # id2label, in id order (classify, extract)
    multi_label: bool = False  # sigmoid per label instead of softmax
    dense_layers: tuple[DenseLayer, ...] = ()
    colbert: ColbertSettings | None = None
    instruction: str = ""  # causal rerankers: the task instruction in the prompt
    gliner: GlinerSettings | None = None  # GLiNER span models
    gliclass: gliclass_config.GliclassSettings | None = None  # GLiClass uni-encoder classifiers
    problem: str | None = None  # why the folder could not be read; loading it fails with this
    # the folder's files (name, size, mtime) when this spec was read: a load notices a replaced folder
    fingerprint: tuple = field(default=(), compare=False, repr=False)

    @property
    def capabilities(self) -> tuple[str, ...]:
        return TASKS[self.task].capabilities

    def with_overrides(self, overrides: dict[str, Any]) -> ModelSpec:
        unknown = set(overrides) - CATALOG_KEYS
        if unknown:
            raise ValueError(f"model {self.name!r}: unknown catalog keys {sorted(unknown)}; "
                             f"known: {sorted(CATALOG_KEYS)}")
        changes = {k: v for k, v in overrides.items() if k in _OVERRIDABLE}
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
        if self.task not in TASKS:
            raise ValueError(f"model {self.name!r}: task must be one of {tuple(TASKS)}, got {self.task!r}")


def folder_fingerprint(folder: Path) -> tuple:
    """(relative name, size, mtime) of every file in a model folder and its module folders
    (sentence-transformers' 1_Pooling, 2_Dense, ...), following links (hub snapshots)."""
    entries = []
    for directory in [folder] + ([p for p in folder.iterdir() if p.is_dir()] if folder.is_dir() else []):
        for path in directory.iterdir():
            if path.is_file():
                stat = path.stat()
                entries.append((str(path.relative_to(folder)), stat.st_size, stat.st_mtime_ns))
    return tuple(sorted(entries))


def read_json(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def safetensors_header(path: Path) -> dict[str, Any]:
    """The JSON header of a safetensors file: tensor names, dtypes and shapes."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        prefix = f.read(8)
        (length,) = struct.unpack("<Q", prefix) if len(prefix) == 8 else (size,)
        if length > size - 8:
            raise ValueError(f"{path} is not a safetensors file (corrupt header)")
        try:
            return json.loads(f.read(length))
        except ValueError as error:
            raise ValueError(f"{path} is not a safetensors file (corrupt header: {error})") from None


def _count_parameters(files: list[Path]) -> int:
    elements = 0
    for path in files:
        for name, info in safetensors_header(path).items():
            if name == "__metadata__" or info["dtype"] not in _FLOAT_DTYPES:
                continue  # integer buffers (e.g. BERT's position_ids) are not served weights
            n = 1
            for dim in info["shape"]:
                n *= dim
            elements += n
    return elements


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
    if positions and config.get("model_type") in ("roberta", "xlm-roberta", "camembert", "mpnet"):
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


_TORCH_ACTIVATIONS = {"Identity": "identity", "Tanh": "tanh", "ReLU": "relu", "GELU": "gelu", "SiLU": "silu"}


def _dense_layers(folder: Path) -> tuple[DenseLayer, ...]:
    layers = []
    modules_file = folder / "modules.json"
    entries = read_json(modules_file) if modules_file.exists() else []
    for entry in entries:
        if entry["type"].rsplit(".", 1)[-1] != "Dense":
            continue
        module_folder = folder / entry.get("path", "")
        config = read_json(module_folder / "config.json")
        # sentence-transformers 6 omits the default activation (Tanh) from the saved config
        activation = config.get("activation_function", "torch.nn.modules.activation.Tanh").rsplit(".", 1)[-1]
        if activation not in _TORCH_ACTIVATIONS:
            raise ValueError(f"{module_folder}: unsupported Dense activation {activation!r}")
        layers.append(DenseLayer(module_folder, config["in_features"], config["out_features"],
                                 config.get("bias", True), _TORCH_ACTIVATIONS[activation]))
    return tuple(layers)


def _colbert_settings(folder: Path) -> ColbertSettings | None:
    path = folder / "config_sentence_transformers.json"
    config = read_json(path) if path.exists() else {}
    if "query_prefix" not in config and "document_length" not in config:
        return None
    defaults = ColbertSettings()
    skiplist = config.get("skiplist_words")
    return ColbertSettings(
        query_prefix=config.get("query_prefix", defaults.query_prefix),
        document_prefix=config.get("document_prefix", defaults.document_prefix),
        query_length=config.get("query_length") or defaults.query_length,
        document_length=config.get("document_length") or defaults.document_length,
        do_query_expansion=config.get("do_query_expansion", defaults.do_query_expansion),
        attend_to_expansion_tokens=config.get("attend_to_expansion_tokens", defaults.attend_to_expansion_tokens),
        skiplist_words=tuple(skiplist) if skiplist is not None else defaults.skiplist_words,
    )


def _labels(config: dict[str, Any]) -> tuple[str, ...]:
    id2label = config.get("id2label") or {}
    if not id2label:
        return tuple(f"LABEL_{i}" for i in range(config.get("num_labels", 0)))
    return tuple(id2label[key] for key in sorted(id2label, key=int))


def _task(architectures: tuple[str, ...], modules: dict[str, Path], colbert: ColbertSettings | None,
          labels: tuple[str, ...]) -> str:
    architecture = architectures[0] if architectures else ""
    if colbert is not None:
        return "colbert"
    if "SpladePooling" in modules or architecture.endswith("ForMaskedLM"):
        return "sparse"
    if architecture.endswith("ForSequenceClassification"):
        if len(labels) == 1:
            return "score"
        # an NLI model (entailment among its labels) classifies into labels given per request
        return "zero_shot" if any(label.lower().startswith("entail") for label in labels) else "classify"
    if architecture.endswith("ForTokenClassification"):
        return "extract"
    if architecture.endswith("ForCausalLM") and "Pooling" not in modules:
        return "causal_rerank"
    return "embed"


def _gliner(folder: Path, weight_files: list[Path]) -> tuple[dict[str, Any], GlinerSettings | None, str | None]:
    """A GLiNER folder: its backbone's config (saved inside gliner_config.json by the package;
    config.json for older saves), its settings, and why it cannot be served, if it cannot."""
    gliner = read_json(folder / GLINER_CONFIG)
    backbone = gliner.get("encoder_config") or (read_json(folder / "config.json")
                                                if (folder / "config.json").exists() else {})
    if not backbone:
        return {}, None, "gliner_config.json has no encoder_config and there is no config.json for the backbone"
    if not weight_files and (folder / "pytorch_model.bin").exists():
        return backbone, None, ("its weights are in pytorch_model.bin; Shoal reads safetensors: save the model with "
                                "save_pretrained(folder, safe_serialization=True)")
    try:
        return backbone, read_settings(gliner), None
    except ValueError as error:
        return backbone, None, str(error)


def _gliclass(folder: Path, config: dict[str, Any],
              weight_files: list[Path]) -> tuple[dict[str, Any], gliclass_config.GliclassSettings | None, str | None]:
    """A GLiClass folder: its backbone's config (saved inside config.json by the package), its
    settings, and why it cannot be served, if it cannot."""
    backbone = config.get("encoder_config") or {}
    if not backbone:
        return {}, None, "the GLiClass config.json has no encoder_config (the backbone's config)"
    if not weight_files and (folder / "pytorch_model.bin").exists():
        return backbone, None, ("its weights are in pytorch_model.bin; Shoal reads safetensors: save the model with "
                                "save_pretrained(folder, safe_serialization=True)")
    try:
        settings = gliclass_config.read_settings(config)
    except ValueError as error:
        return backbone, None, str(error)
    if native_family(backbone.get("model_type", ""), tuple(backbone.get("architectures") or ())) is None:
        # the padded transformers fallback has no GLiClass head
        return backbone, None, (f"GLiClass on a {backbone.get('model_type')!r} backbone is not supported; it runs "
                                f"on the backbones Shoal implements natively (BERT, DeBERTa-v2/v3, ...)")
    return backbone, settings, None


def spec_from_folder(name: str, folder: str | os.PathLike, source: str | None = None) -> ModelSpec:
    folder = Path(folder)
    is_gliner = (folder / GLINER_CONFIG).exists()
    if not is_gliner and not (folder / "config.json").exists():
        raise ModelNotFound(f"model {name!r}: no config.json in {folder}")
    fingerprint = folder_fingerprint(folder)
    weight_files = sorted(folder.glob("*.safetensors"))
    gliner, gliclass, problem, task = None, None, None, None
    if is_gliner:
        config, gliner, reason = _gliner(folder, weight_files)
        problem, task = about_model(name, reason) if reason else None, "gliner"
    else:
        config = read_json(folder / "config.json")
    multi_label = config.get("problem_type") == "multi_label_classification"
    if not is_gliner and gliclass_config.is_gliclass(config):
        config, gliclass, reason = _gliclass(folder, config, weight_files)
        problem, task = about_model(name, reason) if reason else None, "gliclass"
    try:
        elements = _count_parameters(weight_files)
    except (OSError, ValueError, KeyError) as error:  # served as `failed`, with the reason
        elements, problem = 0, about_model(name, error)
    modules = _sentence_transformers_modules(folder)
    pooling = "cls"  # plain HF encoders without a sentence-transformers config: CLS, like TEI
    if "Pooling" in modules and (modules["Pooling"] / "config.json").exists():
        pooling = _pooling_mode(read_json(modules["Pooling"] / "config.json"))
    architectures = tuple(config.get("architectures") or ())
    dense_layers = _dense_layers(folder)
    colbert = _colbert_settings(folder)
    labels = _labels(config)
    task = task or _task(architectures, modules, colbert, labels)
    dimension = dense_layers[-1].out_features if dense_layers else config.get("hidden_size", 0)
    spec = ModelSpec(
        name=name,
        path=folder,
        source=source,
        model_type=config.get("model_type", ""),
        architectures=architectures,
        config=config,
        max_length=_max_length(folder, config),
        pooling=pooling,
        normalize="Normalize" in modules,
        dimension=dimension,
        prompts=_prompts(folder),
        weight_files=tuple(weight_files),
        parameter_count=elements,
        task=task,
        labels=labels,
        multi_label=multi_label,  # GLiClass: as it was trained (its own config's, not the backbone's)
        dense_layers=dense_layers,
        colbert=colbert,
        gliner=gliner,
        gliclass=gliclass,
        problem=problem,
        fingerprint=fingerprint,
    )
    spec.validate()
    return spec


def unreadable_spec(name: str, path: str | os.PathLike, problem: str, source: str | None = None) -> ModelSpec:
    """A catalog entry whose folder is missing or unreadable: known by name, served as
    `failed` with `problem` as the reason, so the rest of the catalog still serves."""
    return ModelSpec(name=name, path=Path(path), source=source, problem=problem)


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
        f"source {path_or_id!r} is neither a folder nor a model in the local Hugging Face cache "
        f"({', '.join(str(d) for d in hub_cache_dirs())}); Shoal never downloads at run time"
    )
