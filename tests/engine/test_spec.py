"""ModelSpec derivation from folders, catalog overrides, hub-cache resolution, sizes."""

from __future__ import annotations

import json

import pytest

from engine import ModelNotFound, load_catalog, parse_model_argument, spec_from_folder
from engine.sizes import parse_size
from engine.spec import resolve_model_path
from tests.tiny import tiny_bert, write_sentence_transformers_config


def test_minilm_spec_follows_sentence_transformers(minilm_spec, minilm_reference):
    assert minilm_spec.max_length == minilm_reference.max_seq_length == 256
    assert minilm_spec.pooling == "mean"
    assert minilm_spec.normalize is True
    assert minilm_spec.dimension == minilm_reference.get_embedding_dimension()
    assert minilm_spec.parameter_count == sum(p.numel() for p in minilm_reference.parameters())


def test_new_style_module_types_and_prompts(tmp_path):
    folder = tiny_bert(tmp_path / "m", max_positions=64)
    write_sentence_transformers_config(folder, pooling="cls", normalize=True, max_seq_length=100)
    modules = json.loads((folder / "modules.json").read_text())
    for module in modules:  # the newer sentence-transformers spelling of the module path
        module["type"] = module["type"].replace("models.", "sentence_transformers.base.modules.")
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "config_sentence_transformers.json").write_text(json.dumps(
        {"prompts": {"query": "query: ", "passage": "passage: "}, "default_prompt_name": None}))
    spec = spec_from_folder("m", folder)
    assert spec.pooling == "cls" and spec.normalize
    assert spec.max_length == 64  # capped by the position embeddings
    assert spec.prompts == {"query": "query: ", "document": "passage: "}


def test_catalog_overrides_and_errors(tmp_path):
    folder = tiny_bert(tmp_path / "m")
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(f'[models.small]\npath = "{folder}"\nmax_length = 32\npooling = "mean"\npin = true\n'
                       f'query_prompt = "q: "\n')
    (spec,) = load_catalog(catalog)
    assert (spec.name, spec.max_length, spec.pooling, spec.pin, spec.prompts) == ("small", 32, "mean", True, {"query": "q: "})
    catalog.write_text(f'[models.small]\npath = "{folder}"\npooling = "median"\n')
    with pytest.raises(ValueError, match="pooling"):
        load_catalog(catalog)
    catalog.write_text(f'[models.small]\npath = "{folder}"\ncolour = "blue"\n')
    with pytest.raises(ValueError, match="unknown catalog keys"):
        load_catalog(catalog)


def test_hub_ids_resolve_from_the_local_cache_only(tmp_path, monkeypatch):
    snapshot = tmp_path / "hub" / "models--org--tiny" / "snapshots" / "abc123"
    tiny_bert(snapshot)
    (tmp_path / "hub" / "models--org--tiny" / "refs").mkdir()
    (tmp_path / "hub" / "models--org--tiny" / "refs" / "main").write_text("abc123")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    assert resolve_model_path("org/tiny") == (snapshot, "org/tiny")
    with pytest.raises(ModelNotFound, match="never downloads"):
        resolve_model_path("org/absent")


def test_model_arguments_and_sizes():
    assert parse_model_argument("e5=/models/e5") == ("e5", "/models/e5")
    assert parse_model_argument("/models/bge-small/") == ("bge-small", "/models/bge-small/")
    assert parse_size("512MiB") == 512 * 2**20
    assert parse_size("2GB") == 2 * 10**9
    assert parse_size("1.5 GiB") == int(1.5 * 2**30)
    assert parse_size("1024") == 1024
    with pytest.raises(ValueError):
        parse_size("lots")
