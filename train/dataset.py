"""A torch Dataset over a DetectionSet: read, augment (training) or resize (evaluation), to tensors."""

from __future__ import annotations

import numpy as np
import torch

from scratchdet.train.data.images import read_record_image
from scratchdet.train.data.records import DetectionSet
from scratchdet.train.transforms import augment, resize


class DetectionDataset(torch.utils.data.Dataset):
    """Items are (image [3, S, S] float RGB 0-255, boxes [N, 4] x1, y1, x2, y2 normalised, labels [N], index).

    With `augment`, the randomness of item i in epoch e comes from seed (seed, e, i) alone, so results
    do not depend on worker count or on where a resumed run restarted.
    """

    def __init__(self, data: DetectionSet, input_size: int, augment: bool, seed: int = 0,
                 fill: tuple[float, ...] = (124, 116, 104), expand_max: float = 4.0) -> None:
        self.data = data
        self.input_size = input_size
        self.augment = augment
        self.seed = seed
        self.fill = fill
        self.expand_max = expand_max
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.data.records)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
        record = self.data.records[index]
        image = read_record_image(record)
        sample = (image, record.boxes, record.labels)
        if self.augment:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            image, boxes, labels = augment(sample, self.input_size, rng, self.fill, self.expand_max)
        else:
            image, boxes, labels = resize(sample, self.input_size)
        tensor = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float()
        normalised = torch.from_numpy(boxes / self.input_size).float().reshape(-1, 4)
        return tensor, normalised, torch.from_numpy(labels).long(), index


def collate(batch: list) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor], list[int]]:
    images, boxes, labels, indices = zip(*batch)
    return torch.stack(images), list(boxes), list(labels), list(indices)
