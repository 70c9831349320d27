"""Run a PyTorch SSD over a dataset split and score it."""

from __future__ import annotations

import torch
from scratchdet.models.postprocess import NMSConfig, postprocess
from scratchdet.models.ssd import SSD
from scratchdet.train.data.records import DetectionSet
from scratchdet.train.dataset import DetectionDataset, collate
from scratchdet.train.evaluate import EvalResult, ImageDetections, evaluate
from tqdm import tqdm


@torch.no_grad()
def predict(model: SSD, data: DetectionSet, nms: NMSConfig | None = None, batch_size: int = 16,
            workers: int = 0) -> list[ImageDetections]:
    """Detections for every image of `data`, in original-image pixels."""
    nms = nms or NMSConfig()
    model.eval()
    device = next(model.parameters()).device
    dataset = DetectionDataset(data, model.config.input_size, augment=False)
    loader = torch.utils.data.DataLoader(dataset, batch_size, num_workers=workers, collate_fn=collate)
    results: list[ImageDetections] = []
    for images, _, _, indices in tqdm(loader, desc="val", leave=False):
        offsets, logits = model(images.to(device))
        for index, dets in zip(indices, postprocess(offsets, logits, model.priors, model.box_coder, nms)):
            record = data.records[index]
            scale = torch.tensor([record.width, record.height] * 2, dtype=torch.float32)
            boxes = torch.min((dets.boxes.cpu() * scale).clamp(min=0), scale)  # inside the image, as the runtime
            results.append(ImageDetections(boxes.numpy(), dets.scores.cpu().numpy(), dets.labels.cpu().numpy()))
    return results


def validate(model: SSD, data: DetectionSet, nms: NMSConfig | None = None, batch_size: int = 16) -> EvalResult:
    """VOC and COCO metrics of `model` on `data`."""
    return evaluate(data.records, predict(model, data, nms, batch_size), data.class_names)
