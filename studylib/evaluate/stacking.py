"""Stacking the per-image models into one prediction per subject (the paper's XGBoost over metrics and hemispheres).

The features of a subject are its out-of-fold probabilities from every image model (hemisphere x metric) of one
(cohort, scheme, arm, backbone). The outer folds are exactly the base models' folds (k-fold or leave-one-site-out):
for outer fold k the meta-learner is fitted on the other folds' subjects and predicts fold k's. Meta-learners:

- ``xgboost`` -- gradient-boosted trees with a grid search over ``StackingParams.grid`` (inner stratified folds on
  the outer training subjects only), the paper's choice;
- ``logistic`` -- logistic regression on the logits, C by the same inner search;
- ``mean`` -- the mean probability (the paper's "no stacking" in its ablation);
- ``vote`` -- the share of image models voting for label 1 (ties broken by the mean probability).

**The usual scheme and its leak.** The training subjects' meta-features are out-of-fold probabilities of base models
that were fitted with fold k's subjects among their training data, so fold k's labels shape the meta-learner that
predicts fold k. :func:`nested_meta_features` gives the alternative: base models refitted inside each outer training
set (k (k-1) fits), whose predictions for the outer test subjects come from base models that never saw them.
``06_stack`` measures the difference between the two with linear base models; with ``stacking.nested`` the networks'
own inner models (trained by 04/05) give the nested scheme (:func:`inner_meta_features`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from ..train.cv import KFOLD, inner_folds, inner_scheme

__all__ = ["GROUP_KEYS", "METHODS", "ImageTable", "MajorityVote", "MeanProbability", "image_table",
           "inner_meta_features", "meta_learner", "nested_meta_features", "stack_outer_folds", "stack_predictions"]

#: What one stacked prediction is made of: every image model of one of these.
GROUP_KEYS = ("cohort", "scheme", "arm", "backbone")
#: Meta-learners, in the order tables show them.
METHODS = ("xgboost", "logistic", "mean", "vote")

_EPSILON = 1e-6


class MeanProbability(ClassifierMixin, BaseEstimator):
    """The mean of the image models' probabilities (nothing is fitted)."""

    def fit(self, x, y):
        self.classes_ = np.array([0, 1])
        return self

    def predict_proba(self, x):
        p = np.asarray(x, dtype=float).mean(axis=1)
        return np.column_stack([1 - p, p])

    def predict(self, x):
        return (self.predict_proba(x)[:, 1] >= 0.5).astype(int)


class MajorityVote(ClassifierMixin, BaseEstimator):
    """The share of image models whose probability is at least 1/2; an exact tie takes the mean probability's side,
    so that an even number of images never leaves a subject undecided."""

    def fit(self, x, y):
        self.classes_ = np.array([0, 1])
        return self

    def predict_proba(self, x):
        x = np.asarray(x, dtype=float)
        share = (x >= 0.5).mean(axis=1)
        tie = np.isclose(share, 0.5)
        share = np.where(tie, 0.5 + np.sign(x.mean(axis=1) - 0.5) * _EPSILON, share)
        return np.column_stack([1 - share, share])

    def predict(self, x):
        return (self.predict_proba(x)[:, 1] >= 0.5).astype(int)


def _logit(p):
    p = np.clip(np.asarray(p, dtype=float), _EPSILON, 1 - _EPSILON)
    return np.log(p / (1 - p))


def meta_learner(method: str, *, grid: dict[str, Sequence] | None = None, inner_folds: int = 3, seed: int = 0,
                 n_train: int | None = None):
    """An unfitted meta-learner (a scikit-learn estimator) for ``method`` (one of :data:`METHODS`).

    ``grid`` is XGBoost's hyper-parameter grid (``xgboost.XGBClassifier`` arguments); the search (and logistic
    regression's choice of C) uses ``inner_folds`` stratified folds of the subjects it is fitted on, scored by log
    loss. ``n_train`` caps the inner folds at the smaller class's count when it is known.
    """
    if method not in METHODS:
        raise ValueError(f"unknown stacking method {method!r}; expected one of {', '.join(METHODS)}")
    if method == "mean":
        return MeanProbability()
    if method == "vote":
        return MajorityVote()
    inner = StratifiedKFold(inner_folds, shuffle=True, random_state=seed)
    if method == "logistic":
        model = make_pipeline(FunctionTransformer(_logit), LogisticRegression(max_iter=2000))
        return GridSearchCV(model, {"logisticregression__C": np.logspace(-3, 3, 7)}, cv=inner, scoring="neg_log_loss")
    from xgboost import XGBClassifier

    model = XGBClassifier(n_jobs=1, tree_method="hist", random_state=seed, eval_metric="logloss", verbosity=0)
    return GridSearchCV(model, {key: list(values) for key, values in (grid or {}).items()}, cv=inner,
                        scoring="neg_log_loss")


