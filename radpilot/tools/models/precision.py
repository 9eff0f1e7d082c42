"""Inference precision per device: fp16 autocast on CUDA, plain fp32 on the CPU.

fp16 is used where it is safe: forward passes of the classifier and the lung U-Net, whose
outputs are read as probabilities (rounded to two decimals in answers). Gradients (Grad-CAM),
SAM's mask decoder and the sentence embedder stay in fp32.
"""

from __future__ import annotations

import contextlib
from typing import Any


def inference(device: str) -> Any:
    """`with inference(device):` around a forward pass (inside `torch.no_grad()`)."""
    import torch

    if str(device).startswith("cuda"):
        return torch.autocast("cuda", dtype=torch.float16)
    return contextlib.nullcontext()
