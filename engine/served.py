"""A model ready to serve: tokenizer + packed network + heads, on one device and dtype."""

from __future__ import annotations

import logging
import time

import numpy as np
import torch

from .attention import AttentionFn
from .batch import PackedBatch
from .errors import ModelLoadError
from .heads import pool
from .models import find_architecture
from .spec import ModelSpec
from .tokenize import Tokenized
from .weights import read_checkpoint

log = logging.getLogger("shoal.engine")


class ServedModel:
    def __init__(self, spec: ModelSpec, network: torch.nn.Module,
                 device: torch.device, dtype: torch.dtype, attention_name: str, attention: AttentionFn):
        self.spec = spec
        self.network = network
        self.device = device
        self.dtype = dtype
        self.attention_name = attention_name
        self.attention = attention
        self.capabilities = ("dense",)

    @classmethod
    def load(cls, spec: ModelSpec, device: torch.device, dtype: torch.dtype,
             attention: tuple[str, AttentionFn]) -> "ServedModel":
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
            network.load_state_dict(architecture.map_weights(checkpoint, spec.config), strict=True, assign=True)
        except (OSError, KeyError, RuntimeError, ValueError) as error:
            raise ModelLoadError(f"model {spec.name!r}: cannot load from {spec.path}: {error}") from error
        network = network.to(device=device, dtype=dtype).eval()
        log.info("model loaded", extra={"model": spec.name, "seconds": round(time.perf_counter() - started, 3),
                                        "device": str(device), "dtype": str(dtype).removeprefix("torch.")})
        return cls(spec, network, device, dtype, *attention)

    @property
    def resident_bytes(self) -> int:
        return sum(p.numel() * p.element_size() for p in self.network.parameters())

    @torch.inference_mode()
    def embed(self, items: list[Tokenized]) -> np.ndarray:
        """Pooled, un-normalised float32 vectors, one row per item, in item order."""
        batch = PackedBatch.pack([t.ids for t in items], [t.type_ids for t in items],
                                 position_offset=self.network.position_offset, device=self.device)
        hidden = self.network(batch, self.attention)
        return pool(hidden, batch, self.spec.pooling).cpu().numpy()
