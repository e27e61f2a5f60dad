"""The linear reference: standardised features + logistic regression with C chosen by inner cross-validation.

It is the yardstick every network result is read against (a network far below it has not learned). Here it
takes any subjects x features matrix (regional means, or the images' standardised pixels) and runs a repeated
stratified k-fold split (scikit-learn's ``RepeatedStratifiedKFold``) or the folds another model was evaluated on;
the scaling, the rotation onto the training subjects' principal components and the choice of C (inner
stratified folds) see only the training subjects of each fold. Reported: accuracy and AUC of the out-of-fold probabilities, averaged
over repeats, with 95% intervals from a bootstrap over subjects of the repeat-averaged probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GridSearchCV, RepeatedStratifiedKFold, StratifiedKFold
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from ..train.cv import KFOLD

__all__ = ["REFERENCE_ARM", "REFERENCE_BACKBONE", "LinearReference", "image_reference", "linear_reference"]


@dataclass(frozen=True)
class LinearReference:
    """Per-repeat results and their summary (see :func:`linear_reference`)."""

    per_repeat: pd.DataFrame  # repeat, accuracy, auc
    probability: np.ndarray  # out-of-fold probability of label 1, averaged over repeats
    summary: dict
    repeat_probability: np.ndarray | None = None  # (repeats, subjects): each repeat's out-of-fold probabilities


def linear_reference(features: np.ndarray, labels: np.ndarray, *, folds: int | np.ndarray = 10, repeats: int = 5,
                     seed: int = 0, inner_folds: int = 5, cs: int = 10, n_bootstrap: int = 1000) -> LinearReference:
    """Out-of-fold logistic regression on standardised ``features``.

    Parameters
    ----------
    features : ndarray, shape (subjects, features)
    labels : ndarray of {0, 1}, shape (subjects,)
    folds : int or ndarray of int
        The outer split: a number of stratified folds (repeated ``repeats`` times), or the fold of each subject (the
        folds another model was evaluated on, e.g. a network's; ``repeats`` is then 1).
    repeats : int
    seed : int
    inner_folds : int
        Stratified folds inside each training set that choose C (log-loss).
    cs : int
        Candidate values of C, log-spaced from 1e-4 to 1e4 (scikit-learn's ``GridSearchCV``).
    n_bootstrap : int
        Bootstrap resamples of subjects for the intervals.
    """
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels).astype(int)
    if x.ndim != 2 or len(x) != len(y):
        raise ValueError(f"features must be subjects x features with one label per subject; got {x.shape} and "
                         f"{y.shape}")
    if not np.isfinite(x).all():
        raise ValueError("features contain NaN or infinite values")
    if set(np.unique(y)) != {0, 1}:
        raise ValueError("labels must hold both 0 and 1")
    if isinstance(folds, (int, np.integer)):
        n_splits = int(folds)
        splits = list(RepeatedStratifiedKFold(n_splits=n_splits, n_repeats=repeats, random_state=seed).split(x, y))
    else:
        assigned = np.asarray(folds)
        if assigned.shape != y.shape:
            raise ValueError(f"{len(assigned)} fold numbers for {len(y)} subjects")
        numbers = np.unique(assigned)
        n_splits, repeats = len(numbers), 1
        splits = [(np.flatnonzero(assigned != k), np.flatnonzero(assigned == k)) for k in numbers]
    probability = np.zeros((repeats, len(y)))
    with threadpool_limits(limits=1):  # see _one_fold
        for split, (train, test) in enumerate(splits):
            probability[split // n_splits, test] = _one_fold(x, y, train, test, inner_folds, cs, seed + split)
    per_repeat = pd.DataFrame({"repeat": np.arange(repeats),
                               "accuracy": [((p > 0.5) == y).mean() for p in probability],
                               "auc": [roc_auc_score(y, p) for p in probability]})
    average = probability.mean(axis=0)
    rng = np.random.default_rng(seed)
    accuracy, auc = [np.nan], [np.nan]
    for _ in range(n_bootstrap):
        rows = rng.integers(0, len(y), len(y))
        if len(np.unique(y[rows])) < 2:
            continue
        accuracy.append(((average[rows] > 0.5) == y[rows]).mean())
        auc.append(roc_auc_score(y[rows], average[rows]))
    summary = {"n": int(len(y)), "features": int(x.shape[1]), "folds": n_splits, "repeats": repeats,
               "accuracy": float(per_repeat["accuracy"].mean()),
               "accuracy_low": float(np.nanquantile(accuracy, 0.025)) if n_bootstrap else np.nan,
               "accuracy_high": float(np.nanquantile(accuracy, 0.975)) if n_bootstrap else np.nan,
               "auc": float(per_repeat["auc"].mean()),
               "auc_low": float(np.nanquantile(auc, 0.025)) if n_bootstrap else np.nan,
               "auc_high": float(np.nanquantile(auc, 0.975)) if n_bootstrap else np.nan,
               "majority_class": float(max(y.mean(), 1 - y.mean()))}
    return LinearReference(per_repeat, average, summary, probability)


def _one_fold(x: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray, inner_folds: int, cs: int,
              seed: int) -> np.ndarray:
    """Out-of-fold probabilities of label 1 for ``test`` from a model fitted on ``train``.

    Runs with one BLAS thread (the caller's ``threadpool_limits``): these are small dense problems (at most the
    training subjects' dimension), and beside other work on the machine (the study's training workers, a test run)
    two spinning BLAS threads made one fold 8x slower than one thread (2 cores, 931 subjects x 204 regional
    features: 6.1 s against 0.76 s).
    """
    # standardise on the training subjects, then rotate onto the span of their features (all principal
    # components): an L2-penalised logistic regression's weights lie in that span anyway, so the fit is the
    # same, and pixel images (features >> subjects) are fitted in the subjects' dimension
    scaler = StandardScaler().fit(x[train])
    rotation = PCA(svd_solver="full").fit(scaler.transform(x[train]))
    # no more inner folds than the training subjects' smaller class holds, so every inner split sees both
    # classes; with fewer than two of a class there is no inner split, and C stays at 1
    smaller = int(np.bincount(y[train], minlength=2).min())
    if smaller >= 2:
        inner = StratifiedKFold(min(inner_folds, smaller), shuffle=True, random_state=seed)
        model = GridSearchCV(LogisticRegression(max_iter=5000), {"C": np.logspace(-4, 4, cs)}, cv=inner,
                             scoring="neg_log_loss")
    else:
        model = LogisticRegression(max_iter=5000, C=1.0)
    model.fit(rotation.transform(scaler.transform(x[train])), y[train])
    return model.predict_proba(rotation.transform(scaler.transform(x[test])))[:, 1]


#: Fields of the linear reference's rows in the networks' prediction tables.
REFERENCE_ARM = "linear reference"
REFERENCE_BACKBONE = "logistic regression"


def image_reference(store, hemisphere: str, metric: str, folds: np.ndarray, *, cohort: str, scheme: str = KFOLD,
                    seed: int = 0, cs: int = 8) -> pd.DataFrame:
    """The linear reference on one image set of an image store: each image's pixels as features (standardised
    inside each training fold), logistic regression with C chosen by inner cross-validation, on the networks'
    ``folds``. Returns rows shaped like the networks' predictions (arm ``"linear reference"``), so that every table
    that summarises networks summarises it too, image-average included."""
    images = np.asarray(store.images(hemisphere, metric), dtype=np.float64)
    features = images.reshape(len(images), -1)
    subjects = store.subjects
    result = linear_reference(features, subjects["label"].to_numpy(), folds=np.asarray(folds), seed=seed, cs=cs,
                              n_bootstrap=0)
    return pd.DataFrame({"subject": subjects["subject"].astype(str).to_numpy(), "label": subjects["label"].to_numpy(),
                         "fold": np.asarray(folds), "probability": result.probability, "cohort": cohort,
                         "arm": REFERENCE_ARM, "scheme": scheme, "backbone": REFERENCE_BACKBONE,
                         "init": "-", "hemisphere": hemisphere, "metric": metric, "seed": seed})
