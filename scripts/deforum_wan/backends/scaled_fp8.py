"""ComfyUI's *scaled* fp8 kept in float8: a Linear whose weight is float8 e4m3fn times one scale
per tensor. Diffusers' layerwise casting upcasts the weight to the compute dtype around each
forward (a plain cast, lossless from float8); this forward multiplies by the scale after it, so
the weight stays float8 in memory and only the running layer is ever dequantised."""
from __future__ import annotations

import torch


class ScaledFp8Linear(torch.nn.Linear):
    """Set on a built ``nn.Linear`` (``__class__``) before its casting hook wraps ``forward``.
    The scale is a plain float, not a buffer: ``module.to(float8)`` (the hook's) casts buffers."""

    weight_scale: float = 1.0

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.linear(input, self.weight * self.weight_scale, self.bias)


def make_scaled(module: torch.nn.Module, scale: float) -> None:
    module.__class__ = ScaledFp8Linear
    module.weight_scale = scale


def unmake_scaled(module: torch.nn.Module) -> None:
    module.__class__ = torch.nn.Linear
    del module.weight_scale
