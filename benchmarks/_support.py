"""Helpers shared by the benchmark scripts (not a benchmark: ``run_all.py`` runs only ``bench_*.py``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def random_store(folder: Path, n: int, size: int) -> np.ndarray:
    """A memory-mapped ``(n, size, size)`` float32 image store of seeded noise in ``folder`` (made once, then reused),
    the way the study's image stores are read."""
    path = store_path(folder, n, size)
    if not path.is_file():
        stored = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, size, size))
        stored[:] = np.random.default_rng(0).normal(size=(n, size, size))
        stored.flush()
    return np.load(path, mmap_mode="r")


def store_path(folder: Path, n: int, size: int) -> Path:
    """Where :func:`random_store` keeps the store of ``n`` images of ``size`` px."""
    return Path(folder) / f"images_{n}_{size}.npy"
