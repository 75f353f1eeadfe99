"""The generic fallback: any Hugging Face encoder without a native forward pass still
serves, through transformers, padded and slower. It has the same interface as
ServedModel, so the engine and every head treat it alike."""

from __future__ import annotations

import logging
import time

import numpy as np
import torch

from .batch import PackedBatch
from .errors import ModelLoadError
from .served import DenseStack, ServedModel
from .spec import ModelSpec
from .tasks import TASKS
from .tokenize import Tokenized

log = logging.getLogger("shoal.engine")

BACKEND_NAME = "transformers"


class FallbackModel(ServedModel):
    @classmethod
    def load(cls, spec: ModelSpec, device: torch.device, dtype: torch.dtype, attention=None) -> "FallbackModel":
        started = time.perf_counter()
        auto_class = TASKS[spec.task].fallback_class
        if auto_class is None:
            raise ModelLoadError(f"model {spec.name!r}: {spec.task} models need a native implementation")
        try:
            import transformers

            model = getattr(transformers, auto_class).from_pretrained(str(spec.path), dtype=dtype,
                                                                     local_files_only=True)
            dense = DenseStack(spec.dense_layers) if spec.dense_layers else None
        except ImportError as error:
            raise ModelLoadError(f"model {spec.name!r}: no native implementation and transformers is not installed "
                                 f"(pip install 'shoal[fallback]')") from error
        except (OSError, ValueError, KeyError, RuntimeError) as error:
            raise ModelLoadError(f"model {spec.name!r}: transformers cannot load {spec.path}: {error}") from error
        model = model.to(device).eval()
        if dense is not None:
            dense = dense.to(device=device, dtype=dtype).eval()
        log.info("model loaded", extra={"model": spec.name, "task": spec.task, "backend": BACKEND_NAME,
                                        "seconds": round(time.perf_counter() - started, 3)})
        return cls(spec, model, None, dense, device, dtype, BACKEND_NAME, None)

    def _padded(self, items: list[Tokenized]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        longest = max(len(t.ids) for t in items)
        ids = torch.zeros(len(items), longest, dtype=torch.long)
        types = torch.zeros_like(ids)
        mask = torch.zeros_like(ids)
        for row, item in enumerate(items):
            n = len(item.ids)
            ids[row, :n] = torch.tensor(item.ids)
            types[row, :n] = torch.tensor(item.type_ids)
            # ColBERT query expansion: keys past `attend` are masked; every token still yields a vector
            mask[row, :n] = 1 if item.attend is None else (torch.arange(n) < item.attend).long()
        inputs = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self.network.forward.__code__.co_varnames:
            inputs["token_type_ids"] = types
        lengths = torch.tensor([len(t.ids) for t in items])
        present = torch.arange(longest)[None, :] < lengths[:, None]
        return {k: v.to(self.device) for k, v in inputs.items()}, present.to(self.device)

    def _hidden(self, items: list[Tokenized]) -> tuple[torch.Tensor, PackedBatch]:
        inputs, present = self._padded(items)
        hidden = self.network(**inputs).last_hidden_state
        batch = PackedBatch.pack([t.ids for t in items], device=self.device)
        return hidden[present], batch  # padded -> packed [T, H], in sequence order

    @torch.inference_mode()
    def sequence_logits(self, items: list[Tokenized]) -> np.ndarray:
        inputs, _ = self._padded(items)
        return self.network(**inputs).logits.float().cpu().numpy()

    @torch.inference_mode()
    def token_logits(self, items: list[Tokenized]) -> list[np.ndarray]:
        inputs, present = self._padded(items)
        logits = self.network(**inputs).logits.float()
        return [row[mask].cpu().numpy() for row, mask in zip(logits, present)]

    @torch.inference_mode()
    def sparse(self, items: list[Tokenized]) -> list[tuple[np.ndarray, np.ndarray]]:
        inputs, present = self._padded(items)
        logits = self.network(**inputs).logits.float()
        weights = torch.log1p(torch.relu(logits)) * present[..., None]
        pooled = weights.max(dim=1).values
        result = []
        for row in pooled:
            indices = torch.nonzero(row, as_tuple=True)[0]
            result.append((indices.cpu().numpy().astype(np.int64), row[indices].cpu().numpy()))
        return result

