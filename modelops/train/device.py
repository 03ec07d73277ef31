"""Where training runs: a CUDA device when one is present (the `gpu` recipes are sized for it), else the CPU,
unchanged. Serving always runs on the CPU workers TorchServe starts."""

from __future__ import annotations

import torch


def training_device() -> str:
    """`cuda` if torch sees a GPU, else `cpu`."""
    return "cuda" if torch.cuda.is_available() else "cpu"
