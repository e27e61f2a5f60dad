"""Small storage helpers every layer uses: atomic file writes and chunked statistics of large arrays.

A file written through :func:`atomic_path` appears complete or not at all, so an interrupted run (a killed
worker, a full disk) never leaves a file that looks finished. :func:`chunked_moments` reads memory-mapped
arrays a block of rows at a time, so the memory it needs does not grow with the number of subjects.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

__all__ = ["atomic_path", "atomic_write_text", "chunked_moments"]


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; it replaces ``path`` when the block ends without error and
    is removed otherwise.

    The temporary name keeps ``path``'s suffix (``model.partial-<pid>.pt``), so writers that add a suffix
    (``np.save``, ``np.savez``) do not rename it.

    Examples
    --------
    >>> with atomic_path("table.csv") as partial:           # doctest: +SKIP
    ...     frame.to_csv(partial, index=False)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.stem}.partial-{os.getpid()}{path.suffix}")
    try:
        yield partial
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_path`) and return the path."""
    with atomic_path(path) as partial:
        partial.write_text(text)
    return Path(path)


def chunked_moments(array: np.ndarray, rows: np.ndarray | None = None, *, chunk: int = 256,
                    axis: int | None = None) -> tuple[np.ndarray | float, np.ndarray | float, int]:
    """Mean and SD (population, in float64) of ``array[rows]``, reading ``chunk`` rows at a time in sorted order.

    Parameters
    ----------
    array : ndarray
        Rows first, e.g. a memory-mapped (subjects, H, W) image set.
    rows : ndarray of int, optional
        Rows to include (default: all).
    axis : {None, 0}
        ``None``: one mean and SD over every value; ``0``: per element of a row (e.g. a mean image).

    Returns
    -------
    mean, sd, count
        ``count`` is the number of rows read.

    Raises
    ------
    ValueError
        When there are no rows.
    """
    if axis not in (None, 0):
        raise ValueError(f"axis must be None or 0, not {axis!r}")
    rows = np.arange(len(array)) if rows is None else np.sort(np.asarray(rows))
    if len(rows) == 0:
        raise ValueError("no rows to take the mean and SD of")
    total: np.ndarray | float = 0.0
    total_sq: np.ndarray | float = 0.0
    for start in range(0, len(rows), chunk):
        block = np.asarray(array[rows[start: start + chunk]], dtype=np.float64)
        if axis is None:
            total += float(block.sum())
            total_sq += float(np.square(block).sum())
        else:
            total = total + block.sum(axis=0)
            total_sq = total_sq + np.square(block).sum(axis=0)
    values = len(rows) * (int(np.prod(array.shape[1:])) if axis is None else 1)
    mean = total / values
    variance = np.maximum(total_sq / values - np.square(mean), 0.0)
    return mean, (float(np.sqrt(variance)) if axis is None else np.sqrt(variance)), len(rows)
