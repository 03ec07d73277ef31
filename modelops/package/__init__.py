"""Packaging: a trained folder into a TorchServe archive (.mar), with its ONNX Runtime variant when it holds
its accuracy."""