@dataclass(frozen=True)
class ImageTable:
    """The stacking features of one (cohort, scheme, arm, backbone): one row per subject, one column per image."""

    probability: pd.DataFrame  # subjects x images (columns "hemisphere/metric")
    label: np.ndarray
    fold: np.ndarray
    extra: pd.DataFrame  # per-subject columns carried through (init, seed, site...)


def image_table(predictions: pd.DataFrame) -> ImageTable:
    """Pivot one group's long predictions (one row per model and test subject) to subjects x images.

    Raises
    ------
    ValueError
        When a subject lacks an image's prediction, has it twice, or is tested in different folds by different image
        models (stacking needs every image model to share the outer folds), naming the subjects.
    """
    name = "/".join(str(predictions[key].iloc[0]) for key in GROUP_KEYS if key in predictions)
    image = predictions["hemisphere"].astype(str) + "/" + predictions["metric"].astype(str)
    table = predictions.assign(image=image)
    doubled = table.duplicated(["subject", "image"])
    if doubled.any():
        raise ValueError(f"{name}: subjects with two predictions for one image: "
                         f"{sorted(table.loc[doubled, 'subject'].astype(str).unique())[:5]}")
    wide = table.pivot(index="subject", columns="image", values="probability")
    missing = wide.isna().any(axis=1)
    if missing.any():
        lacking = wide.columns[wide.loc[missing].isna().any(axis=0)].tolist()
        raise ValueError(f"{name}: {int(missing.sum())} subjects lack a prediction of image(s) {lacking} (e.g. "
                         f"{list(wide.index[missing][:5])}); every image model must test every subject")
    per_subject = table.groupby("subject")
    folds = per_subject["fold"].nunique()
    if (folds > 1).any():
        raise ValueError(f"{name}: subjects tested in different folds by different image models "
                         f"({list(folds.index[folds > 1][:5])}); stacking needs the base models' folds to agree")
    labels = per_subject["label"].nunique()
    if (labels > 1).any():
        raise ValueError(f"{name}: subjects with different labels in different rows ({list(labels.index[labels > 1][:5])})")
    first = per_subject.first().loc[wide.index]
    extra_columns = [c for c in ("init", "seed", "site") if c in first]
    return ImageTable(wide, first["label"].to_numpy().astype(int), first["fold"].to_numpy(),
                      first[extra_columns].reset_index())


def stack_outer_folds(features: np.ndarray, labels: np.ndarray, folds: np.ndarray, method: str, *,
                      nested_features: dict | None = None, grid: dict | None = None, inner_folds: int = 3,
                      seed: int = 0) -> np.ndarray:
    """Out-of-fold stacked probabilities: for each outer fold, ``method``'s meta-learner fitted on the other folds'
    subjects, predicting the fold's.

    Parameters
    ----------
    features : ndarray, shape (subjects, images)
        Every subject's out-of-fold probability from each image model: the test side always, and the training side
        in the usual scheme.
    labels, folds : ndarray, shape (subjects,)
    nested_features : dict, optional
        Outer fold -> the training subjects' meta-features of the nested scheme (:func:`nested_meta_features`),
        used instead of ``features`` on the training side.
    grid, inner_folds, seed
        See :func:`meta_learner` (each outer fold's search is seeded ``seed + fold number``).
    """
    features = np.asarray(features, dtype=float)
    labels = np.asarray(labels).astype(int)
    folds = np.asarray(folds)
    stacked = np.full(len(labels), np.nan)
    for number, fold in enumerate(np.unique(folds)):
        train, test = folds != fold, folds == fold
        if len(np.unique(labels[train])) < 2:
            raise ValueError(f"outer fold {fold}: its training subjects hold one class only")
        train_features = features[train] if nested_features is None else np.asarray(nested_features[fold], float)
        if train_features.shape != (int(train.sum()), features.shape[1]):
            raise ValueError(f"outer fold {fold}: nested meta-features of shape {train_features.shape}, expected "
                             f"{(int(train.sum()), features.shape[1])}")
        smaller = int(np.bincount(labels[train]).min())
        model = meta_learner(method, grid=grid, inner_folds=max(2, min(inner_folds, smaller)), seed=seed + number)
        model.fit(train_features, labels[train])
        stacked[test] = model.predict_proba(features[test])[:, 1]
    return stacked


