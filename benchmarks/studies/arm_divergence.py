"""Where an INT8 model's results on an emulated ARM core first differ from this host's, layer by layer.

    python -m scratchdet.benchmarks.studies.arm_divergence RUN/export/model-int8-ort.onnx --data ../shared/datasets/bccd

Every quantised tensor (each QuantizeLinear output, i.e. what ONNX Runtime's fused INT8 kernels write) is
compared between the host and the emulated core on a few val images; the first one that differs names the
kernel whose arithmetic differs between the two ISAs. Needs the set-up of `make test-arm`.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import onnx

from scratchdet.benchmarks.arm_emulation import CORES, run_emulated
from scratchdet.benchmarks.portability import TensorDifference, tensor_differences, with_quantized_outputs
from scratchdet.models.contract import read_metadata
from scratchdet.models.inference.onnxruntime_backend import create_session
from scratchdet.train.data.load import load_dataset
from scratchdet.train.evaluate import dataset_batch


def layer_divergence(model_path: str | Path, data: str | Path, core: str, images: int = 4) -> list[TensorDifference]:
    """Per quantised tensor in graph order: host vs emulated `core` on `images` val images."""
    model = onnx.load(str(model_path))
    debug, names = with_quantized_outputs(model)
    batch = dataset_batch(load_dataset(data, "val").records[:images], read_metadata(model)["input_size"])
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "debug.onnx"
        onnx.save(debug, str(path))
        session = create_session(path, threads=1)
        host = dict(zip(names, session.run(names, {"images": batch})))
        other = run_emulated(path, batch, core, all_outputs=True)
    return tensor_differences(host, other, names)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="an INT8 Q/DQ ONNX from `scratchdet quantize`")
    parser.add_argument("--data", required=True, help="dataset whose val images are run")
    parser.add_argument("--core", default="cortex-a76", choices=list(CORES))
    parser.add_argument("--images", type=int, default=4)
    args = parser.parse_args(argv)
    differences = layer_divergence(args.model, args.data, args.core, args.images)
    first = next((d for d in differences if d.differing), None)
    for d in differences:
        print(f"{d.differing:8d}/{d.size:<9d} max {d.max_difference} steps  {d.name}")
    print(f"first divergent tensor: {first.name}" if first else "every quantised tensor is bit-identical")


if __name__ == "__main__":
    main()
