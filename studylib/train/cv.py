"""Cross-validation splits as one fold number per subject, so every prediction is out-of-fold.

The paper shuffles subjects into 10 folds without regard to site, sex or diagnosis; it also reports
leave-one-site-out. :func:`stratified_folds` keeps each fold's label balance (scikit-learn's
``StratifiedKFold``, shuffled and seeded); :func:`site_folds` makes one fold per site (``LeaveOneGroupOut``).
A fold array is what jobs, predictions and stacking share: :func:`fold_split` turns it back into
scikit-learn's ``PredefinedSplit``, which ``cross_val_predict`` and ``GridSearchCV`` accept, and
:func:`train_test` gives one fold's training and test rows.

The nested stacking scheme refits base models inside each outer training set: :func:`inner_folds` gives the folds of
those fits, with the outer fold's subjects marked :data:`EXCLUDED` (neither trained on nor predicted).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.model_selection import LeaveOneGroupOut, PredefinedSplit, StratifiedKFold

__all__ = ["ALL_SUBJECTS", "EVALUATED_SCHEMES", "EXCLUDED", "INNER", "KFOLD", "SITE_OUT", "fold_split", "inner_folds",
           "inner_scheme", "is_inner", "site_folds", "stratified_folds", "train_test"]

#: The cross-validation scheme of a job or prediction (a column of every prediction table): stratified k-fold over
#: subjects, one fold per site, and no held-out subjects (the stage-1 models of 2-stage transfer).
KFOLD, SITE_OUT, ALL_SUBJECTS = "kfold", "site-out", "all"

#: The schemes that evaluate: every subject is predicted by models that did not train on it. The others train stage-1
#: models on every subject (:data:`ALL_SUBJECTS`) or nested stacking's inner models (:func:`inner_scheme`).
EVALUATED_SCHEMES = (KFOLD, SITE_OUT)

#: Scheme prefix of the nested stacking scheme's inner models: ``inner<k>`` are fitted inside outer fold k's
#: training subjects (:func:`inner_folds`).
INNER = "inner"

#: Fold number of subjects a job must not see at all (the held-out outer fold of a nested scheme's inner fit).
EXCLUDED = -2


def inner_scheme(fold: int) -> str:
    """The scheme of the nested stacking scheme's inner models of outer fold ``fold``."""
    return f"{INNER}{fold}"


def is_inner(scheme: str) -> bool:
    """Whether a scheme names the nested stacking scheme's inner models of one outer fold."""
    return scheme.startswith(INNER) and scheme[len(INNER):].isdigit()


def _folds_of(splits, n: int) -> np.ndarray:
    folds = np.full(n, -1, dtype=np.int64)
    for fold, (_, test) in enumerate(splits):
        folds[test] = fold
    return folds


def stratified_folds(labels: Sequence[int], n_folds: int, seed: int) -> np.ndarray:
    """Fold number (0..n_folds-1) of each subject; each fold keeps the labels' proportions.

    Raises
    ------
    ValueError
        When a label has fewer subjects than folds (a fold would miss it).
    """
    labels = np.asarray(labels)
    counts = np.unique(labels, return_counts=True)[1]
    if n_folds < 2:
        raise ValueError(f"need at least 2 folds, got {n_folds}")
    if counts.min() < n_folds:
        raise ValueError(f"{n_folds} folds need at least {n_folds} subjects of each label; the smallest label has "
                         f"{counts.min()}")
    splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    return _folds_of(splitter.split(np.zeros(len(labels)), labels), len(labels))


def site_folds(sites: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Leave-one-site-out: fold ``k`` is every subject of the ``k``-th site (sites sorted by name)."""
    groups = np.asarray(sites, dtype=str)
    names = np.unique(groups)
    if len(names) < 2:
        raise ValueError("leave-one-site-out needs at least two sites")
    return _folds_of(LeaveOneGroupOut().split(groups, groups=groups), len(groups)), names.tolist()


def fold_split(folds: np.ndarray) -> PredefinedSplit:
    """scikit-learn's splitter for a fold array (subjects with fold -1 are always in training)."""
    return PredefinedSplit(np.asarray(folds))


def train_test(folds: np.ndarray, fold: int) -> tuple[np.ndarray, np.ndarray]:
    """Training and test rows of ``fold`` (the test rows are that fold's subjects); ``fold`` -1: every row trains.
    Rows marked :data:`EXCLUDED` are in neither.

    Raises
    ------
    ValueError
        When no subject is in ``fold``.
    """
    folds = np.asarray(folds)
    kept = folds != EXCLUDED
    if fold < 0:
        return np.flatnonzero(kept), np.empty(0, dtype=np.int64)
    test = np.flatnonzero(folds == fold)
    if not len(test):
        raise ValueError(f"no subject is in fold {fold}; folds are {np.unique(folds[folds >= 0]).tolist()}")
    return np.flatnonzero(kept & (folds != fold)), test


def inner_folds(labels: Sequence[int], folds: np.ndarray, outer) -> np.ndarray:
    """Folds of the nested scheme's base models inside outer fold ``outer``'s training set.

    The subjects of ``outer`` are :data:`EXCLUDED`; the others keep their outer fold numbers (``k - 1`` inner fits),
    except with two outer folds, where one remaining fold cannot give out-of-fold predictions: the training subjects
    are then split in two stratified halves (0 and 1), seeded by the outer fold's position.
    """
    labels = np.asarray(labels)
    folds = np.asarray(folds)
    outer_numbers = np.unique(folds[folds >= 0])
    if outer not in outer_numbers:
        raise ValueError(f"no subject is in outer fold {outer}; folds are {outer_numbers.tolist()}")
    inner = np.where(folds == outer, EXCLUDED, folds).astype(np.int64)
    if len(outer_numbers) < 3:
        train = np.flatnonzero(folds != outer)
        position = int(np.flatnonzero(outer_numbers == outer)[0])
        for part, (_, held) in enumerate(StratifiedKFold(2, shuffle=True, random_state=position).split(
                train, labels[train])):
            inner[train[held]] = part
    return inner
