"""SSD default boxes ("priors"), generated from the real feature-map sizes.

Source: SSD (Liu et al., ECCV 2016, Sec. 2.2) and caffe/ssd_pascal.py of ScratchDet: per cell a 1:1 box
of `min_size`, a 1:1 box of sqrt(min_size * max_size), then min_size*sqrt(r) x min_size/sqrt(r) for each
aspect ratio r and its flip 1/r; centres at (j + 0.5) * step.
"""

from __future__ import annotations

import math

import torch

from scratchdet.models.config import PriorConfig


class Priors:
    """Default boxes of an SSD head; box format cx, cy, w, h normalised to [0, 1]."""

    def __init__(self, config: PriorConfig) -> None:
        levels = len(config.min_sizes)
        lengths = {len(config.max_sizes), len(config.aspect_ratios)}
        if config.steps is not None:
            lengths.add(len(config.steps))
        if lengths != {levels}:
            raise ValueError(
                "priors: min_sizes, max_sizes, aspect_ratios and steps need one entry per level, "
                f"got {len(config.min_sizes)}, {len(config.max_sizes)}, {len(config.aspect_ratios)}, "
                f"{len(config.steps) if config.steps else '-'}"
            )
        self.config = config

    @property
    def num_levels(self) -> int:
        return len(self.config.min_sizes)

    def num_anchors_per_location(self) -> list[int]:
        """Boxes per cell at each level: two 1:1 boxes plus r and 1/r for each aspect ratio."""
        return [2 + 2 * len(ratios) for ratios in self.config.aspect_ratios]

    def level_sizes(self, feature_sizes: list[tuple[int, int]]) -> list[int]:
        """Priors per level for maps of `feature_sizes` [(H, W), ...], in the order `generate` lists them."""
        return [h * w * a for (h, w), a in zip(feature_sizes, self.num_anchors_per_location())]

    def generate(self, input_size: int, feature_sizes: list[tuple[int, int]]) -> torch.Tensor:
        """Priors for maps of `feature_sizes` [(H, W), ...]; returns [P, 4] cx, cy, w, h normalised.

        Order matches the head's reshape: level, then row, column, then anchor.
        """
        if len(feature_sizes) != self.num_levels:
            raise ValueError(
                f"priors: the model has {len(feature_sizes)} detection levels "
                f"{feature_sizes} but the prior config describes {self.num_levels}"
            )
        boxes = []
        for level, (height, width) in enumerate(feature_sizes):
            step_y, step_x = self._step(level, input_size, height, width)
            shapes = self._cell_shapes(level) / input_size  # [A, 2] w, h
            ys = (torch.arange(height, dtype=torch.float64) + 0.5) * step_y / input_size
            xs = (torch.arange(width, dtype=torch.float64) + 0.5) * step_x / input_size
            cy, cx = torch.meshgrid(ys, xs, indexing="ij")
            centres = torch.stack([cx, cy], dim=-1).reshape(-1, 1, 2)  # [H*W, 1, 2]
            centres = centres.expand(-1, shapes.shape[0], 2)  # [H*W, A, 2]
            sizes = shapes.unsqueeze(0).expand_as(centres)
            boxes.append(torch.cat([centres, sizes], dim=-1).reshape(-1, 4))
        return torch.cat(boxes).float()

    def _step(self, level: int, input_size: int, height: int, width: int) -> tuple[float, float]:
        if self.config.steps is not None:
            return float(self.config.steps[level]), float(self.config.steps[level])
        return input_size / height, input_size / width

    def _cell_shapes(self, level: int) -> torch.Tensor:
        """[A, 2] widths and heights of one cell's boxes, in input pixels."""
        small, large = self.config.min_sizes[level], self.config.max_sizes[level]
        shapes = [(small, small), (math.sqrt(small * large),) * 2]
        for ratio in self.config.aspect_ratios[level]:
            root = math.sqrt(ratio)
            shapes += [(small * root, small / root), (small / root, small * root)]
        return torch.tensor(shapes, dtype=torch.float64)
