"""ScratchDet Edge: an SSD trained from scratch, taken to ONNX, INT8 and TensorRT engines with speed and accuracy gates.

The pipeline's stages are subpackages: `scratchdet.models`, `.train`, `.export`, `.runtime`, `.benchmarks`
(the folders models/, train/, export/, runtime/, benchmarks/ of the repository). The command line is
`scratchdet` (or `python -m scratchdet`), defined in `scratchdet.cli`.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("scratchdet-edge")
except PackageNotFoundError:  # a source tree that was not pip-installed
    __version__ = "0+unknown"
