"""`scratchdet data` and `scratchdet train`."""

from __future__ import annotations

import argparse
import os
from dataclasses import replace

from torch.distributed.elastic.multiprocessing.errors import record

from scratchdet.arguments import non_negative_int, positive_float, positive_int
from scratchdet.models.config import ModelConfig
from scratchdet.train.config import AMP_MODES, RECIPES, TrainConfig, apply_recipe, load_config
from scratchdet.train.data.convert import FORMATS, convert_dataset
from scratchdet.train.data.load import dataset_layout, dataset_splits
from scratchdet.train.data.records import DatasetError
from scratchdet.train.data.summary import class_table
from scratchdet.train.data.synth import make_synthetic_dataset
from scratchdet.train.data.verdict import TRAINING_SPLITS, decoded_split, missing_training_splits
from scratchdet.train.device import end_distributed
from scratchdet.train.run_folder import (
    check_run_folder,
    clear_previous_run,
    recover_previous_run,
    restore_previous_run,
)
from scratchdet.train.trainer import Trainer


def configure(command: str, parser: argparse.ArgumentParser) -> None:
    """Adds the arguments of `scratchdet data` or `train`."""
    {"data": _data_arguments, "train": _train_arguments}[command](parser)


def _data_arguments(parser: argparse.ArgumentParser) -> None:
    data = parser.add_subparsers(dest="data_command", required=True)
    synth = data.add_parser("synth", help="write the deterministic synthetic COCO dataset",
                            formatter_class=parser.formatter_class)
    synth.add_argument("--out", required=True, help="dataset folder to create (annotations.json + images/)")
    synth.add_argument("--images", type=positive_int, default=200, help="number of images")
    synth.add_argument("--seed", type=non_negative_int, default=0,
                       help="random seed: the same seed gives the same dataset")
    synth.set_defaults(run=run_synth)
    check = data.add_parser("check", help="check every split of a dataset as training reads it (every image "
                            "decoded): all problems (file:line), class counts",
                            formatter_class=parser.formatter_class)
    check.add_argument("data", metavar="DATA", help=DATA_HELP)
    check.set_defaults(run=run_check)
    convert = data.add_parser("convert", help="write a dataset in the COCO or YOLO layout (the source is only read)",
                              formatter_class=parser.formatter_class)
    convert.add_argument("data", metavar="DATA", help=DATA_HELP)
    convert.add_argument("--to", required=True, choices=FORMATS, help="layout to write")
    convert.add_argument("--out", required=True, help="new (or empty) folder to write it to")
    convert.add_argument("--symlink", action="store_true",
                         help="symlink the images instead of copying them (no space used; a tool that rewrites an "
                              "image in place, as ultralytics does to repair a corrupt JPEG, then changes the source)")
    convert.set_defaults(run=run_convert)


DATA_HELP = ("dataset: a COCO folder (annotations.json + images/), a VOC root, a Roboflow COCO export "
             "(train/ valid/ test/ with _annotations.coco.json), or a YOLO data.yaml or the folder holding it")


def _train_arguments(train: argparse.ArgumentParser) -> None:
    train.add_argument("--config", required=True, help="config file or shipped config name")
    train.add_argument("--data", required=True, help=DATA_HELP)
    train.add_argument("--out", required=True, help="run folder, e.g. runs/bccd")
    train.add_argument("--epochs", type=positive_int, help="epochs to train (default: the config's)")
    train.add_argument("--batch", type=positive_int, help="images per step over all processes (default: the config's)")
    train.add_argument("--lr", type=positive_float, help="absolute learning rate (default: base_lr scaled by batch)")
    train.add_argument("--workers", type=non_negative_int, help="data-loading processes per rank (default: the "
                       "config's, else min(8, CPUs per rank) on CUDA and 1 on CPU)")
    train.add_argument("--amp", choices=AMP_MODES, help="mixed precision: fp16 (CUDA, with a GradScaler), bf16 "
                       "(no scaler) or off (default: the config's train.amp, fp16)")
    train.add_argument("--seed", type=non_negative_int, help="seed of the initialisation, data order and "
                       "augmentation (default: train.seed of the config)")
    train.add_argument("--recipe", choices=sorted(RECIPES), help="replace the config's loss, assignment, schedule "
                       "and augmentation settings by a named recipe (paper: ScratchDet/SSD as published)")
    train.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    train.add_argument("--exist-ok", action="store_true",
                       help="replace the run already in OUT (its weights, metrics, plots, export/ ...)")
    train.set_defaults(run=run_train)


