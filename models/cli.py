"""`scratchdet info`: what a config builds."""

from __future__ import annotations

import argparse

from scratchdet.models.config import load_model_config
from scratchdet.models.info import model_info
from scratchdet.models.ssd import SSD


def configure(command: str, parser: argparse.ArgumentParser) -> None:
    """Adds the arguments of `scratchdet info`."""
    parser.add_argument("--config", required=True, help="config file or shipped config name")
    parser.set_defaults(run=run_info)


def run_info(args: argparse.Namespace) -> None:
    info = model_info(SSD(load_model_config(args.config)))
    maps = ", ".join(f"{h}x{w}" for h, w in info.feature_sizes)
    print(f"config        {info.name} ({info.backbone}, input {info.input_size}, {info.num_classes} classes)")
    print(f"parameters    {info.parameters / 1e6:.2f} M")
    print(f"GFLOPs        {info.gflops:.2f} (network only, batch 1, multiply-add = 2 FLOPs)")
    print(f"feature maps  {maps}")
    print(f"priors        {info.num_priors}")
