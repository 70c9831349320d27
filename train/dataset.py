"""A torch Dataset over a DetectionSet: read, augment (training) or resize (evaluation), to tensors."""

from __future__ import annotations

import numpy as np
import torch

from scratchdet.train.data.images import read_record_image
from scratchdet.train.data.records import DetectionSet
from scratchdet.train.mosaic import mosaic
from scratchdet.train.transforms import Sample, augment, resize


class DetectionDataset(torch.utils.data.Dataset):
    """Items are (image [3, S, S] float RGB 0-255, boxes [N, 4] x1, y1, x2, y2 normalised, labels [N], index).

    With `augment`, the randomness of item i in epoch e comes from seed (seed, e, i) alone, so results
    do not depend on worker count or on where a resumed run restarted. With probability `mosaic` an augmented
    item is a mosaic of its image and three others drawn from that seed (train/mosaic.py).
    """

    def __init__(self, data: DetectionSet, input_size: int, augment: bool, seed: int = 0,
                 fill: tuple[float, ...] = (124, 116, 104), expand_max: float = 4.0, mosaic: float = 0.0) -> None:
        self.data = data
        self.input_size = input_size
        self.augment = augment
        self.seed = seed
        self.fill = fill
        self.expand_max = expand_max
        self.mosaic = mosaic
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.data.records)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
        sample = self.sample(index)
        if self.augment:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            expand_max = self.expand_max
            if self.mosaic and rng.random() < self.mosaic:  # no draw without mosaic: the old items stay the same
                others = [self.sample(int(i)) for i in rng.integers(len(self), size=3)]
                sample = mosaic([sample, *others], self.input_size, rng, self.fill)
                expand_max = 1.0  # the canvas already is a 2x zoom-out
            image, boxes, labels = augment(sample, self.input_size, rng, self.fill, expand_max)
        else:
            image, boxes, labels = resize(sample, self.input_size)
        tensor = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float()
        normalised = torch.from_numpy(boxes / self.input_size).float().reshape(-1, 4)
        return tensor, normalised, torch.from_numpy(labels).long(), index

    def sample(self, index: int) -> Sample:
        """Image `index` as read (HxWx3 uint8 RGB), its boxes [N, 4] x1, y1, x2, y2 in pixels and labels [N]."""
        record = self.data.records[index]
        return read_record_image(record), record.boxes, record.labels


def collate(batch: list) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor], list[int]]:
    images, boxes, labels, indices = zip(*batch)
    return torch.stack(images), list(boxes), list(labels), list(indices)
