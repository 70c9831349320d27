"""Prior shapes fitted to the training boxes (`train.fit_priors`): YOLO's autoanchor on SSD's prior parameters.

The training boxes' (w, h) at input scale (plain resize, as training and evaluation see them) are clustered by
k-means with 1 - IoU distance (YOLO9000, Sec. 2 "Dimension Clusters"), one cluster per detection level; sorted by
area, the smallest cluster's boxes go to the finest level, whose min size, max size and aspect ratios are fitted
to them by shape. That start and the configured priors are each refined by coordinate search on the mean IoU of
every box with its best prior, positioned on the real grids (SSD matches by that IoU, so a cell's stride counts),
and the better is kept. Each level keeps its number of shapes, so the head is unchanged. The fit replaces the
configured priors only when it covers the boxes better, as ultralytics' check_anchors keeps the better of old
and new.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch

from scratchdet.models.config import ModelConfig, PriorConfig
from scratchdet.models.priors import Priors
from scratchdet.models.ssd import SSD
from scratchdet.train.data.records import DetectionSet

log = logging.getLogger(__name__)

KMEANS_ITERATIONS = 50
SEARCH_STEPS = (0.4, 0.2, 0.1, 0.05, 0.02, 0.01)  # log-space steps of the coordinate search, coarse to fine


@dataclass(frozen=True)
class PriorFit:
    """How well priors cover the boxes: their mean best-prior IoU, the share with one at IoU >= 0.5, and the
    mean over classes of each class's mean best-prior IoU (what the fit maximises: mAP averages classes)."""

    mean_iou: float
    recall50: float
    class_mean_iou: float

    def __str__(self) -> str:
        return (
            f"mean best-prior IoU {self.mean_iou:.3f}, recall at IoU 0.5 {self.recall50:.3f}, "
            f"class-averaged mean best-prior IoU {self.class_mean_iou:.3f}"
        )


