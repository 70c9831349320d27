"""What a resume restores beyond the state dicts: the random generators (CPU and every CUDA device), and
the GradScaler state, which a run saved with fp16 off does not have."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

log = logging.getLogger(__name__)


def rng_state() -> dict:
    """The generators a resume must restore: torch's CPU one, and every CUDA device's where CUDA is."""
    state: dict[str, torch.Tensor | list[torch.Tensor]] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict, source: Path) -> None:
    """Set the generators from a checkpoint's `rng_state()`; a CPU run's checkpoint resumes on a GPU."""
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if not torch.cuda.is_available():
        if cuda:
            log.info("%s: CUDA RNG state saved on a GPU host; no CUDA here, not restored", source)
        return
    if cuda is None:
        log.info("%s: saved without CUDA (a CPU run): the CUDA generators keep this run's seed", source)
        return
    count = torch.cuda.device_count()
    if len(cuda) != count:
        log.warning("%s: CUDA RNG state of %d device(s), this host has %d: restoring the first %d", source,
                    len(cuda), count, min(len(cuda), count))
    torch.cuda.set_rng_state_all(cuda[:count])


def resume_scaler(scaler: torch.amp.GradScaler, state: dict, path: Path) -> None:
    """A run saved with fp16 off (a CPU run, amp off or bf16) holds an empty scaler state, which
    GradScaler.load_state_dict refuses ("The source state dict is empty"): the scaler starts afresh."""
    if state or not scaler.is_enabled():
        scaler.load_state_dict(state)  # a disabled scaler ignores it
        return
    log.info("%s: no GradScaler state (saved with fp16 AMP off): the scaler starts at scale %g", path,
             scaler.get_scale())
