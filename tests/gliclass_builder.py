"""Builds tiny random GLiClass models with the gliclass package and asks its pipeline for scores.

The package installs beside Shoal's own torch and transformers (pyproject's dev extra), so
this runs in the test process itself. A model is made the way the package's train.py makes
one: the backbone from a local transformers config (no hub), the MiniLM tokenizer with the
pipeline's `<<LABEL>>` and `<<SEP>>` added as special tokens (class_token_index is the first
of them), the embeddings resized to the new vocabulary, then perturbed so that no weight is
trivially zero or one, saved with save_pretrained (config.json of model_type "GLiClass",
model.safetensors, the tokenizer) and loaded back with from_pretrained for the reference."""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from tests.tiny import copy_tokenizer

BERT = {"model_type": "bert", "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
        "intermediate_size": 64, "max_position_embeddings": 512}
# GLiClass's usual backbone, in DeBERTa-v3's shape (relative positions only, shared keys, log buckets)
DEBERTA_V3 = {**BERT, "model_type": "deberta-v2", "relative_attention": True, "position_buckets": 256,
              "norm_rel_ebd": "layer_norm", "share_att_key": True, "pos_att_type": ["p2c", "c2p"],
              "position_biased_input": False, "max_relative_positions": -1, "type_vocab_size": 0,
              "layer_norm_eps": 1e-7}


def build(folder: Path, backbone: dict, settings: dict, seed: int = 0) -> Path:
    """A GLiClass model saved by the package into `folder`; `settings` are GLiClassModelConfig keys."""
    from gliclass import GLiClassModel, GLiClassModelConfig
    from transformers import AutoConfig, AutoTokenizer

    warnings.simplefilter("ignore")
    torch.manual_seed(seed)
    with tempfile.TemporaryDirectory() as scratch:
        copy_tokenizer(Path(scratch))
        tokenizer = AutoTokenizer.from_pretrained(scratch)
        first_new = len(tokenizer)
        tokenizer.add_tokens(["<<LABEL>>", "<<SEP>>"], special_tokens=True)
        config = dict(backbone)
        encoder = AutoConfig.for_model(config.pop("model_type"), vocab_size=first_new, **config)
        encoder.save_pretrained(scratch)  # the package reads its encoder_model folder (for adapters)
        gliclass_config = GLiClassModelConfig(encoder_config=encoder, encoder_model=scratch,
                                              class_token_index=first_new, text_token_index=first_new + 1,
                                              dropout=0.0, **settings)
        model = GLiClassModel(gliclass_config)
        model.resize_token_embeddings(len(tokenizer))
    perturbed(model, seed).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def perturbed(model, seed: int):
    """Random init leaves LayerNorms at one, biases at zero and every logit near 0: shift those and
    spread the label vectors, so that a mis-mapped parameter changes the answer and the scores
    differ clearly between labels."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            noise = torch.randn(parameter.shape, generator=generator)
            # the backbone's weights well past their init, so that attention is peaked and the
            # label markers (one token id) differ by their context
            parameter.add_(noise * (0.1 if "LayerNorm" in name or name.endswith("bias") else 0.15))
        model.model.classes_projector.linear_2.weight.mul_(5)
    return model.eval()


def package_pipeline(folder: Path, multi_label: bool, max_length: int = 1024):
    """The package's own ZeroShotClassificationPipeline on the saved model, on the CPU."""
    from gliclass import GLiClassModel, ZeroShotClassificationPipeline
    from transformers import AutoTokenizer

    warnings.simplefilter("ignore")
    model = GLiClassModel.from_pretrained(str(folder)).eval()
    return ZeroShotClassificationPipeline(model, AutoTokenizer.from_pretrained(str(folder)), max_length=max_length,
                                          classification_type="multi-label" if multi_label else "single-label",
                                          device="cpu", progress_bar=False)


def package_scores(folder: Path, texts: list[str], labels: list[str], multi_label: bool,
                   max_length: int = 1024) -> tuple[np.ndarray, list[list[str]]]:
    """[texts, labels] scores from the package's pipeline (return_hierarchical gives every label's
    score) and its own predictions: the best label (single-label) or those at or above 0.5."""
    pipeline = package_pipeline(folder, multi_label, max_length)
    with torch.no_grad():
        scores = pipeline(texts, labels, return_hierarchical=True)
        predictions = pipeline(texts, labels)
    return (np.array([[row[label] for label in labels] for row in scores]),
            [[p["label"] for p in found] for found in predictions])
