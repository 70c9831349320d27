"""Backends of the runtime-only formats (TensorRT engines); PyTorch is models.torch_backend, ONNX Runtime
export.onnx_backend. Each implements models.detections.Backend."""
