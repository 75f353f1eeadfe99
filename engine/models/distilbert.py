"""DistilBERT encoder over packed, unpadded sequences.

A BERT layer stack (post-LayerNorm, fused QKV built at load time) with no token types and
no pooler. Positions are absolute from 0: learned, or fixed sinusoids when the config sets
`sinusoidal_pos_embds` (the table is still read from the checkpoint when it is there)."""

from __future__ import annotations

import torch
from torch import nn

from ..attention import AttentionFn
from ..batch import PackedBatch
from ..heads import HeadWeights
from ..weights import pick_renamed, strip_prefix
from .bert import BertLayer, layer_weights

EPS = 1e-12  # DistilBERT hard-codes its LayerNorm epsilon
DISTILBERT_LAYER_NAMES = {
    "q": "attention.q_lin", "k": "attention.k_lin", "v": "attention.v_lin",
    "attn_out": "attention.out_lin", "attn_norm": "sa_layer_norm",
    "up": "ffn.lin1", "down": "ffn.lin2", "mlp_norm": "output_layer_norm",
}


def sinusoidal_positions(positions: int, dim: int) -> torch.Tensor:
    """DistilBERT's fixed table: sin on even features, cos on odd, 10000^(2*(j//2)/dim)."""
    pos = torch.arange(positions, dtype=torch.float64).unsqueeze(1)
    j = torch.arange(dim, dtype=torch.float64)
    angles = pos / torch.pow(10000.0, 2 * torch.div(j, 2, rounding_mode="floor") / dim)
    table = torch.empty(positions, dim, dtype=torch.float64)
    table[:, 0::2] = torch.sin(angles[:, 0::2])
    table[:, 1::2] = torch.cos(angles[:, 1::2])
    return table.float()


class DistilBertEncoder(nn.Module):
    """Returns the last hidden state, [total_tokens, dim]."""

    position_offset = 0  # position ids start at 0

    def __init__(self, config: dict):
        super().__init__()
        dim = config["dim"]
        self.word_embeddings = nn.Embedding(config["vocab_size"], dim)
        self.position_embeddings = nn.Embedding(config["max_position_embeddings"], dim)
        self.embed_norm = nn.LayerNorm(dim, eps=EPS)
        self.layers = nn.ModuleList(
            BertLayer(dim, config["n_heads"], config["hidden_dim"], EPS, config.get("activation", "gelu"))
            for _ in range(config["n_layers"])
        )

    def forward(self, batch: PackedBatch, attention: AttentionFn) -> torch.Tensor:
        x = self.embed_norm(self.word_embeddings(batch.input_ids) + self.position_embeddings(batch.position_ids))
        for layer in self.layers:
            x = layer(x, batch, attention)
        return x

    @staticmethod
    def map_weights(checkpoint: dict[str, torch.Tensor], config: dict) -> dict[str, torch.Tensor]:
        """HF DistilBertModel names -> this module's names, with Q, K and V fused."""
        w = strip_prefix(checkpoint, ("distilbert.",))
        positions = w.get("embeddings.position_embeddings.weight")
        if positions is None and config.get("sinusoidal_pos_embds"):
            positions = sinusoidal_positions(config["max_position_embeddings"], config["dim"])
        if positions is None:
            raise KeyError("embeddings.position_embeddings.weight")
        mapped = {
            "word_embeddings.weight": w["embeddings.word_embeddings.weight"],
            "position_embeddings.weight": positions,
            "embed_norm.weight": w["embeddings.LayerNorm.weight"],
            "embed_norm.bias": w["embeddings.LayerNorm.bias"],
        }
        for i in range(config["n_layers"]):
            mapped.update(layer_weights(w, f"transformer.layer.{i}.", f"layers.{i}.", DISTILBERT_LAYER_NAMES))
        return mapped

    @staticmethod
    def head_weights(checkpoint: dict[str, torch.Tensor], config: dict, task: str) -> HeadWeights:
        """The task head as `dense.*` / `norm.*` / `out.*`. Sequence classification reads
        the [CLS] token through pre_classifier + ReLU; the MLM projector is tied to the
        word embeddings when the checkpoint leaves it out."""
        w = strip_prefix(checkpoint, ("distilbert.",))
        if task == "sequence_classification":
            return HeadWeights(pick_renamed(w, {"pre_classifier": "dense", "classifier": "out"}), "relu", "cls", EPS)
        if task == "token_classification":
            return HeadWeights(pick_renamed(w, {"classifier": "out"}), "identity", "cls", EPS)
        if task == "masked_lm":
            head = pick_renamed(w, {"vocab_transform": "dense", "vocab_layer_norm": "norm"})
            head["out.weight"] = w.get("vocab_projector.weight", w["embeddings.word_embeddings.weight"])
            head["out.bias"] = w["vocab_projector.bias"]
            return HeadWeights(head, config.get("activation", "gelu"), "cls", EPS)
        raise KeyError(f"DistilBERT has no {task} head")
