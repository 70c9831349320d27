"""Range-checked argparse value types shared by every stage's cli.py: a bad value is refused by argparse
with the option's name and the accepted range, before any work starts.

    parser.add_argument("--epochs", type=positive_int)
    parser.add_argument("--conf", type=probability)

This module imports nothing from the stages (it sits above them all).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import TypeVar

Number = TypeVar("Number", int, float)


def _number(text: str, kind: Callable[[str], Number]) -> Number:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not {'an integer' if kind is int else 'a number'}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"'{text}' is not a finite number")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1 (epochs, batch sizes, image counts)."""
    value = _number(text, int)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive integer (>= 1)")
    return value


def non_negative_int(text: str) -> int:
    """An integer >= 0 (workers, seeds, class ids)."""
    value = _number(text, int)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative; expected an integer >= 0")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0 (learning rates)."""
    value = _number(text, float)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value} is not a positive number (> 0)")
    return value


def non_negative_float(text: str) -> float:
    """A finite number >= 0 (tolerances)."""
    value = _number(text, float)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative; expected a number >= 0")
    return value


def probability(text: str) -> float:
    """A number in [0, 1] (score and IoU thresholds); NaN and inf are refused."""
    value = _number(text, float)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{value} is outside [0, 1]")
    return value


def int_range(low: int, high: int) -> Callable[[str], int]:
    """An integer in [low, high] (opsets)."""

    def parse(text: str) -> int:
        value = _number(text, int)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is outside {low}..{high}")
        return value

    return parse


def positive_int_list(text: str) -> tuple[int, ...]:
    """Comma-separated integers >= 1, e.g. '1,8' (batch sizes)."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not parts:
        raise argparse.ArgumentTypeError(f"'{text}' names no value; expected e.g. 1,8")
    return tuple(positive_int(part) for part in parts)

