"""Progress bars that suit where the output goes: a tqdm bar on a terminal, log lines elsewhere.

A tqdm bar redraws with carriage returns many times a second; in a CI log or a file every redraw
becomes a line. When stderr is not a terminal, the same bar logs one plain line every `interval`
seconds and one when it closes. Top-level package: the stages import it, it imports none of them.
"""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Iterable

from tqdm import tqdm

log = logging.getLogger("scratchdet.progress")

LOG_INTERVAL_S = 30.0
LOG_FORMAT = "{desc}: {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}{postfix}]"


class _LogLines(io.TextIOBase):
    """A file for tqdm that turns each redraw into one log line (blank redraws dropped)."""

    def write(self, text: str) -> int:
        line = text.replace("\r", "").strip()
        if line:
            log.info("%s", line)
        return len(text)


class _LogBar(tqdm):
    """A bar whose postfix waits for the next periodic line: tqdm redraws on every set_postfix, which on a
    log would mean a line per step (and one showing a stale count, as tqdm updates it lazily)."""

    def set_postfix(self, ordered_dict=None, refresh: bool = True, **kwargs) -> None:
        super().set_postfix(ordered_dict, refresh=False, **kwargs)


def progress(iterable: Iterable | None = None, *, desc: str = "", total: int | None = None, disable: bool = False,
             leave: bool = False, interval: float = LOG_INTERVAL_S) -> tqdm:
    """tqdm(iterable) on a terminal; off one, a log line every `interval` seconds and at the end."""
    if sys.stderr.isatty():
        return tqdm(iterable, desc=desc, total=total, disable=disable, leave=leave)
    # leave=True: the closing line is the one a log reader wants; maxinterval keeps tqdm from
    # stretching its check interval past ours on slow loops.
    return _LogBar(iterable, desc=desc, total=total, disable=disable, leave=True, file=_LogLines(),
                mininterval=interval, maxinterval=max(interval, 1.0), bar_format=LOG_FORMAT, dynamic_ncols=False)
