"""A model ready to serve: the packed network plus its task's head, on one device and dtype.

`run(batch)` is the forward pass: it packs the scheduler's batch (PackedBatch), runs the
encoder and the head its `Work` names, and returns one raw output per item, in order;
probabilities, normalisation and sorting happen per request (engine.tasks)."""

from __future__ import annotations

import logging
import time

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from .attention import AttentionFn
from .batch import PackedBatch
from .errors import ModelLoadError
from . import gliclass, gliner
from .heads import ACTIVATIONS, GliclassHead, HeadWeights, SpanHead, TaskHead, pool, sparse_max_pool
from .linear import can_prepack, prepack_linears
from .models import find_architecture
from .scheduler import Batch
from .spec import DenseLayer, ModelSpec
from .tasks import TASKS, Head
from .tokenize import Tokenized, load_tokenizer
from .weights import read_checkpoint, split_checkpoint

log = logging.getLogger("shoal.engine")

class DenseStack(nn.Module):
    """sentence-transformers / PyLate Dense modules, applied in order."""

    def __init__(self, layers: tuple[DenseLayer, ...]):
        super().__init__()
        self.linears = nn.ModuleList()
        self.activations = [ACTIVATIONS[layer.activation] for layer in layers]
        for layer in layers:
            linear = nn.Linear(layer.in_features, layer.out_features, bias=layer.bias)
            weights = _module_weights(layer.folder)
            linear.load_state_dict({k.removeprefix("linear."): v for k, v in weights.items()}, strict=True)
            self.linears.append(linear)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for linear, activation in zip(self.linears, self.activations):
            x = activation(linear(x))
        return x


def _module_weights(folder) -> dict[str, torch.Tensor]:
    path = folder / "model.safetensors"
    if not path.exists():
        raise FileNotFoundError(f"{folder}: Dense weights must be in model.safetensors")
    return load_file(str(path))


