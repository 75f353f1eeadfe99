"""Heads that turn packed hidden states [T, H] into outputs.

The task heads of every supported family share one shape: an optional dense layer and
activation, an optional LayerNorm, and an output projection. Each architecture file maps
its checkpoint names onto that shape (`head_weights`), so heads are written once here.
GLiNER's span head and GLiClass's label scorer, which any backbone can carry, are here too
(`SpanHead`, `GliclassHead`)."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import accumulate

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .batch import PackedBatch
from .gliclass import GliclassSettings, Prompted
from .gliner import GlinerSettings, Window

ACTIVATIONS = {
    "gelu": lambda x: F.gelu(x),
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_python": lambda x: F.gelu(x),
    "relu": F.relu,
    "silu": F.silu,
    "swish": F.silu,
    "tanh": torch.tanh,
    "identity": lambda x: x,
}


def sequence_index(batch: PackedBatch) -> torch.Tensor:
    """For each token, the index of its sequence: [T] int64."""
    lengths = torch.tensor(batch.lengths, device=batch.input_ids.device)
    return torch.repeat_interleave(torch.arange(batch.num_sequences, device=lengths.device), lengths)


def pool(hidden: torch.Tensor, batch: PackedBatch, mode: str) -> torch.Tensor:
    """[T, H] -> [B, H] in float32."""
    hidden = hidden.float()
    if mode == "cls":
        return hidden[batch.cu_seqlens[:-1].long()]
    if mode == "lasttoken":
        return hidden[batch.cu_seqlens[1:].long() - 1]
    index = sequence_index(batch)
    if mode == "mean":
        sums = torch.zeros(batch.num_sequences, hidden.shape[1], device=hidden.device).index_add_(0, index, hidden)
        lengths = torch.tensor(batch.lengths, device=hidden.device, dtype=torch.float32)
        return sums / lengths.unsqueeze(1)
    if mode == "max":
        result = torch.full((batch.num_sequences, hidden.shape[1]), float("-inf"), device=hidden.device)
        return result.index_reduce_(0, index, hidden, "amax", include_self=True)
    raise ValueError(f"unknown pooling mode {mode!r}")


@dataclass
class HeadWeights:
    """A task head as an architecture file maps it: weights named `dense.*`, `norm.*`,
    `out.*`; the activation after `dense`; which token(s) a sequence-level head reads
    ("cls" or "mean"); the LayerNorm epsilon."""

    weights: dict[str, torch.Tensor]
    activation: str = "identity"
    pooling: str = "cls"
    eps: float = 1e-12


class TaskHead(nn.Module):
    """[dense -> activation] -> [LayerNorm] -> out. Built from weights named `dense.*`,
    `norm.*` and `out.*`; which parts exist is read off the weights."""

    def __init__(self, head: HeadWeights):
        super().__init__()
        weights, activation, eps = head.weights, head.activation, head.eps
        self.pooling = head.pooling
        self.dense = _linear(weights, "dense") if "dense.weight" in weights else None
        self.act = ACTIVATIONS[activation]
        self.norm = None
        if "norm.weight" in weights:
            self.norm = nn.LayerNorm(weights["norm.weight"].shape[0], eps=eps, bias="norm.bias" in weights)
        self.out = _linear(weights, "out")
        self.load_state_dict(weights, strict=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.dense is not None:
            x = self.act(self.dense(x))
        if self.norm is not None:
            x = self.norm(x)
        return self.out(x)


def _linear(weights: dict[str, torch.Tensor], name: str) -> nn.Linear:
    out_features, in_features = weights[f"{name}.weight"].shape
    return nn.Linear(in_features, out_features, bias=f"{name}.bias" in weights)


def sparse_max_pool(logits_fn, hidden: torch.Tensor, batch: PackedBatch, chunk_tokens: int = 512) -> torch.Tensor:
    """SPLADE pooling: max over tokens of log(1 + relu(logits)), per sequence -> [B, V].

    Vocabulary logits for a whole batch would take T x V floats, so tokens go through the
    MLM head in chunks and are max-reduced into the [B, V] result as they come."""
    index = sequence_index(batch)
    result = None
    for start in range(0, hidden.shape[0], chunk_tokens):
        weights = torch.log1p(torch.relu(logits_fn(hidden[start:start + chunk_tokens]).float()))
        if result is None:
            result = torch.zeros(batch.num_sequences, weights.shape[1], device=weights.device)
        rows = index[start:start + chunk_tokens].unsqueeze(1).expand_as(weights)
        result.scatter_reduce_(0, rows, weights, "amax", include_self=True)
    return result


class Projection(nn.Module):
    """The gliner package's projection layer: Linear -> ReLU -> (dropout) -> Linear."""

    def __init__(self, weights: dict[str, torch.Tensor], name: str):
        super().__init__()
        self.up = _linear(weights, f"{name}.up")
        self.down = _linear(weights, f"{name}.down")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.relu(self.up(x)))


