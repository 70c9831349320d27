"""Inference: one Detector API over PyTorch checkpoints, ONNX models and TensorRT engines."""