def run_synth(args: argparse.Namespace) -> None:
    out = make_synthetic_dataset(args.out, args.images, args.seed)
    print(f"synthetic dataset: {out} ({args.images} images)")


def run_check(args: argparse.Namespace) -> int:
    print(f"{args.data}: {dataset_layout(args.data)} layout")
    splits = dataset_splits(args.data)
    sets, failed = {}, []
    for split in splits:
        try:
            sets[split] = decoded_split(args.data, split)
        except DatasetError as error:
            failed.append(split)
            print(f"[{split}] {error}")
            continue
        print(sets[split].report())
    if sets:
        print(class_table(sets))
    missing = missing_training_splits(splits)
    if missing:
        print(f"no {' or '.join(repr(s) for s in missing)} split: training loads {' and '.join(TRAINING_SPLITS)}")
    if failed:
        print(f"problems in split(s) {', '.join(failed)}: fix them and run `scratchdet data check` again")
    return 1 if failed or missing else 0


def run_convert(args: argparse.Namespace) -> None:
    sets = convert_dataset(args.data, args.to, args.out, args.symlink)
    for dataset in sets.values():
        print(dataset.report())
    images = sum(len(d.records) for d in sets.values())
    print(f"{args.to} dataset: {args.out} ({', '.join(sets)}; {images} images "
          f"{'symlinked' if args.symlink else 'copied'})")


# record: under torchrun a failing rank writes its traceback where the launcher's report (ChildFailedError) shows it
@record
def run_train(args: argparse.Namespace) -> None:
    if args.resume and args.exist_ok:
        raise ValueError("--resume continues the run in OUT and --exist-ok replaces it: choose one")
    if os.environ.get("RANK", "0") == "0":  # one process settles what a stopped --exist-ok left set aside
        recover_previous_run(args.out)
    # every input is checked (run folder, config, dataset, checkpoint) before --exist-ok sets anything aside
    previous = check_run_folder(args.out, args.resume, args.exist_ok)
    model_config, train_config = load_config(args.config)
    if args.recipe:
        train_config = apply_recipe(train_config, args.recipe)
    overrides = {"epochs": args.epochs, "batch_size": args.batch, "lr": args.lr, "workers": args.workers,
                 "seed": args.seed, "amp": args.amp}
    train_config = replace(train_config, **{k: v for k, v in overrides.items() if v is not None})
    try:
        _train(args, model_config, train_config, previous)
    finally:  # on every path: a rank leaving with its gloo group alive can abort at exit, hiding its own error
        args.exit_without_finalizing = end_distributed()


def _train(args: argparse.Namespace, model_config: ModelConfig, train_config: TrainConfig, previous: list[str]) -> None:
    """Train with the checked inputs; the run --exist-ok replaces is set aside here, and put back on a failure
    before the first checkpoint."""
    trainer = Trainer(model_config, train_config, args.data, args.out)
    if args.resume:
        trainer.resume()
    if trainer.rank == 0:
        trainer.previous_run = clear_previous_run(args.out, previous)
    try:
        out = trainer.fit()
    except BaseException:
        if trainer.previous_run is not None:  # failed before its first checkpoint: the replaced run comes back
            restore_previous_run(args.out, trainer.previous_run)
        raise
    if trainer.rank == 0:
        print(f"run folder: {out} (last.pt, best.pt, metrics.jsonl, *.png); best val mAP@0.5 {trainer.best_map:.4f}")
