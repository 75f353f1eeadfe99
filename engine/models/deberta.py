"""DeBERTa-v2 / v3 encoder over packed, unpadded sequences (deberta-v3-small/base/large,
mdeberta-v3, deberta-v2-xlarge; the backbone of GLiNER and of most NLI cross-encoders).

BERT's post-LayerNorm layers (fused QKV built at load time, GELU MLP) with DeBERTa's
disentangled attention: besides content-to-content (q_i . k_j), each score adds
content-to-position (c2p: q_i . Kr[d]) and position-to-content (p2c: k_j . Qr[d]) terms,
where d is the relative position i - j put in a bucket, and Kr / Qr are a learned table of
relative embeddings (`encoder.rel_embeddings`, LayerNormed when `norm_rel_ebd` says so)
projected by each layer: through its own query/key projections (`share_att_key`, v3) or
through separate `pos_key_proj` / `pos_query_proj` (older v2). The three terms are scaled
together by sqrt(head_dim * (1 + number of position terms)).

Buckets (`position_buckets` > 0, v3: 256): offsets up to half the buckets apart are exact,
longer ones log-spaced up to `max_relative_positions` (-1: max_position_embeddings); table
rows past the ends are clamped. Without buckets the raw offset is clamped to
+-max_relative_positions.

Packed batches: the relative positions are within each sequence, so the bias is computed
per run of equal-length sequences (`batch.equal_length_runs`), as MPNet's is. The bias
depends on the content (q and k), so unlike MPNet's it cannot be shared across sequences;
what is shared is the bucket index of each (i, j), computed once per forward for the
longest sequence (every length uses its top-left corner), and the projected table rows,
computed once per layer and forward for only the rows that length can reach. Each run then
takes q . Kr^T as an [n, H, L, rows] matmul and gathers [n, H, L, L] out of it. This file
runs its own attention on every device (the score matrix with its bias is materialised
anyway, so a fused kernel would save little); the `attention` backend passed to `forward`
is unused.

v2's convolution layer (`conv_kernel_size` > 0: a Conv1d over the embeddings, added after
the first layer) runs per equal-length run too, so it never reads across sequences.

DeBERTa v1 (model_type "deberta": its own LayerNorm, fused in_proj with separate q/v biases,
talking heads) is not this file's; it runs through the transformers fallback."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..attention import AttentionFn
from ..batch import PackedBatch
from ..heads import ACTIVATIONS, HeadWeights
from ..weights import pick_renamed, strip_prefix
from .bert import BertLayer, layer_weights

DEBERTA_LAYER_NAMES = {
    "q": "attention.self.query_proj", "k": "attention.self.key_proj", "v": "attention.self.value_proj",
    "attn_out": "attention.output.dense", "attn_norm": "attention.output.LayerNorm",
    "up": "intermediate.dense", "down": "output.dense", "mlp_norm": "output.LayerNorm",
}


@dataclass(frozen=True)
class DebertaOptions:
    """The config fields this file reads, with DebertaV2Config's defaults: save_pretrained
    writes only the fields that differ from them, so a missing key means the default."""

    hidden: int
    heads: int
    embedding_size: int
    eps: float
    relative_attention: bool
    c2p: bool
    p2c: bool
    share_att_key: bool
    span: int  # relative-embedding rows per direction: position_buckets, else max_relative_positions
    buckets: int  # position_buckets (<= 0: no log bucketing)
    max_relative_positions: int
    norm_rel_embeddings: bool
    position_biased_input: bool
    type_vocab_size: int
    conv_kernel_size: int
    conv_groups: int
    conv_act: str

    @classmethod
    def read(cls, config: dict) -> DebertaOptions:
        hidden, heads = config["hidden_size"], config["num_attention_heads"]
        # old configs write pos_att_type as "p2c|c2p"; transformers ignores other entries
        kinds = config.get("pos_att_type") or []
        if isinstance(kinds, str):
            kinds = kinds.lower().split("|")
        kinds = {kind.strip() for kind in kinds}
        norm_rel = {part.strip() for part in str(config.get("norm_rel_ebd", "none")).lower().split("|")}
        max_relative = config.get("max_relative_positions", -1)
        if max_relative < 1:
            max_relative = config.get("max_position_embeddings", 512)
        buckets = config.get("position_buckets", -1)
        options = cls(
            hidden=hidden, heads=heads,
            embedding_size=config.get("embedding_size") or hidden,
            eps=config.get("layer_norm_eps", 1e-7),
            relative_attention=config.get("relative_attention", False),
            c2p="c2p" in kinds, p2c="p2c" in kinds,
            share_att_key=config.get("share_att_key", False),
            span=buckets if buckets > 0 else max_relative,
            buckets=buckets, max_relative_positions=max_relative,
            norm_rel_embeddings="layer_norm" in norm_rel,
            position_biased_input=config.get("position_biased_input", True),
            type_vocab_size=config.get("type_vocab_size", 0),
            conv_kernel_size=config.get("conv_kernel_size", 0),
            conv_groups=config.get("conv_groups", 1),
            conv_act=config.get("conv_act", "tanh"),
        )
        options.check(config)
        return options

    def check(self, config: dict) -> None:
        """Refuse at load what would otherwise fail (or silently differ) at the first batch."""
        head_dim = self.hidden // self.heads
        if self.hidden % self.heads or config.get("attention_head_size", head_dim) != head_dim:
            raise ValueError(f"DeBERTa: attention_head_size x num_attention_heads must equal hidden_size "
                             f"({config.get('attention_head_size')} x {self.heads} != {self.hidden})")
        if self.conv_kernel_size > 0 and self.conv_kernel_size % 2 == 0:
            # padding (k - 1) // 2 shortens the sequence for even k; transformers fails on it too
            raise ValueError(f"DeBERTa: conv_kernel_size must be odd, got {self.conv_kernel_size}")
        if config.get("pooler_hidden_size", self.hidden) != self.hidden:
            raise ValueError("DeBERTa: pooler_hidden_size must equal hidden_size (the classifier reads hidden_size)")
        for key, activation in (("hidden_act", config.get("hidden_act", "gelu")), ("conv_act", self.conv_act),
                                ("pooler_hidden_act", config.get("pooler_hidden_act", "gelu"))):
            if activation not in ACTIVATIONS:
                raise ValueError(f"DeBERTa: unsupported {key} {activation!r}; known: {sorted(ACTIVATIONS)}")


def log_bucket_position(relative: torch.Tensor, bucket_size: int, max_position: int) -> torch.Tensor:
    """DeBERTa's log bucketing of offsets, op for op as transformers' make_log_bucket_position
    so the float rounding, hence the bucket at each boundary, is the same: offsets under
    bucket_size / 2 are kept, longer ones log-spaced so max_position - 1 lands on
    bucket_size - 1."""
    sign = torch.sign(relative)
    mid = bucket_size // 2
    abs_pos = torch.where((relative < mid) & (relative > -mid), torch.tensor(mid - 1).type_as(relative),
                          torch.abs(relative))
    log_pos = torch.ceil(torch.log(abs_pos / mid) / torch.log(torch.tensor((max_position - 1) / mid)) * (mid - 1)) + mid
    return torch.where(abs_pos <= mid, relative.type_as(log_pos), log_pos * sign)


def relative_positions(length: int, buckets: int, max_position: int, device) -> torch.Tensor:
    """[L, L] int64: the (bucketed) offset query - key of every pair in a sequence of length L."""
    positions = torch.arange(length, device=device)
    relative = positions[:, None] - positions[None, :]
    if buckets > 0 and max_position > 0:
        relative = log_bucket_position(relative, buckets, max_position)
    return relative.to(torch.long)


@dataclass
class PositionIndex:
    """Where each (query i, key j) pair reads the projected relative table, for the longest
    sequence of a batch; shorter ones use the top-left [L, L] corner. `first` is the first
    table row any pair reads: only rows first..first + rows - 1 are projected, and the
    indices are relative to `first`."""

    c2p: torch.Tensor  # [L, L]: row of Kr for q_i . Kr
    # [L, L]: row of Qr for k_a . Qr, indexed (key a, query b) as transformers gathers it; it
    # is c2p transposed (the buckets are odd in the offset), kept in the reference's form
    p2c: torch.Tensor
    first: int
    rows: int


def disentangled_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, batch: PackedBatch,
                           pos_query: torch.Tensor | None, pos_key: torch.Tensor | None,
                           index: PositionIndex | None, attended: torch.Tensor | None) -> torch.Tensor:
    """[T, H, D] attention per run of equal-length sequences. q arrives already divided by
    the scale, pos_query too (so every term is scaled once); pos_key / pos_query are the
    layer's projected table rows as [H, D, rows], or None for a term the model lacks.
    `attended` ([T] bool, ColBERT query expansion) masks pairs as transformers' 2-D attention
    mask does: a pair counts only if both tokens are attended, so an unattended token's row
    is uniform over its sequence."""
    out = torch.empty_like(q)
    heads = q.shape[1]
    for start, count, length in batch.equal_length_runs:
        end = start + count * length
        # [n*L, H, D] -> [n, H, L, D]: a view of the packed tensor
        qs, ks, vs = (t[start:end].unflatten(0, (count, length)).transpose(1, 2) for t in (q, k, v))
        scores = torch.matmul(qs, ks.transpose(-1, -2))
        shape = (count, heads, length, length)
        if pos_key is not None:  # content-to-position: q_i against key j's offset from i
            c2p = torch.matmul(qs, pos_key)  # [n, H, L, rows]
            scores += c2p.gather(-1, index.c2p[:length, :length].expand(shape))
        if pos_query is not None:  # position-to-content: k_j against query i's offset from j
            p2c = torch.matmul(ks, pos_query)  # [n, H, L (keys), rows]
            scores += p2c.gather(-1, index.p2c[:length, :length].expand(shape)).transpose(-1, -2)
        if attended is not None:
            mask = attended[start:end].view(count, 1, length)
            pairs = mask.unsqueeze(-1) & mask.unsqueeze(-2)  # [n, 1, L, L]
            scores = scores.masked_fill(~pairs, torch.finfo(scores.dtype).min)
        probs = torch.softmax(scores, -1, dtype=torch.float32).to(v.dtype)
        out[start:end] = torch.matmul(probs, vs).transpose(1, 2).flatten(0, 1)
    return out


class DebertaLayer(BertLayer):
    """BertLayer (fused QKV, post-LN, GELU MLP) plus, without `share_att_key`, the layer's
    own projections of the relative table."""

    def __init__(self, options: DebertaOptions, intermediate: int, activation: str):
        super().__init__(options.hidden, options.heads, intermediate, options.eps, activation)
        self.share_att_key = options.share_att_key
        relative = options.relative_attention and not options.share_att_key
        self.pos_key = nn.Linear(options.hidden, options.hidden) if relative and options.c2p else None
        self.pos_query = nn.Linear(options.hidden, options.hidden) if relative and options.p2c else None

    def project_positions(self, table: torch.Tensor, c2p: bool, p2c: bool
                          ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The relative rows [rows, hidden] as this layer's (Qr, Kr), each [H, D, rows]."""
        hidden = table.shape[1]
        if self.share_att_key:  # v3: the content projections serve the positions too (V is wasted, rows are few)
            qkv = self.qkv(table)
            queries, keys = qkv[:, :hidden], qkv[:, hidden:2 * hidden]
        else:
            queries = self.pos_query(table) if p2c else None
            keys = self.pos_key(table) if c2p else None

        def as_heads(t):  # [rows, H * D] -> [H, D, rows]: the right operand of q @ Kr^T
            return t.view(t.shape[0], self.heads, -1).permute(1, 2, 0)

        return (as_heads(queries) if p2c else None), (as_heads(keys) if c2p else None)


