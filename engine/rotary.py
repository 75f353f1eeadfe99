"""Rotary position embeddings (RoPE) over packed tokens, as ModernBERT and Qwen3 use them:
the rotate-half layout, cos/sin computed from each token's position id in float32."""

from __future__ import annotations

import torch


class Rotary:
    """cos/sin tables for one base `theta` and head size. A plain object, not a module: the
    inverse frequencies are derived from the config, never loaded, and built on the CPU
    even while the network itself is built on the meta device."""

    def __init__(self, head_dim: int, theta: float):
        exponents = torch.arange(0, head_dim, 2, dtype=torch.float32, device="cpu") / head_dim
        self.inv_freq = 1.0 / (theta ** exponents)  # [head_dim / 2], as transformers computes it
        self._on_device: dict[torch.device, torch.Tensor] = {}

    def __call__(self, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[T] position ids -> cos, sin as [T, 1, head_dim] float32 (broadcast over heads)."""
        device = position_ids.device
        if device not in self._on_device:
            self._on_device[device] = self.inv_freq.to(device)
        freqs = position_ids.float()[:, None] * self._on_device[device]
        angles = torch.cat((freqs, freqs), dim=-1)[:, None, :]
        return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate [T, heads, head_dim] by the angles in cos/sin, in float32; returns x's dtype."""
    xf = x.float()
    first, second = xf.chunk(2, dim=-1)
    rotated = torch.cat((-second, first), dim=-1)
    return (xf * cos + rotated * sin).to(x.dtype)
