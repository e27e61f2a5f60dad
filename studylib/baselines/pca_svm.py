"""The paper's first baseline: PCA + SVM on the vectorised cortex, in exactly the main method's folds.

A scikit-learn pipeline per image set (hemisphere, metric): the subject's values on the template's cortex vertices,
standardised, PCA keeping ``variance`` of the training subjects' variance, a linear SVM (liblinear's ``LinearSVC``,
squared hinge loss: libsvm's ``SVC(kernel="linear")`` took 10x longer) whose C is chosen by stratified
inner cross-validation (AUC) on the training subjects only, and Platt-scaled probabilities (scikit-learn's
``CalibratedClassifierCV(..., ensemble=False)``: a sigmoid fitted on 3-fold decision values of the training
subjects). The scaler and PCA of each training set are cached across the candidate C values. Each outer fold is one of the folds the networks were evaluated on, so every
comparison with them is on the same subjects and splits; the image sets are then stacked like the networks'.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.calibration import CalibratedClassifierCV
from sklearn.decomposition import PCA
from joblib import Memory
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from ..train.cv import KFOLD

__all__ = ["PCA_SVM_ARM", "pca_svm", "pca_svm_predictions"]

PCA_SVM_ARM = "PCA+SVM"


def pca_svm(features: np.ndarray, labels: np.ndarray, folds: np.ndarray, *, variance: float = 0.95,
            cs: Sequence[float] = (1e-3, 1e-2, 1e-1, 1.0), inner_folds: int = 3, seed: int = 0) -> np.ndarray:
    """Out-of-fold probabilities of label 1 from the PCA + SVM pipeline, one outer fold per value of ``folds``.

    Parameters
    ----------
    features : ndarray, shape (subjects, features)
    labels : ndarray of {0, 1}
    folds : ndarray of int
        The fold of each subject (the main method's).
    variance : float
        Share of the training subjects' variance PCA keeps.
    cs : sequence of float
        Candidate C of the linear SVM.
    inner_folds : int
        Stratified folds inside each training set that choose C (at most the smaller class's count).
    seed : int
    """
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels).astype(int)
    folds = np.asarray(folds)
    if x.ndim != 2 or len(x) != len(y) or len(folds) != len(y):
        raise ValueError(f"features must be subjects x features with one label and fold per subject; got {x.shape}, "
                         f"{y.shape} and {folds.shape}")
    if not np.isfinite(x).all():
        rows = np.flatnonzero(~np.isfinite(x).all(axis=1))[:5].tolist()
        raise ValueError(f"features contain NaN or infinite values (rows {rows})")
    probability = np.full(len(y), np.nan)
    with tempfile.TemporaryDirectory(prefix="pca_svm_") as cache:
        # the scaler and PCA of each (outer, inner) training set are fitted once and reused for every C
        memory = Memory(cache, verbose=0)
        for k in np.unique(folds):
            train, test = folds != k, folds == k
            smaller = int(np.bincount(y[train], minlength=2).min())
            if smaller < 2:
                raise ValueError(f"fold {k}: the training subjects hold {smaller} of a class; PCA+SVM needs two")
            pipeline = make_pipeline(StandardScaler(), PCA(n_components=variance, svd_solver="full"),
                                     CalibratedClassifierCV(LinearSVC(max_iter=20000),
                                                            ensemble=False, cv=3), memory=memory)
            model = GridSearchCV(pipeline, {"calibratedclassifiercv__estimator__C": list(cs)}, scoring="roc_auc",
                                 cv=StratifiedKFold(min(inner_folds, smaller), shuffle=True, random_state=seed + int(k)))
            model.fit(x[train], y[train])
            probability[test] = model.predict_proba(x[test])[:, 1]
    return probability


def pca_svm_predictions(cohort, folds: pd.Series, *, cohort_name: str, variance: float, cs: Sequence[float],
                        inner_folds: int, seed: int) -> pd.DataFrame:
    """PCA + SVM on every image set (hemisphere, metric) of a :class:`~studylib.data.cohort.Cohort`, on the cortex
    vertices of the template, in ``folds`` (subject -> fold, the networks' folds; subjects without one are left out).
    Rows shaped like the networks' predictions (arm ``"PCA+SVM"``)."""
    subjects = cohort.subjects.assign(subject=cohort.subjects["subject"].astype(str))
    missing = sorted(set(folds.index) - set(subjects["subject"]))
    if missing:
        raise ValueError(f"cohort {cohort_name}: fold assignments for subjects it does not hold: {missing[:5]}")
    rows = np.flatnonzero(subjects["subject"].isin(folds.index).to_numpy())
    chosen = subjects.iloc[rows]
    fold = folds.loc[chosen["subject"]].to_numpy()
    parts = []
    for hemisphere in cohort.hemispheres:
        for metric in cohort.metrics:
            maps = np.asarray(cohort.maps(hemisphere, metric)[rows], dtype=np.float64)
            cortex = np.isfinite(maps).all(axis=0)
            probability = pca_svm(maps[:, cortex], chosen["label"].to_numpy(), fold, variance=variance, cs=cs,
                                  inner_folds=inner_folds, seed=seed)
            parts.append(pd.DataFrame({"subject": chosen["subject"].to_numpy(), "label": chosen["label"].to_numpy(),
                                       "fold": fold, "probability": probability, "cohort": cohort_name,
                                       "arm": PCA_SVM_ARM, "scheme": KFOLD, "backbone": "linear SVM", "init": "-",
                                       "hemisphere": hemisphere, "metric": metric, "seed": seed}))
    return pd.concat(parts, ignore_index=True)
