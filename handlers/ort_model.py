"""The optimised serving variants: an ONNX Runtime session called like the torch module it was exported from.

`modelops.package.onnx` writes `model.onnx` into the archive at package time (ONNX Runtime fp32 with fused
attention/normalisation kernels, or its int8 dynamic quantisation); the handler keeps its torch pre- and
post-processing and swaps only the forward pass, so both runtimes answer in the same shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import onnxruntime as ort
import torch

ONNX_FILE = "model.onnx"


class OrtModel:
    def __init__(self, path: Path, threads: int) -> None:
        options = ort.SessionOptions()
        # Same thread budget as a torch worker: TorchServe scales with workers, each using `threads` cores.
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_names = [node.name for node in self.session.get_inputs()]

    def __call__(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Named input tensors (extra names, such as `token_type_ids`, are ignored) -> the first output."""
        feeds = {name: inputs[name].contiguous().numpy() for name in self.input_names}
        return torch.from_numpy(self.session.run(None, feeds)[0])
