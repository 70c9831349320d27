"""`scratchdet data` and `scratchdet train`."""

from __future__ import annotations

import argparse
import os
from dataclasses import replace

from scratchdet.train.config import AMP_MODES, load_config
from scratchdet.train.data.synth import make_synthetic_dataset
from scratchdet.train.run_folder import prepare_run_folder
from scratchdet.train.trainer import Trainer

from scratchdet.arguments import non_negative_int, positive_float, positive_int


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


def _train_arguments(train: argparse.ArgumentParser) -> None:
    train.add_argument("--config", required=True, help="config file or shipped config name")
    train.add_argument("--data", required=True, help="dataset folder (COCO layout or VOC root)")
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
    train.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    train.add_argument("--exist-ok", action="store_true",
                       help="replace the run already in OUT (its weights, metrics, plots, export/ ...)")
    train.set_defaults(run=run_train)


def run_synth(args: argparse.Namespace) -> None:
    out = make_synthetic_dataset(args.out, args.images, args.seed)
    print(f"synthetic dataset: {out} ({args.images} images)")


def run_train(args: argparse.Namespace) -> None:
    if args.resume and args.exist_ok:
        raise ValueError("--resume continues the run in OUT and --exist-ok replaces it: choose one")
    prepare_run_folder(args.out, args.resume, args.exist_ok, rank=int(os.environ.get("RANK", "0")))
    model_config, train_config = load_config(args.config)
    overrides = {"epochs": args.epochs, "batch_size": args.batch, "lr": args.lr, "workers": args.workers,
                 "seed": args.seed, "amp": args.amp}
    train_config = replace(train_config, **{k: v for k, v in overrides.items() if v is not None})
    trainer = Trainer(model_config, train_config, args.data, args.out)
    if args.resume:
        trainer.resume()
    out = trainer.fit()
    if trainer.rank == 0:
        print(f"run folder: {out} (last.pt, best.pt, metrics.jsonl, *.png); best val mAP@0.5 {trainer.best_map:.4f}")