class ConvLayer(nn.Module):
    """DeBERTa-v2's convolution over the embeddings, added to the first layer's output:
    LayerNorm(x + act(conv(embeddings))), the conv zero-padded at each sequence's ends."""

    def __init__(self, options: DebertaOptions):
        super().__init__()
        kernel = options.conv_kernel_size
        self.conv = nn.Conv1d(options.hidden, options.hidden, kernel, padding=(kernel - 1) // 2,
                              groups=options.conv_groups)
        self.norm = nn.LayerNorm(options.hidden, eps=options.eps)
        self.activation = options.conv_act

    def forward(self, embeddings: torch.Tensor, x: torch.Tensor, batch: PackedBatch,
                attended: torch.Tensor | None) -> torch.Tensor:
        out = torch.empty_like(x)
        for start, count, length in batch.equal_length_runs:
            end = start + count * length
            block = embeddings[start:end].unflatten(0, (count, length)).transpose(1, 2)  # [n, hidden, L]
            out[start:end] = self.conv(block).transpose(1, 2).flatten(0, 1)
        if attended is not None:
            out = out.masked_fill(~attended[:, None], 0.0)
        out = self.norm(x + ACTIVATIONS[self.activation](out))
        return out if attended is None else out * attended[:, None].to(out.dtype)


