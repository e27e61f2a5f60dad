"""Cross-validation splits as one fold number per subject, so every prediction is out-of-fold.

The paper shuffles subjects into 10 folds without regard to site, sex or diagnosis; it also reports
leave-one-site-out. :func:`stratified_folds` keeps each fold's label balance (scikit-learn's
``StratifiedKFold``, shuffled and seeded); :func:`site_folds` makes one fold per site.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

__all__ = ["site_folds", "split", "stratified_folds"]


def stratified_folds(labels: Sequence[int], n_folds: int, seed: int) -> np.ndarray:
    """Fold number (0..n_folds-1) of each subject; each fold keeps the labels' proportions.

    Raises
    ------
    ValueError
        When a label has fewer subjects than folds (a fold would miss it).
    """
    from sklearn.model_selection import StratifiedKFold

    labels = np.asarray(labels)
    counts = np.unique(labels, return_counts=True)[1]
    if n_folds < 2:
        raise ValueError(f"need at least 2 folds, got {n_folds}")
    if counts.min() < n_folds:
        raise ValueError(f"{n_folds} folds need at least {n_folds} subjects of each label; the smallest label has "
                         f"{counts.min()}")
    folds = np.empty(len(labels), dtype=np.int64)
    splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    for fold, (_, test) in enumerate(splitter.split(np.zeros(len(labels)), labels)):
        folds[test] = fold
    return folds


def site_folds(sites: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Leave-one-site-out: fold ``k`` is every subject of the ``k``-th site (sites sorted by name)."""
    names, folds = np.unique(np.asarray(sites, dtype=str), return_inverse=True)
    if len(names) < 2:
        raise ValueError("leave-one-site-out needs at least two sites")
    return folds.astype(np.int64), names.tolist()


def split(folds: np.ndarray) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """``(fold, train_index, test_index)`` for each fold; the two index sets never share a subject."""
    folds = np.asarray(folds)
    for fold in np.unique(folds):
        yield int(fold), np.flatnonzero(folds != fold), np.flatnonzero(folds == fold)
