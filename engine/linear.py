"""Linear layers, and their fast CPU form.

On the CPU, torch's `F.linear` goes through a generic GEMM that, on the machines measured
(benchmarks/results/throughput-cpu.md), reaches less than half of what oneDNN does with
weights reordered once into its blocked layout: 2.3x slower in float32, ~10% in bfloat16.
So a model loaded for the CPU has every `nn.Linear` replaced by a `PrepackedLinear` that
calls oneDNN with a weight packed at load time (on the loader thread), and an activation
that directly follows a linear layer (`LinearAct`) runs as oneDNN's fused post-op instead of
a second pass over memory. No compilation, nothing cached on disk: packing takes
milliseconds, so a model serves at full speed from its first batch, and the host tier is
untouched (on the CPU it is the same memory)."""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from .heads import ACTIVATIONS

# activation -> oneDNN post-op (attr, algorithm); others run after the linear layer
FUSED = {"gelu": ("gelu", "none"), "gelu_python": ("gelu", "none"), "gelu_new": ("gelu", "tanh"),
         "gelu_pytorch_tanh": ("gelu", "tanh"), "relu": ("relu", ""), "identity": ("none", "")}


class LinearAct(nn.Linear):
    """A linear layer whose output goes straight through `activation` (the same parameters
    and state-dict names as nn.Linear), so the CPU form can fuse the two."""

    def __init__(self, in_features: int, out_features: int, activation: str, bias: bool = True):
        super().__init__(in_features, out_features, bias=bias)
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ACTIVATIONS[self.activation](super().forward(x))


class PrepackedLinear(nn.Module):
    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.register_buffer("packed_weight", torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach()))
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().clone())
        activation = getattr(linear, "activation", "identity")
        self.post_op, self.algorithm = FUSED.get(activation, ("none", ""))
        self.after = None if activation in FUSED else ACTIVATIONS[activation]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.ops.mkldnn._linear_pointwise(x, self.packed_weight, self.bias, self.post_op, [], self.algorithm)
        return y if self.after is None else self.after(y)


def can_prepack(device: torch.device, dtype: torch.dtype) -> bool:
    return device.type == "cpu" and dtype in (torch.float32, torch.bfloat16) and torch.backends.mkldnn.is_available()


@contextlib.contextmanager
def one_torch_thread():
    """On the loader thread: pack with one thread. oneDNN's reorder with two OpenMP threads
    took 8 ms per matrix on the measured CPUs (a parked thread woken for tiny work), with one
    0.25 ms; and a second team beside the device's would only compete for the same cores."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def prepack_linears(module: nn.Module) -> None:
    """Replace every nn.Linear under `module` (in place) with its prepacked CPU form."""
    with one_torch_thread():
        _prepack(module)


def _prepack(module: nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, nn.Linear):
            setattr(module, name, PrepackedLinear(child))
        else:
            _prepack(child)
