"""Where a run trains: the process group under torchrun, the device, data-loading workers, cuDNN flags and
the autocast mode."""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import logging
import os
import sys
from datetime import timedelta
from typing import NoReturn

import torch
import torch.distributed as dist

from scratchdet.train.config import TrainConfig, amp_name

log = logging.getLogger(__name__)


def setup_distributed(timeout_s: float = TrainConfig.ddp_timeout_s) -> tuple[int, int, torch.device]:
    """(rank, world size, device); initialises the process group when run by torchrun.

    Rank 0 alone validates, checkpoints and plots while the other ranks wait in a barrier, as ultralytics'
    trainer does; NCCL's default 10-minute timeout would end the job on a VOC-sized val set, so the
    collectives get `timeout_s` (ultralytics: 3 h, engine/trainer.py `_setup_ddp`).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if torch.cuda.is_available():
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    # torchrun sets TORCHELASTIC_RUN_ID: one rank under it still runs DDP (NCCL on one GPU is checked that way)
    if (world > 1 or "TORCHELASTIC_RUN_ID" in os.environ) and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
        log.info("process group: %s, rank %d of %d, timeout %g s", backend, rank, world, timeout_s)
    return rank, world, device


def end_distributed() -> bool:
    """Destroy the process group, if any, once the last collective is done (`train` calls it on every path);
    returns whether there was one, and so whether the process must end with `leave_rank`.

    Left to the interpreter's exit, the gloo/NCCL threads and sockets are torn down in whatever order
    finalisation reaches them, while the other rank may already have closed its end; destroying the group
    here ends them in order, as torch.distributed's documentation asks of every program.
    """
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
        return True
    return False


def leave_rank(code: int) -> NoReturn:
    """End a process that ran a DDP process group now, without finalising the interpreter.

    DistributedDataParallel keeps its process group alive after `destroy_process_group` (torch 2.13: once a
    DDP wrapper has existed, even deleted and collected, the group's gloo threads outlive destroy and
    gc.collect, which end them without DDP).
    A gloo worker thread frees each finished collective's tensors itself, some time after the caller
    has seen it complete; when that comes after the main thread began finalising, its GIL acquire calls
    pthread_exit and the forced unwind aborts the rank ("terminate called without an active exception",
    SIGABRT). gdb on such a core: runLoop -> ~AsyncAllgatherWork -> TensorImpl::decref_pyobject ->
    take_gil -> PyThread_exit_thread, while the main thread is in Py_FinalizeEx (measured under load:
    docs/results/robustness.md). With every output flushed, os._exit skips finalisation.
    """
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def loader_workers(configured: int | None, device: torch.device) -> int:
    """Data-loading processes per rank: the config's, else min(8, CPUs per rank on this host) on CUDA
    (ultralytics' rule, data/build.py) and 1 on CPU, where workers compete with the training threads."""
    if configured is not None:
        return configured
    if device.type != "cuda":
        return 1
    ranks_here = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return min(8, max((os.cpu_count() or 1) // ranks_here, 1))


def configure_backends(config: TrainConfig, device: torch.device) -> None:
    """cuDNN autotuning on CUDA (`cudnn_benchmark`), or deterministic algorithms (`deterministic`)."""
    if config.deterministic:
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
        torch.use_deterministic_algorithms(True, warn_only=True)
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = config.cudnn_benchmark


# glibc mallopt parameters (malloc.h)
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4


def keep_freed_memory() -> bool:
    """Make glibc malloc keep freed memory for reuse instead of returning it to the kernel; True if it did.

    By default every activation and gradient over glibc's mmap threshold (at most 32 MB) is a fresh mmap
    each step, and the heap top is trimmed back: each step then page-faults its ~1 GB of tensors in again, and
    zeroing those pages is kernel time (bccd_cpu on one thread: 19% of the CPU time in sys, 8.7 M faults in
    two epochs). Served from the heap and never trimmed, the pages are reused; the process keeps its peak
    memory (which it reaches every step anyway). No-op off glibc (musl, macOS).
    """
    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name) if name else None
    if libc is None or not hasattr(libc, "mallopt") or not hasattr(libc, "gnu_get_libc_version"):
        return False
    return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1))


def amp_mode(config: TrainConfig, device: torch.device) -> str:
    """The autocast mode used on `device`: fp16 is CUDA only (off on CPU, logged); bf16 needs bf16 support.

    Raises:
        ValueError: bf16 asked on a GPU without bf16 (before Ampere).
    """
    if config.amp == "fp16" and device.type != "cuda":
        log.info("train.amp fp16 runs on CUDA only: training in fp32 on %s", device)
        return "off"
    if config.amp == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(f"train.amp bf16: {torch.cuda.get_device_name(device)} has no bf16; use amp: fp16")
    return amp_name(config.amp)  # a name already (TrainConfig.__post_init__), typed `str | bool` for the YAML


def params_digest(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for tensor in model.state_dict().values():
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
