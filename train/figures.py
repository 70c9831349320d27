"""The one matplotlib set-up of every plot the project writes (training curves, evaluation curves, compare)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from scratchdet.models.files import atomic_write


def subplots(*args: Any, **kwargs: Any) -> tuple[Any, Any]:
    """`plt.subplots` on the Agg backend (figure, axes)."""
    import matplotlib

    matplotlib.use("Agg")  # chosen here, not at import: importing a plotting module must not change a user's backend
    import matplotlib.pyplot as plt

    return plt.subplots(*args, **kwargs)


def save(figure: Any, path: str | Path, dpi: int = 100) -> Path:
    """Write the figure atomically and close it, also when writing fails; returns the path."""
    import matplotlib.pyplot as plt

    path = Path(path)
    try:
        with atomic_write(path) as temporary:
            figure.savefig(temporary, dpi=dpi)
    finally:
        plt.close(figure)
    return path