class ServedModel:
    def __init__(self, spec: ModelSpec, network: nn.Module, head: nn.Module | None, dense: DenseStack | None,
                 device: torch.device, dtype: torch.dtype, attention_name: str, attention: AttentionFn):
        self.spec = spec
        self.network = network
        self.head = head
        self.dense = dense
        self.device = device
        self.dtype = dtype
        self.attention_name = attention_name
        self.attention = attention

    @classmethod
    def load(cls, spec: ModelSpec, device: torch.device, dtype: torch.dtype,
             attention: tuple[str, AttentionFn]) -> ServedModel:
        started = time.perf_counter()
        architecture = find_architecture(spec.model_type, spec.architectures)
        if architecture is None:
            raise ModelLoadError(
                f"model {spec.name!r}: no implementation for model_type {spec.model_type!r} "
                f"(architectures {list(spec.architectures)})"
            )
        try:
            checkpoint = read_checkpoint(spec.weight_files)
            with torch.device("meta"):
                network = architecture(spec.config)
            # GLiNER, GLiClass: one checkpoint holds the backbone's weights and the package's head's
            backbone, head = checkpoint, None
            if spec.task == "gliner":
                backbone, weights = split_checkpoint(checkpoint, gliner.BACKBONE_PREFIX, gliner.HEAD_NAMES)
                head = SpanHead(weights, spec.gliner)
            elif spec.task == "gliclass":
                backbone, weights = split_checkpoint(checkpoint, gliclass.BACKBONE_PREFIX, gliclass.HEAD_NAMES)
                head = GliclassHead(weights, spec.gliclass)
            network.load_state_dict(architecture.map_weights(backbone, spec.config), strict=True, assign=True)
            head = head if head is not None else _build_head(spec, architecture, checkpoint)
            dense = DenseStack(spec.dense_layers) if spec.dense_layers else None
        except Exception as error:  # corrupt or mismatched files: one clear error, whatever the library raised
            raise ModelLoadError(f"model {spec.name!r}: cannot load from {spec.path}: "
                                 f"{type(error).__name__}: {error}") from error
        for module in (network, head, dense):
            if module is not None:
                module.to(device=device, dtype=dtype).eval()
                if device.type == "cpu":
                    _own_memory(module)
                if can_prepack(device, dtype):
                    prepack_linears(module)
        log.info("model loaded", extra={"model": spec.name, "task": spec.task, "device": str(device),
                                        "dtype": str(dtype).removeprefix("torch."),
                                        "seconds": round(time.perf_counter() - started, 3)})
        return cls(spec, network, head, dense, device, dtype, *attention)

    @property
    def resident_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for m in self._modules()
                   for t in (*m.parameters(), *m.buffers()))

    # ---- host tier -------------------------------------------------------------------
    def _modules(self) -> list[nn.Module]:
        return [m for m in (self.network, self.head, self.dense) if m is not None]

    def to_host(self) -> None:
        """Park the weights in host memory (pinned, so coming back is a fast copy). On a
        CPU device they are already in host memory."""
        if self.device.type == "cpu":
            return
        for module in self._modules():
            for tensor in list(module.parameters()) + list(module.buffers()):
                tensor.data = tensor.data.to("cpu").pin_memory()

    def to_device(self) -> None:
        if self.device.type == "cpu":
            return
        for module in self._modules():
            for tensor in list(module.parameters()) + list(module.buffers()):
                tensor.data = tensor.data.to(self.device, non_blocking=True)
        torch.cuda.synchronize(self.device)

    # ---- forward passes --------------------------------------------------------------
    def run(self, batch: Batch) -> list:
        """The forward pass of one batch: one raw output per item, in the batch's order."""
        items = [item.tokenized for item in batch.items]
        head = batch.work.head
        if head is Head.POOLED:
            return list(self.embed(items, batch.work.pooling))
        if head is Head.SPARSE:
            return self.sparse(items)
        if head is Head.SEQUENCE_LOGITS:
            return list(self.sequence_logits(items))
        if head is Head.TOKEN_LOGITS:
            return self.token_logits(items)
        if head is Head.TOKEN_VECTORS:
            return self.token_vectors(items)
        if head is Head.SPANS:
            return self.span_scores(items)
        if head is Head.PROMPTED_LABELS:
            return self.label_logits(items)
        raise ValueError(f"no head {head!r}")

    def _hidden(self, items: list[Tokenized]) -> tuple[torch.Tensor, PackedBatch]:
        batch = PackedBatch.pack([t.ids for t in items], [t.type_ids for t in items],
                                 position_offset=self.network.position_offset, device=self.device,
                                 attend_lengths=[t.attend for t in items])
        return self.network(batch, self.attention), batch

    @torch.inference_mode()
    def embed(self, items: list[Tokenized], pooling: str | None = None) -> np.ndarray:
        """Pooled (and projected), un-normalised float32 vectors: [B, dimension]."""
        hidden, batch = self._hidden(items)
        pooled = pool(hidden, batch, pooling or self.spec.pooling)
        if self.dense is not None:
            pooled = self.dense(pooled.to(self.dtype)).float()
        return pooled.cpu().numpy()

    @torch.inference_mode()
    def sequence_logits(self, items: list[Tokenized]) -> np.ndarray:
        """Classifier logits per sequence: [B, labels] (cross-encoders: [B, 1])."""
        hidden, batch = self._hidden(items)
        if self.spec.task == "causal_rerank":
            return self.head(hidden[batch.cu_seqlens[1:].long() - 1]).float().cpu().numpy()
        pooled = pool(hidden, batch, self.head.pooling).to(self.dtype)
        return self.head(pooled).float().cpu().numpy()

    @torch.inference_mode()
    def token_logits(self, items: list[Tokenized]) -> list[np.ndarray]:
        """Classifier logits per token, one [n_i, labels] array per item."""
        hidden, batch = self._hidden(items)
        logits = self.head(hidden).float().cpu().numpy()
        bounds = batch.cu_seqlens.tolist()
        return [logits[bounds[i]:bounds[i + 1]] for i in range(batch.num_sequences)]

    @torch.inference_mode()
    def span_scores(self, items: list[Tokenized]) -> list[np.ndarray]:
        """GLiNER: [words, max_width, labels] sigmoid scores, one per window (engine.gliner)."""
        hidden, batch = self._hidden(items)
        return self.head(hidden, batch, [item.extra for item in items])

    @torch.inference_mode()
    def label_logits(self, items: list[Tokenized]) -> list[np.ndarray]:
        """GLiClass: a logit per label in each sequence's prompt, one [labels] array per item (engine.gliclass)."""
        hidden, batch = self._hidden(items)
        return self.head(hidden, batch, [item.extra for item in items])

    @torch.inference_mode()
    def sparse(self, items: list[Tokenized]) -> list[tuple[np.ndarray, np.ndarray]]:
        """SPLADE vectors as (indices ascending, values), one pair per item."""
        hidden, batch = self._hidden(items)
        weights = sparse_max_pool(self.head, hidden, batch)
        result = []
        for row in weights:
            indices = torch.nonzero(row, as_tuple=True)[0]
            result.append((indices.cpu().numpy().astype(np.int64), row[indices].cpu().numpy()))
        return result

    @torch.inference_mode()
    def token_vectors(self, items: list[Tokenized]) -> list[np.ndarray]:
        """ColBERT: projected, L2-normalised vectors of the kept tokens, one [k_i, d] per item."""
        hidden, batch = self._hidden(items)
        if self.dense is not None:
            hidden = self.dense(hidden)
        vectors = F.normalize(hidden.float(), dim=-1).cpu().numpy()
        bounds = batch.cu_seqlens.tolist()
        return [_kept(vectors[bounds[i]:bounds[i + 1]], items[i].keep) for i in range(batch.num_sequences)]


def _kept(vectors: np.ndarray, keep: list[bool] | None) -> np.ndarray:
    return vectors if keep is None else vectors[np.asarray(keep, dtype=bool)]


def _own_memory(module: nn.Module) -> None:
    """safetensors maps the weight file; on the CPU, where `.to()` may keep those pages,
    copy them into ordinary memory now, on the loader thread. Otherwise the first forward
    pass faults them in on the device thread, the kernel may drop and re-read them, and a
    model file replaced on disk while it is served could crash the process."""
    for tensor in list(module.parameters()) + list(module.buffers()):
        tensor.data = tensor.data.clone()


def _build_head(spec: ModelSpec, architecture, checkpoint) -> nn.Module | None:
    head_kind = TASKS[spec.task].checkpoint_head
    if head_kind is None:
        return None
    head = architecture.head_weights(checkpoint, spec.config, head_kind)
    if spec.task == "causal_rerank":
        head = _yes_no_rows(spec, head)
    return TaskHead(head)


def _yes_no_rows(spec: ModelSpec, head: HeadWeights) -> HeadWeights:
    """Causal rerankers answer "yes" or "no": keep just those two vocabulary rows."""
    tokenizer = load_tokenizer(spec.path)
    rows = [tokenizer.token_to_id(word) for word in ("no", "yes")]
    if None in rows:
        raise ValueError("the tokenizer has no 'yes' / 'no' tokens for reranking")
    weights = {"out.weight": head.weights["out.weight"][rows]}
    return HeadWeights(weights, head.activation, head.pooling, head.eps)
