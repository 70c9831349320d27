"""Backends turn a preprocessed batch into detections in input pixels (export.onnx_runner.RawDetections)."""
