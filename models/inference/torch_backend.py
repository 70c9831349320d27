"""The PyTorch backend: an SSD module (in memory, or rebuilt from a checkpoint) with its own decoding
and NMS (models/postprocess.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from scratchdet.models.checkpoint import load_model
from scratchdet.models.detections import Detections
from scratchdet.models.postprocess import postprocess
from scratchdet.models.ssd import SSD

MAX_BATCH = 16  # images per forward pass: bounds activation memory, not a property of the model


class TorchBackend:
    name = "pytorch"

    def __init__(self, model: SSD, class_names: list[str], device: str | torch.device | None = None) -> None:
        if len(class_names) != model.config.num_classes - 1:
            raise ValueError(f"{len(class_names)} class names for a model of {model.config.num_classes - 1} "
                             f"classes (config '{model.config.name}')")
        self.device = torch.device(device or next(model.parameters()).device)
        self.model = model
        self.class_names = list(class_names)
        self.input_size = model.config.input_size
        self.postprocess = model.config.postprocess
        self.precision = "fp32"
        self.provider = str(self.device)
        self.max_batch = MAX_BATCH

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | None = None) -> TorchBackend:
        model, checkpoint = load_model(path)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        return cls(model.to(device), checkpoint["class_names"], device)

    @torch.no_grad()
    def infer(self, images: np.ndarray) -> list[Detections]:
        was_training = self.model.training
        self.model.eval()
        offsets, logits = self.model(torch.from_numpy(images).to(self.device))
        self.model.train(was_training)
        return postprocess(offsets, logits, self.model.priors, self.model.box_coder, self.postprocess,
                           self.input_size)

    def close(self) -> None:
        """Nothing to free: the module belongs to the caller."""