class SpanHead(nn.Module):
    """GLiNER's uni-encoder span head (engine/gliner.py prepares its input): hidden states ->
    [projection] -> words pooled from their subtokens -> [bidirectional LSTM] -> each span of
    up to max_width words as relu(start(first word) | end(last word)) projected, scored by a
    dot product with each label's projected marker state. Built from weights named as
    gliner.HEAD_NAMES names them; returns per window [words, max_width, labels] sigmoid
    scores (spans running past the last word are scored on a clipped end and never decoded)."""

    def __init__(self, weights: dict[str, torch.Tensor], settings: GlinerSettings):
        super().__init__()
        self.max_width, self.pooling = settings.max_width, settings.subtoken_pooling
        self.projection = _linear(weights, "projection") if "projection.weight" in weights else None
        self.lstm = None
        if settings.rnn_layers:
            hidden = settings.hidden_size
            self.lstm = nn.LSTM(hidden, hidden // 2, num_layers=settings.rnn_layers, bidirectional=True,
                                batch_first=True)
        self.start, self.end, self.span, self.label = (Projection(weights, name)
                                                       for name in ("start", "end", "span", "label"))
        self.load_state_dict(weights, strict=True)

    def forward(self, hidden: torch.Tensor, batch: PackedBatch, windows: list[Window]) -> list[np.ndarray]:
        x = hidden if self.projection is None else self.projection(hidden)
        counts = [window.words for window in windows]
        words = self._words(x, batch, windows, counts)
        if self.lstm is not None:
            packed = nn.utils.rnn.pack_sequence(words.split(counts), enforce_sorted=False)
            words = torch.cat(nn.utils.rnn.unpack_sequence(self.lstm(packed)[0]))
        starts, ends = self._span_words(counts, x.device)
        spans = self.span(torch.cat([self.start(words)[starts], self.end(words)[ends]], dim=-1).relu())
        token_starts = [0, *accumulate(batch.lengths)]
        markers = [token_starts[i] + m for i, window in enumerate(windows) for m in window.markers]
        labels = self.label(x[torch.tensor(markers, device=x.device)])
        scores, span_at, label_at = [], 0, 0
        for count, window in zip(counts, windows):
            span_count, label_count = count * self.max_width, len(window.markers)
            block = spans[span_at:span_at + span_count] @ labels[label_at:label_at + label_count].T
            scores.append(torch.sigmoid(block.float()).flatten())
            span_at, label_at = span_at + span_count, label_at + label_count
        flat = torch.cat(scores).cpu().numpy()  # one copy off the device for the whole batch
        sizes = [count * self.max_width * len(window.markers) for count, window in zip(counts, windows)]
        return [part.reshape(count, self.max_width, -1)
                for part, count in zip(np.split(flat, np.cumsum(sizes)[:-1]), counts)]

    def _words(self, x: torch.Tensor, batch: PackedBatch, windows: list[Window], counts: list[int]) -> torch.Tensor:
        """[all words, D]: each word from its first or last subtoken, or the mean or max of all
        of them; zeros for a word that kept no token."""
        token_starts, word_starts = [0, *accumulate(batch.lengths)], [0, *accumulate(counts)]
        tokens = torch.tensor([token_starts[i] + p for i, w in enumerate(windows) for p in w.token_positions],
                              device=x.device, dtype=torch.long)
        owners = torch.tensor([word_starts[i] + o for i, w in enumerate(windows) for o in w.token_words],
                              device=x.device, dtype=torch.long)
        words = x.new_zeros(word_starts[-1], x.shape[1])
        if self.pooling in ("first", "last"):
            return words.index_copy_(0, owners, x[tokens])
        reduce = "mean" if self.pooling == "mean" else "amax"
        return words.scatter_reduce_(0, owners[:, None].expand(-1, x.shape[1]), x[tokens], reduce, include_self=False)

    def _span_words(self, counts: list[int], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """First and last word of every (start word, width) span, window by window; a span that
        runs past its window's last word ends there instead."""
        sizes = torch.tensor(counts)
        window_ends = torch.repeat_interleave(torch.cumsum(sizes, 0) - 1, sizes)
        starts = torch.arange(int(sizes.sum())).repeat_interleave(self.max_width)
        widths = torch.arange(self.max_width).repeat(int(sizes.sum()))
        ends = torch.minimum(starts + widths, window_ends.repeat_interleave(self.max_width))
        return starts.to(device), ends.to(device)


class FeaturesProjector(nn.Module):
    """The gliclass package's projector: Linear -> activation -> (dropout) -> Linear."""

    def __init__(self, weights: dict[str, torch.Tensor], name: str, activation: str):
        super().__init__()
        self.linear_1 = _linear(weights, f"{name}.linear_1")
        self.linear_2 = _linear(weights, f"{name}.linear_2")
        self.act = ACTIVATIONS[activation]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(self.act(self.linear_1(x)))


class DotScorer(nn.Module):
    """scorer_type "simple": the dot product of the text's and each label's vector."""

    def forward(self, text: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return labels @ text.T


class WeightedDotScorer(nn.Module):
    """scorer_type "weighted-dot": text and label each projected to two halves (a, b); an MLP
    reads [text a | label a | text b * label b]."""

    def __init__(self, weights: dict[str, torch.Tensor]):
        super().__init__()
        self.proj_text = _linear(weights, "scorer.proj_text")
        self.proj_label = _linear(weights, "scorer.proj_label")
        self.out_mlp = nn.ModuleDict({"0": _linear(weights, "scorer.out_mlp.0"),
                                      "3": _linear(weights, "scorer.out_mlp.3")})

    def forward(self, text: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        text_a, text_b = self.proj_text(text).chunk(2, dim=-1)
        label_a, label_b = self.proj_label(labels).chunk(2, dim=-1)
        joined = torch.cat([text_a.expand_as(label_a), label_a, text_b * label_b], dim=-1)
        return self.out_mlp["3"](F.relu(self.out_mlp["0"](joined))).squeeze(-1)


class MlpScorer(nn.Module):
    """scorer_type "mlp": an MLP (two ReLU layers) over [text | label]."""

    def __init__(self, weights: dict[str, torch.Tensor]):
        super().__init__()
        self.mlp = nn.ModuleDict({str(i): _linear(weights, f"scorer.mlp.{i}") for i in (0, 2, 4)})

    def forward(self, text: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        x = torch.cat([text.expand(labels.shape[0], -1), labels], dim=-1)
        for i in ("0", "2"):
            x = F.relu(self.mlp[i](x))
        return self.mlp["4"](x).squeeze(-1)


class GliclassHead(nn.Module):
    """GLiClass's uni-encoder head (engine/gliclass.py prepares its input): the text is the
    sequence's first token [after a bidirectional LSTM], each label the mean of its tokens
    (one token unless "average"); both go through their projector [and are made unit length],
    and the scorer gives one logit per label [times logit_scale, for unit vectors]. Built from
    weights named as gliclass.HEAD_NAMES names them; returns one [labels] float32 array
    of logits per sequence."""

    def __init__(self, weights: dict[str, torch.Tensor], settings: GliclassSettings):
        super().__init__()
        if settings.projector_activation not in ACTIVATIONS:
            raise ValueError(f"GLiClass projector_hidden_act {settings.projector_activation!r} is not supported; "
                             f"known: {sorted(ACTIVATIONS)}")
        self.normalize = settings.normalize_features
        self.text = FeaturesProjector(weights, "text", settings.projector_activation)
        self.label = FeaturesProjector(weights, "label", settings.projector_activation)
        self.lstm = None
        if settings.use_lstm:
            size, inputs = weights["lstm.weight_hh_l0"].shape[1], weights["lstm.weight_ih_l0"].shape[1]
            self.lstm = nn.LSTM(inputs, size, bidirectional=True, batch_first=True)
        self.scorer = {"simple": DotScorer, "weighted-dot": WeightedDotScorer,
                       "mlp": MlpScorer}[settings.scorer](*(() if settings.scorer == "simple" else (weights,)))
        self.logit_scale = nn.Parameter(weights["logit_scale"].clone())
        self.load_state_dict(weights, strict=True)

    def forward(self, hidden: torch.Tensor, batch: PackedBatch, prompts: list[Prompted]) -> list[np.ndarray]:
        starts = batch.cu_seqlens[:-1].long()
        if self.lstm is None:
            texts = hidden[starts]
        else:  # the LSTM reads each whole sequence; its first output is the text's vector
            packed = nn.utils.rnn.pack_sequence(hidden.split(batch.lengths), enforce_sorted=False)
            texts = torch.stack([out[0] for out in nn.utils.rnn.unpack_sequence(self.lstm(packed)[0])])
        texts = self.text(texts)
        labels = self.label(self._labels(hidden, batch, prompts))
        if self.normalize:  # the package's x / (|x| + 1e-8), not F.normalize's max(|x|, eps)
            texts = texts / (texts.norm(dim=-1, keepdim=True) + 1e-8)
            labels = labels / (labels.norm(dim=-1, keepdim=True) + 1e-8)
        logits, at = [], 0
        for i, prompt in enumerate(prompts):
            count = len(prompt.labels)
            logits.append(self.scorer(texts[i:i + 1], labels[at:at + count]).reshape(count))
            at += count
        flat = torch.cat(logits)
        if self.normalize:
            flat = flat * self.logit_scale
        flat = flat.float().cpu().numpy()  # one copy off the device for the whole batch
        return np.split(flat, np.cumsum([len(p.labels) for p in prompts])[:-1])

    @staticmethod
    def _labels(hidden: torch.Tensor, batch: PackedBatch, prompts: list[Prompted]) -> torch.Tensor:
        """[all labels, H]: each label's tokens averaged (one token: that token; none: zeros)."""
        token_starts = [0, *accumulate(batch.lengths)]
        tokens, owners, counts = [], [], []
        for i, prompt in enumerate(prompts):
            for start, stop in prompt.labels:
                tokens.extend(range(token_starts[i] + start, token_starts[i] + stop))
                owners.extend([len(counts)] * (stop - start))
                counts.append(max(stop - start, 1))
        device = hidden.device
        sums = hidden.new_zeros(len(counts), hidden.shape[1]).index_add_(
            0, torch.tensor(owners, device=device, dtype=torch.long), hidden[torch.tensor(tokens, device=device,
                                                                                          dtype=torch.long)])
        return sums / torch.tensor(counts, device=device, dtype=hidden.dtype).unsqueeze(1)
