"""PyTorch checkpoints (.pt): the model with its own decode + NMS (models.postprocess)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from scratchdet.export.onnx_runner import RawDetections
from scratchdet.models.checkpoint import load_model
from scratchdet.models.postprocess import NMSConfig, postprocess


class TorchBackend:
    name = "pytorch"

    def __init__(self, path: str | Path, device: str | None = None, nms: NMSConfig | None = None) -> None:
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        model, checkpoint = load_model(path)
        self.model = model.to(self.device).eval()
        self.nms = nms or NMSConfig()
        self.class_names: list[str] = checkpoint["class_names"]
        self.input_size = model.config.input_size
        self.precision = "fp32"
        self.provider = str(self.device)
        self.postprocess_ms = 0.0  # of the last call: decode + NMS, which here run outside the network

    @torch.no_grad()
    def infer(self, batch: np.ndarray) -> list[RawDetections]:
        offsets, logits = self.model(torch.from_numpy(batch).to(self.device))
        started = time.perf_counter()
        detections = postprocess(offsets, logits, self.model.priors, self.model.box_coder, self.nms)
        results = [RawDetections(d.boxes.cpu().numpy() * self.input_size, d.scores.cpu().numpy(),
                                 d.labels.cpu().numpy() - 1) for d in detections]
        self.postprocess_ms = (time.perf_counter() - started) * 1e3
        return results