def nested_meta_features(fit_predict: Callable[[int, np.ndarray, np.ndarray], np.ndarray], n_images: int,
                         labels: np.ndarray, folds: np.ndarray) -> dict[object, np.ndarray]:
    """Meta-features of the nested scheme, outer fold by outer fold.

    For outer fold k, every image's base model is refitted with the other outer folds as its own folds (``k - 1``
    fits per image; with two outer folds, a stratified halving of the training subjects), so that the training
    subjects' meta-features come from models that never saw fold k.

    Parameters
    ----------
    fit_predict : callable
        ``fit_predict(image, subjects, inner_folds)`` -> out-of-fold probabilities of ``subjects`` (indices) for
        image number ``image``, with ``inner_folds`` (one per subject) as the folds.
    n_images : int
    labels, folds : ndarray, shape (subjects,)

    Returns
    -------
    dict
        Outer fold -> (training subjects x images) meta-features, rows in the order of ``folds != k``.
    """
    folds = np.asarray(folds)
    labels = np.asarray(labels).astype(int)
    features = {}
    for fold in np.unique(folds):
        train = np.flatnonzero(folds != fold)
        inner = inner_folds(labels, folds, fold)[train]
        features[fold] = np.column_stack([fit_predict(image, train, inner) for image in range(n_images)])
    return features


def inner_meta_features(table: ImageTable, inner: pd.DataFrame, name: str) -> dict:
    """The nested scheme's training meta-features of one group from its inner models' predictions.

    ``inner`` holds the group's inner predictions in the long format, ``scheme`` ``inner<k>`` for the models fitted
    inside outer fold ``k``'s training subjects; returns outer fold -> (training subjects x images), rows in the order
    of ``table.fold != k`` and columns in ``table.probability``'s order.

    Raises
    ------
    ValueError
        When an outer fold's inner predictions do not cover exactly its training subjects and images.
    """
    features = {}
    subjects = table.probability.index.astype(str)
    for fold in np.unique(table.fold):
        rows = inner[inner["scheme"] == inner_scheme(fold)]
        training = subjects[table.fold != fold]
        if rows.empty:
            raise ValueError(f"{name}: no inner predictions for outer fold {fold} (stacking.nested needs 04/05 run with "
                             "it)")
        wide = rows.assign(image=rows["hemisphere"].astype(str) + "/" + rows["metric"].astype(str),
                           subject=rows["subject"].astype(str)).pivot(index="subject", columns="image",
                                                                     values="probability")
        if set(wide.index) != set(training) or set(wide.columns) != set(table.probability.columns) \
                or wide.isna().any().any():
            raise ValueError(f"{name}: the inner predictions of outer fold {fold} do not cover its {len(training)} "
                             f"training subjects x {table.probability.shape[1]} images")
        features[fold] = wide.loc[training, table.probability.columns].to_numpy()
    return features


def stack_predictions(predictions: pd.DataFrame, methods: Sequence[str] = METHODS, *, grid: dict | None = None,
                      inner_folds: int = 3, seed: int = 0, progress: bool = False,
                      inner: pd.DataFrame | None = None) -> pd.DataFrame:
    """Stacked out-of-fold predictions of every (cohort, scheme, arm, backbone) in ``predictions`` by each method.

    Returns rows in the long format of the per-image predictions (one per subject and method), with ``hemisphere``
    ``"both"``, ``metric`` ``"stacked (<method>)"``, a ``stacking`` column naming the method, ``images`` the
    number of image models stacked and ``meta-features`` saying how the meta-learner's training side was made:
    ``out-of-fold`` (the usual scheme) or ``nested`` (from ``inner``: the base models refitted inside each outer
    training set, :func:`inner_meta_features`; used for the k-fold groups it covers), so every summary that takes
    per-image predictions takes these.
    """
    from ..progress import progress_bar

    parts = []
    groups = list(predictions.groupby(list(GROUP_KEYS), sort=True))
    inner_keys = [key for key in GROUP_KEYS if key != "scheme"]
    inner_groups = {} if inner is None or inner.empty else \
        {keys: group for keys, group in inner.groupby(inner_keys, sort=False)}
    for keys, group in progress_bar(groups, desc="stacking", unit="arm", disable=not progress):
        table = image_table(group)
        named = dict(zip(GROUP_KEYS, keys))
        nested = None
        if named["scheme"] == KFOLD:
            found = inner_groups.get(tuple(named[key] for key in inner_keys))
            if found is not None:
                nested = inner_meta_features(table, found, "/".join(map(str, keys)))
        for method in methods:
            probability = stack_outer_folds(table.probability.to_numpy(), table.label, table.fold, method,
                                            nested_features=nested, grid=grid, inner_folds=inner_folds, seed=seed)
            parts.append(table.extra.assign(label=table.label, fold=table.fold, probability=probability,
                                            **named, hemisphere="both", metric=f"stacked ({method})", stacking=method,
                                            images=table.probability.shape[1],
                                            **{"meta-features": "out-of-fold" if nested is None else "nested"}))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
