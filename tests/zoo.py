"""Tiny random task models (BERT-based), saved as real model folders: a cross-encoder, a
classifier, an entity tagger, a SPLADE encoder and a PyLate ColBERT. Shared by the parity,
gateway and protocol tests."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from tests.tiny import save_model, tiny_bert

NER_TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
INTENTS = {0: "billing", 1: "technical", 2: "sales"}


def bert_config(**extra):
    from transformers import BertConfig

    return BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                      intermediate_size=64, max_position_embeddings=128, **extra)


def perturbed(model, seed: int = 1):
    """Random init leaves LayerNorms at identity and biases at zero; move them so a
    mis-mapped parameter shows."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "LayerNorm" in name or name.endswith("bias"):
                parameter.add_(torch.randn_like(parameter) * 0.1)
    return model.eval()


def cross_encoder(folder: Path, seed: int = 0):
    from transformers import BertForSequenceClassification

    torch.manual_seed(seed)
    config = bert_config(num_labels=1, architectures=["BertForSequenceClassification"])
    model = perturbed(BertForSequenceClassification(config))
    return save_model(model, folder), model


def classifier(folder: Path, seed: int = 2):
    from transformers import BertForSequenceClassification

    torch.manual_seed(seed)
    config = bert_config(num_labels=3, id2label=INTENTS, label2id={v: k for k, v in INTENTS.items()},
                         architectures=["BertForSequenceClassification"])
    model = perturbed(BertForSequenceClassification(config))
    return save_model(model, folder), model


def entity_tagger(folder: Path, seed: int = 3):
    from transformers import BertForTokenClassification

    torch.manual_seed(seed)
    config = bert_config(num_labels=len(NER_TAGS), id2label=dict(enumerate(NER_TAGS)),
                         label2id={t: i for i, t in enumerate(NER_TAGS)}, architectures=["BertForTokenClassification"])
    model = perturbed(BertForTokenClassification(config))
    with torch.no_grad():  # make "O" rarer so random weights produce entities to merge
        model.classifier.bias[0] -= 1.0
    return save_model(model, folder), model


def splade(folder: Path, seed: int = 4):
    from transformers import BertForMaskedLM

    torch.manual_seed(seed)
    model = perturbed(BertForMaskedLM(bert_config(architectures=["BertForMaskedLM"])))
    return save_model(model, folder), model


def colbert(folder: Path, seed: int = 12, attend_to_expansion_tokens: bool = False):
    """A PyLate ColBERT over a tiny BERT; returns the folder and PyLate's in-memory model."""
    from pylate import models

    base = tiny_bert(folder.parent / (folder.name + "-base"), seed=seed)
    # sentence-transformers 6 gives a bare HF folder a Pooling module, which PyLate 1.6
    # then mistakes for a projection; declaring the folder a lone Transformer avoids that.
    (base / "modules.json").write_text(json.dumps(
        [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}]))
    # PyLate 1.6 names its folders' model type "ColBERT" but, under sentence-transformers 6,
    # inherits "SentenceTransformer", so it would "convert" its own folders; and it sorts
    # inputs with a helper sentence-transformers 6 removed (only the encoding order uses it).
    models.ColBERT.model_type = "ColBERT"
    models.ColBERT._text_length = staticmethod(lambda text: len(text))
    model = models.ColBERT(model_name_or_path=str(base), embedding_size=16, device="cpu", query_length=24,
                           document_length=40, attend_to_expansion_tokens=attend_to_expansion_tokens)
    torch.manual_seed(seed)
    with torch.no_grad():  # a projection that is not the identity-ish init
        model[1].linear.weight.add_(torch.randn_like(model[1].linear.weight) * 0.3)
    model._model_config = {"model_type": "ColBERT"}  # PyLate 1.6 saves from this sentence-transformers 5 field
    model.save(str(folder))
    return folder, model