class DebertaV2Encoder(nn.Module):
    """Returns the last hidden state, [total_tokens, hidden]."""

    position_offset = 0  # absolute position ids (when position_biased_input) start at 0

    def __init__(self, config: dict):
        super().__init__()
        o = self.options = DebertaOptions.read(config)
        self.word_embeddings = nn.Embedding(config["vocab_size"], o.embedding_size)
        self.position_embeddings = (nn.Embedding(config.get("max_position_embeddings", 512), o.embedding_size)
                                    if o.position_biased_input else None)
        self.token_type_embeddings = (nn.Embedding(o.type_vocab_size, o.embedding_size)
                                      if o.type_vocab_size > 0 else None)
        self.embed_proj = nn.Linear(o.embedding_size, o.hidden, bias=False) if o.embedding_size != o.hidden else None
        self.embed_norm = nn.LayerNorm(o.hidden, eps=o.eps)
        self.rel_embeddings = nn.Embedding(2 * o.span, o.hidden) if o.relative_attention else None
        self.rel_norm = nn.LayerNorm(o.hidden, eps=o.eps) if o.relative_attention and o.norm_rel_embeddings else None
        self.layers = nn.ModuleList(
            DebertaLayer(o, config["intermediate_size"], config.get("hidden_act", "gelu"))
            for _ in range(config["num_hidden_layers"])
        )
        self.conv = ConvLayer(o) if o.conv_kernel_size > 0 else None
        # every score term is divided by this: sqrt(head_dim * (1 + number of position terms))
        self.scale = math.sqrt(o.hidden // o.heads * (1 + o.c2p + o.p2c))

    def embed(self, batch: PackedBatch) -> torch.Tensor:
        x = self.word_embeddings(batch.input_ids)
        if self.position_embeddings is not None:
            x = x + self.position_embeddings(batch.position_ids)
        if self.token_type_embeddings is not None:
            x = x + self.token_type_embeddings(batch.token_type_ids)
        if self.embed_proj is not None:
            x = self.embed_proj(x)
        return self.embed_norm(x)

    def attended_tokens(self, batch: PackedBatch) -> torch.Tensor | None:
        """[T] bool: tokens inside their sequence's `attend_lengths` entry; None: all."""
        if batch.attend_lengths is None:
            return None
        device = batch.input_ids.device
        limits = torch.repeat_interleave(torch.tensor(batch.attend_lengths, device=device),
                                         torch.tensor(batch.lengths, device=device))
        return batch.position_ids - self.position_offset < limits

    def position_index(self, length: int) -> PositionIndex:
        o, device = self.options, self.rel_embeddings.weight.device
        relative = relative_positions(max(length, 1), o.buckets, o.max_relative_positions, device)
        c2p = torch.clamp(relative + o.span, 0, 2 * o.span - 1)
        p2c = torch.clamp(-relative + o.span, 0, 2 * o.span - 1)
        # a sequence of length L reads only ~2L of the 2 * span rows: project just those
        first, last = int(torch.minimum(c2p.min(), p2c.min())), int(torch.maximum(c2p.max(), p2c.max()))
        return PositionIndex(c2p - first, p2c - first, first, last - first + 1)

    def forward(self, batch: PackedBatch, attention: AttentionFn) -> torch.Tensor:
        o = self.options
        x = self.embed(batch)
        attended = self.attended_tokens(batch)
        if attended is not None:  # transformers zeroes the embeddings its attention mask hides
            x = x * attended[:, None].to(x.dtype)
        embeddings = x
        index = table = None
        if self.rel_embeddings is not None:
            index = self.position_index(batch.max_seqlen)
            table = self.rel_embeddings.weight[index.first:index.first + index.rows]
            if self.rel_norm is not None:  # row-wise, so normalising just these rows is the same
                table = self.rel_norm(table)
            table = table.to(x.dtype)
        for i, layer in enumerate(self.layers):
            pos_query = pos_key = None
            if table is not None:
                pos_query, pos_key = layer.project_positions(table, o.c2p, o.p2c)
                pos_query = None if pos_query is None else pos_query / self.scale

            # BertLayer calls attention(q, k, v, batch, causal); this layer's Qr / Kr ride along
            def attend(q, k, v, batch, causal=False, window=None, pos_query=pos_query, pos_key=pos_key):
                return disentangled_attention(q / self.scale, k, v, batch, pos_query, pos_key, index, attended)

            x = layer(x, batch, attend)
            if i == 0 and self.conv is not None:
                x = self.conv(embeddings, x, batch, attended)
        return x

    @staticmethod
    def map_weights(checkpoint: dict[str, torch.Tensor], config: dict) -> dict[str, torch.Tensor]:
        """HF DebertaV2Model names (with or without the `deberta.` prefix of the task models)
        -> this module's names, with Q, K and V fused. Tensors the options leave out (e.g.
        position_embeddings that v3 checkpoints carry with position_biased_input off) are
        not read."""
        o = DebertaOptions.read(config)
        w = strip_prefix(checkpoint, ("deberta.",))
        renames = {"embeddings.word_embeddings": "word_embeddings", "embeddings.LayerNorm": "embed_norm"}
        if o.position_biased_input:
            renames["embeddings.position_embeddings"] = "position_embeddings"
        if o.type_vocab_size > 0:
            renames["embeddings.token_type_embeddings"] = "token_type_embeddings"
        if o.embedding_size != o.hidden:
            renames["embeddings.embed_proj"] = "embed_proj"
        if o.relative_attention:
            renames["encoder.rel_embeddings"] = "rel_embeddings"
            if o.norm_rel_embeddings:
                renames["encoder.LayerNorm"] = "rel_norm"
        if o.conv_kernel_size > 0:
            renames.update({"encoder.conv.conv": "conv.conv", "encoder.conv.LayerNorm": "conv.norm"})
        for i in range(config["num_hidden_layers"]):
            if o.relative_attention and not o.share_att_key:
                renames[f"encoder.layer.{i}.attention.self.pos_key_proj"] = f"layers.{i}.pos_key"
                renames[f"encoder.layer.{i}.attention.self.pos_query_proj"] = f"layers.{i}.pos_query"
        mapped = pick_renamed(w, renames)
        for i in range(config["num_hidden_layers"]):
            mapped.update(layer_weights(w, f"encoder.layer.{i}.", f"layers.{i}.", DEBERTA_LAYER_NAMES))
        return mapped

    @staticmethod
    def head_weights(checkpoint: dict[str, torch.Tensor], config: dict, task: str) -> HeadWeights:
        """The task head as `dense.*` / `out.*`. Sequence classification is DeBERTa's
        ContextPooler (the first token through pooler.dense and pooler_hidden_act, GELU by
        default; its dropout is off at inference) then the classifier; token classification
        is the classifier alone."""
        w = strip_prefix(checkpoint, ("deberta.",))
        eps = config.get("layer_norm_eps", 1e-7)
        if task == "sequence_classification":
            return HeadWeights(pick_renamed(w, {"pooler.dense": "dense", "classifier": "out"}),
                               config.get("pooler_hidden_act", "gelu"), "cls", eps)
        if task == "token_classification":
            return HeadWeights(pick_renamed(w, {"classifier": "out"}), "identity", "cls", eps)
        raise KeyError(f"DeBERTa-v2 has no {task} head here (sequence and token classification only)")
