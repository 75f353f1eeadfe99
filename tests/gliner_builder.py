"""Builds tiny random GLiNER models with the gliner package and writes its predictions.

Runs in the gliner package's own environment (.gliner-venv: it pins another transformers),
as `python tests/gliner_builder.py < request.json > predictions.json`. The request:

    {"models": [{"folder", "backbone": {"model_type", ...config}, "tokenizer": folder with the
                 tokenizer files, "gliner": {...GLiNERConfig keys}, "seed",
                 "model_max_length"?: the tokenizer's length, "cases": [{"texts", "labels",
                 "threshold", "flat_ner", "multi_label"}]}]}

A threshold may be "median": halfway between the two middle scores of what the package finds at
threshold 0 (flat) for those texts and labels, so that it keeps about half of a random model's
entities and no score lies on it (where float noise would decide).

Each model's backbone is made from its local transformers config (no hub), wrapped in a
GLiNER, perturbed so that no weight is trivially zero or one, saved with save_pretrained
(safetensors), loaded back with from_pretrained, and asked each case through `inference`.
The answer: {"predictions": [[per case, {"threshold", "entities": per text, the package's
entity dicts}]]}."""

from __future__ import annotations

import json
import shutil
import statistics
import sys
import tempfile
import warnings
from pathlib import Path

import torch
from gliner import GLiNER
from gliner.config import GLiNERConfig
from transformers import AutoConfig

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "spm.model")


def backbone_folder(spec: dict, folder: Path) -> Path:
    config = dict(spec["backbone"])
    AutoConfig.for_model(config.pop("model_type"), **config).save_pretrained(folder)
    for name in TOKENIZER_FILES:
        if (Path(spec["tokenizer"]) / name).exists():
            shutil.copy(Path(spec["tokenizer"]) / name, folder / name)
    if spec.get("model_max_length"):
        path = folder / "tokenizer_config.json"
        settings = json.loads(path.read_text())
        settings["model_max_length"] = spec["model_max_length"]
        path.write_text(json.dumps(settings))
    return folder


def perturbed(model: GLiNER, seed: int) -> GLiNER:
    """Random init leaves LayerNorms at one, biases at zero and every score near 0.5: shift
    those and spread the label vectors, so that a mis-mapped parameter changes the answer and
    scores fall on both sides of a threshold."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.model.named_parameters():
            noise = torch.randn(parameter.shape, generator=generator)
            if "LayerNorm" in name or name.endswith("bias"):
                parameter.add_(noise * 0.1)
            else:
                parameter.add_(noise * 0.02)
        model.model.prompt_rep_layer[3].weight.mul_(20)
    return model


def build(spec: dict) -> list:
    folder = Path(spec["folder"])
    torch.manual_seed(spec.get("seed", 0))
    with tempfile.TemporaryDirectory() as scratch:
        backbone = backbone_folder(spec, Path(scratch))
        config = GLiNERConfig(model_name=str(backbone), dropout=0.0, **spec["gliner"])
        model = GLiNER.from_config(config, backbone_from_pretrained=False, local_files_only=True)
        perturbed(model, spec.get("seed", 0)).save_pretrained(folder, safe_serialization=True)
    model = GLiNER.from_pretrained(str(folder), local_files_only=True)
    answers = []
    for case in spec["cases"]:
        threshold = case["threshold"]
        if threshold == "median":
            found = model.inference(case["texts"], case["labels"], threshold=0.0)
            scores = sorted(entity["score"] for entities in found for entity in entities)
            threshold = statistics.fmean(scores[len(scores) // 2 - 1:len(scores) // 2 + 1])
        answers.append({"threshold": threshold,
                        "entities": model.inference(case["texts"], case["labels"], threshold=threshold,
                                                    flat_ner=case["flat_ner"], multi_label=case["multi_label"])})
    return answers


def main() -> None:
    warnings.simplefilter("ignore")
    request = json.load(sys.stdin)
    json.dump({"predictions": [build(spec) for spec in request["models"]]}, sys.stdout)


if __name__ == "__main__":
    main()