def training_boxes(data: DetectionSet, input_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Every box of `data` [N, 4] x1, y1, x2, y2 in pixels of the input_size x input_size resized image, and
    its weight [N]: 1 / (boxes of its class x classes present), so that each class weighs the same in total."""
    scaled = [
        r.boxes * np.array([input_size / r.width, input_size / r.height] * 2, dtype=np.float32)
        for r in data.records
        if len(r.boxes)
    ]
    if not scaled:
        raise ValueError(f"{data.root} [{data.split}]: train.fit_priors needs boxes, the split has none")
    labels = np.concatenate([r.labels for r in data.records if len(r.boxes)])
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    return np.concatenate(scaled).astype(np.float64), 1.0 / (counts[inverse] * len(counts))


def shape_iou(sizes: np.ndarray, shapes: np.ndarray) -> np.ndarray:
    """IoU [N, K] of centred boxes: sizes [N, 2] and shapes [K, 2], both (w, h)."""
    inter = np.minimum(sizes[:, None, 0], shapes[None, :, 0]) * np.minimum(sizes[:, None, 1], shapes[None, :, 1])
    union = sizes.prod(1)[:, None] + shapes.prod(1)[None, :] - inter
    return inter / np.maximum(union, 1e-9)


def kmeans_levels(sizes: np.ndarray, levels: int) -> np.ndarray:
    """Level [N] of each box (w, h): its nearest of `levels` k-means centres (1 - IoU), centres ranked by area.

    Deterministic: the centres start at the boxes whose areas sit at evenly spaced quantiles.
    """
    by_area = np.argsort(sizes.prod(1), kind="stable")
    start = by_area[((np.arange(levels) + 0.5) * len(sizes) / levels).astype(int)]
    centres = sizes[start].copy()
    for _ in range(KMEANS_ITERATIONS):
        nearest = shape_iou(sizes, centres).argmax(1)
        moved = np.array(
            [np.median(sizes[nearest == k], 0) if np.any(nearest == k) else centres[k] for k in range(levels)]
        )
        if np.allclose(moved, centres):
            break
        centres = moved
    rank = np.argsort(np.argsort(centres.prod(1), kind="stable"), kind="stable")  # centre -> level
    return rank[shape_iou(sizes, centres).argmax(1)]


def search(params: np.ndarray, score: Callable[[np.ndarray], float], ratio: np.ndarray) -> np.ndarray:
    """Coordinate search: step each parameter up and down, keep what raises `score`, refine the step.

    `params` are logarithms of sizes and ratios; `ratio` [len(params)] marks the ratios, kept >= 1 (as r < 1
    only repeats 1/r).
    """
    best = score(params)
    for step in SEARCH_STEPS:
        improved = True
        while improved:
            improved = False
            for index in range(len(params)):
                for sign in (1.0, -1.0):
                    trial = params.copy()
                    trial[index] += sign * step
                    if ratio[index] and trial[index] < 0:
                        continue
                    value = score(trial)
                    if value > best + 1e-9:
                        params, best, improved = trial, value, True
    return params


def pack(config: PriorConfig) -> tuple[np.ndarray, np.ndarray]:
    """Logarithms of every level's min size, max size and aspect ratios, and which of them are ratios."""
    values: list[float] = []
    ratio: list[bool] = []
    for small, large, ratios in zip(config.min_sizes, config.max_sizes, config.aspect_ratios):
        values += [small, large, *ratios]
        ratio += [False, False] + [True] * len(ratios)
    return np.log(np.array(values, dtype=np.float64)), np.array(ratio)


def unpack(params: np.ndarray, config: PriorConfig, digits: int | None = None) -> PriorConfig:
    """`config` with the sizes and ratios of `params` (as `pack` lays them out), rounded to `digits` if given."""
    values = [float(v) if digits is None else round(float(v), digits) for v in np.exp(params)]
    mins, maxes, ratios, at = [], [], [], 0
    for level_ratios in config.aspect_ratios:
        mins.append(values[at])
        maxes.append(values[at + 1])
        ratios.append(tuple(values[at + 2 : at + 2 + len(level_ratios)]))
        at += 2 + len(level_ratios)
    return replace(config, min_sizes=tuple(mins), max_sizes=tuple(maxes), aspect_ratios=tuple(ratios))


def cell_shapes(config: PriorConfig, input_size: int) -> np.ndarray:
    """[A, 2] (w, h) in pixels of one cell's priors of the single-level `config`, as models/priors.py makes them."""
    return Priors(config).generate(input_size, [(1, 1)])[:, 2:].double().numpy() * input_size


def fit_level(sizes: np.ndarray, ratio_count: int, input_size: int) -> PriorConfig:
    """One level (min size, max size, `ratio_count` ratios) whose shapes best cover the centred `sizes` [N, 2]."""
    scales = np.sqrt(sizes.prod(1))
    start = [np.percentile(scales, 25), np.percentile(scales, 75), *(2.0 + k for k in range(ratio_count))]
    level = PriorConfig(min_sizes=(start[0],), max_sizes=(start[1],), aspect_ratios=(tuple(start[2:]),), steps=None)
    params, ratio = pack(level)

    def coverage(p: np.ndarray) -> float:
        return float(shape_iou(sizes, cell_shapes(unpack(p, level), input_size)).max(1).mean())

    return unpack(search(params, coverage, ratio), level)


def kmeans_start(boxes: np.ndarray, config: PriorConfig, input_size: int) -> PriorConfig:
    """`config` with every level fitted to its k-means cluster of `boxes` [N, 4] (input pixels), by shape alone.

    A level whose cluster is empty keeps its configured shapes.
    """
    sizes = np.maximum(boxes[:, 2:] - boxes[:, :2], 1e-3)
    levels = kmeans_levels(sizes, len(config.min_sizes))
    mins, maxes, ratios = list(config.min_sizes), list(config.max_sizes), list(config.aspect_ratios)
    for level in range(len(mins)):
        members = sizes[levels == level]
        if len(members):
            fitted = fit_level(members, len(ratios[level]), input_size)
            mins[level], maxes[level], ratios[level] = fitted.min_sizes[0], fitted.max_sizes[0], fitted.aspect_ratios[0]
    return replace(config, min_sizes=tuple(mins), max_sizes=tuple(maxes), aspect_ratios=tuple(ratios))


def level_grids(config: PriorConfig, input_size: int, feature_sizes: list[tuple[int, int]]) -> list[np.ndarray]:
    """The positioned priors of `config`, one [H, W, A, 4] (cx, cy, w, h in input pixels) per level."""
    generator = Priors(config)
    priors = generator.generate(input_size, feature_sizes).double().numpy() * input_size  # [P, 4]
    ends = np.cumsum(generator.level_sizes(feature_sizes))[:-1]
    return [part.reshape(h, w, -1, 4) for part, (h, w) in zip(np.split(priors, ends), feature_sizes)]


def nearest_cells(boxes: np.ndarray, grids: list[np.ndarray]) -> list[np.ndarray]:
    """Per level the centre [N, 2] of the cell nearest each box's centre (boxes [N, 4] in input pixels).

    Only that cell can hold a box's best prior of the level: for a fixed shape the overlap in x and in y
    each only shrinks with the centre distance.
    """
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    cells = []
    for grid in grids:
        xs, ys = grid[0, :, 0, 0], grid[:, 0, 0, 1]
        column = np.abs(centres[:, None, 0] - xs[None]).argmin(1)
        row = np.abs(centres[:, None, 1] - ys[None]).argmin(1)
        cells.append(np.stack([xs[column], ys[row]], axis=1))
    return cells


def best_iou_at(boxes: np.ndarray, cells: list[np.ndarray], grids: list[np.ndarray]) -> np.ndarray:
    """[N] IoU of each box [N, 4] with its best prior: the shapes of each level's grid at the box's `cells`."""
    best = np.zeros(len(boxes))
    for centre, grid in zip(cells, grids):
        half = grid[0, 0, :, 2:][None] / 2  # [1, A, 2]
        low, high = centre[:, None] - half, centre[:, None] + half  # [N, A, 2]
        overlap = np.clip(np.minimum(boxes[:, None, 2:], high) - np.maximum(boxes[:, None, :2], low), 0, None)
        inter = overlap.prod(-1)  # [N, A]
        union = (boxes[:, 2:] - boxes[:, :2]).prod(-1)[:, None] + (2 * half).prod(-1) - inter
        best = np.maximum(best, (inter / np.maximum(union, 1e-9)).max(1))
    return best


def best_prior_iou(
    boxes: np.ndarray, config: PriorConfig, input_size: int, feature_sizes: list[tuple[int, int]]
) -> np.ndarray:
    """[N] IoU of each box [N, 4] (input pixels) with its best positioned prior of `config` on `feature_sizes`."""
    grids = level_grids(config, input_size, feature_sizes)
    return best_iou_at(boxes, nearest_cells(boxes, grids), grids)


def prior_fit(
    boxes: np.ndarray, weights: np.ndarray, config: PriorConfig, input_size: int, feature_sizes: list[tuple[int, int]]
) -> PriorFit:
    """Coverage of `boxes` [N, 4] (input pixels, class `weights` [N]) by the priors of `config` on `feature_sizes`."""
    best = best_prior_iou(boxes, config, input_size, feature_sizes)
    return PriorFit(float(best.mean()), float((best >= 0.5).mean()), float(best @ weights))


def fit_prior_config(
    boxes: np.ndarray, weights: np.ndarray, config: PriorConfig, input_size: int, feature_sizes: list[tuple[int, int]]
) -> PriorConfig:
    """Priors with `config`'s shape counts that cover `boxes` [N, 4] (input pixels) best, positioned.

    Two starts, the configured priors and the k-means fit, each refined by coordinate search on the
    `weights`-weighted mean best-prior IoU; the better result is returned, its sizes and ratios rounded to 0.01.
    """
    cells = nearest_cells(boxes, level_grids(config, input_size, feature_sizes))  # the sizes do not move them

    def coverage(p: np.ndarray) -> float:
        grids = level_grids(unpack(p, config), input_size, feature_sizes)
        return float(best_iou_at(boxes, cells, grids) @ weights)

    results = []
    for start in (config, kmeans_start(boxes, config, input_size)):
        params, ratio = pack(start)
        fitted = search(params, coverage, ratio)
        results.append((coverage(fitted), fitted))
    return unpack(max(results, key=lambda result: result[0])[1], config, digits=2)


def fitted_model_config(config: ModelConfig, data: DetectionSet) -> ModelConfig:
    """`config` with priors fitted to the boxes of `data`, or unchanged when the fit covers them worse.

    Logs the coverage before and after. The torch RNG is left as it was (the model is built from it next).
    """
    with torch.random.fork_rng():
        feature_sizes = SSD(config).feature_sizes
    boxes, weights = training_boxes(data, config.input_size)
    fitted = fit_prior_config(boxes, weights, config.priors, config.input_size, feature_sizes)
    before = prior_fit(boxes, weights, config.priors, config.input_size, feature_sizes)
    after = prior_fit(boxes, weights, fitted, config.input_size, feature_sizes)
    log.info("train.fit_priors over %d training boxes: configured priors %s; fitted %s", len(boxes), before, after)
    if after.class_mean_iou <= before.class_mean_iou:
        log.info("train.fit_priors: the configured priors cover the boxes better; kept")
        return config
    log.info(
        "train.fit_priors: min_sizes %s, max_sizes %s, aspect_ratios %s",
        list(fitted.min_sizes),
        list(fitted.max_sizes),
        [list(r) for r in fitted.aspect_ratios],
    )
    return replace(config, priors=fitted)
