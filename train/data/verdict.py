"""The loader's verdict on a dataset: what `scratchdet data check` reports, so that it passes exactly what
training accepts.

Loading (`load_dataset`) checks annotations and image headers; training then decodes each image when its
batch comes (`read_record_image`) and fails there, in some epoch, on a truncated or corrupt file. The verdict
runs that same read on every image at once, and asks for the splits training loads.
"""

from __future__ import annotations

from pathlib import Path

from scratchdet.progress import progress
from scratchdet.train.data.images import ImageReadError, read_record_image
from scratchdet.train.data.load import load_dataset
from scratchdet.train.data.records import DatasetError, DetectionSet, Problems

# What `scratchdet train` loads (Trainer: load_dataset(data, "train") and (data, "val")).
TRAINING_SPLITS = ("train", "val")


def missing_training_splits(splits: list[str]) -> list[str]:
    """The splits training loads that `splits` (a dataset's, from `dataset_splits`) lacks."""
    return [s for s in TRAINING_SPLITS if s not in splits]


def decoded_split(data: str | Path, split: str) -> DetectionSet:
    """Split `split` of the dataset at `data`, loaded as training loads it and every image decoded as training
    decodes it.

    Raises:
        DatasetError: every problem loading finds, or else every image that does not decode (truncated,
            corrupt, special) or decodes to another size than annotated, one "file: problem" line each.
    """
    dataset = load_dataset(data, split)
    problems = Problems(dataset.root)
    for record in progress(dataset.records, desc=f"decoding {split}", total=len(dataset.records)):
        try:
            read_record_image(record)
        except (ImageReadError, DatasetError) as error:
            problems.add(record.path, str(error).removeprefix(f"{record.path}: "))
    problems.raise_if_any()
    return dataset
