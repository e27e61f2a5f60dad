"""Checks of the stacking chain itself: how optimistic the usual scheme is, and what it gives when there is nothing
to find.

Both rerun the whole chain -- base models per image, then stacking -- so they need base models cheap enough to fit
many times: the linear reference (:func:`studylib.baselines.linear.linear_reference`, standardised pixels + logistic
regression with C by inner cross-validation) on the same images and outer folds as the networks. The networks' own
nested chain costs k (k - 1) network fits per image, beyond a CPU hour; ``paper`` runs can afford it.

- :func:`stacking_optimism` -- usual scheme (meta-learner of fold k fitted on the other subjects' out-of-fold
  probabilities, whose base models saw fold k) against the nested scheme (base models refitted inside each outer
  training set): the difference in stacked accuracy and AUC with a paired bootstrap interval.
- :func:`permutation_runs` -- the chain on labels permuted with several seeds (folds drawn on the permuted labels, as
  the study draws them): each stacked AUC with DeLong's interval, which should cover 1/2.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from ..baselines.linear import linear_reference
from .stacking import nested_meta_features, stack_outer_folds
from .stats import delong, stratified_bootstrap

__all__ = ["linear_base_predictions", "null_auc_se", "permutation_runs", "permutation_summary", "stacking_optimism"]


def _check(features: Sequence[np.ndarray], labels: np.ndarray, folds: np.ndarray) -> None:
    if not features:
        raise ValueError("no images to stack")
    n = len(labels)
    for number, x in enumerate(features):
        if np.ndim(x) != 2 or len(x) != n:
            raise ValueError(f"image {number}: features must be subjects x pixels with {n} subjects; got {np.shape(x)}")
    if len(folds) != n:
        raise ValueError(f"{len(folds)} fold numbers for {n} subjects")


def linear_base_predictions(features: Sequence[np.ndarray], labels: np.ndarray, folds: np.ndarray, *, seed: int = 0,
                            cs: int = 8, inner_folds: int = 5) -> np.ndarray:
    """Out-of-fold probabilities (subjects x images) of the linear reference fitted on each image's pixels."""
    return np.column_stack([linear_reference(x, labels, folds=np.asarray(folds), seed=seed, cs=cs,
                                             inner_folds=inner_folds, n_bootstrap=0).probability for x in features])


def _nested_linear_features(features: Sequence[np.ndarray], labels: np.ndarray, folds: np.ndarray, *, seed: int,
                            cs: int) -> dict:
    """The nested scheme's training meta-features with linear base models (:func:`nested_meta_features`)."""
    def fit_predict(image: int, subjects: np.ndarray, inner: np.ndarray) -> np.ndarray:
        return linear_reference(features[image][subjects], labels[subjects], folds=inner, seed=seed, cs=cs,
                                n_bootstrap=0).probability

    return nested_meta_features(fit_predict, len(features), labels, folds)


def stacking_optimism(features: Sequence[np.ndarray], labels: np.ndarray, folds: np.ndarray, *,
                      method: str = "xgboost", grid: dict | None = None, inner_folds: int = 3, seed: int = 0,
                      cs: int = 8, n_resamples: int = 1000) -> dict[str, float]:
    """Stacked accuracy and AUC of the usual and the nested scheme on the same subjects and outer folds.

    Returns the two schemes' accuracy and AUC, the differences (usual - nested: the usual scheme's optimism) with
    stratified paired bootstrap 95% intervals over subjects, the number of base fits of each scheme, and the stacked
    probabilities (``usual_probability``, ``nested_probability``).
    """
    labels = np.asarray(labels).astype(int)
    folds = np.asarray(folds)
    _check(features, labels, folds)
    base = linear_base_predictions(features, labels, folds, seed=seed, cs=cs)
    nested_features = _nested_linear_features(features, labels, folds, seed=seed, cs=cs)
    usual = stack_outer_folds(base, labels, folds, method, grid=grid, inner_folds=inner_folds, seed=seed)
    nested = stack_outer_folds(base, labels, folds, method, nested_features=nested_features, grid=grid,
                               inner_folds=inner_folds, seed=seed)

    def accuracy(y, p):
        return float(((p >= 0.5) == y).mean())

    def auc(y, p):
        return delong(y, p)["auc"]

    k = len(np.unique(folds))
    result = {"subjects": len(labels), "images": len(features), "outer folds": k, "method": method,
              "base fits (usual)": len(features) * k, "base fits (nested)": len(features) * k * k}
    for name, statistic in (("accuracy", accuracy), ("auc", auc)):
        difference = stratified_bootstrap(lambda y, a, b: statistic(y, a) - statistic(y, b), labels, usual, nested,
                                          n_resamples=n_resamples, seed=seed)
        result.update({f"{name} usual": statistic(labels, usual), f"{name} nested": statistic(labels, nested),
                       f"{name} optimism": difference["estimate"], f"{name} optimism low": difference["low"],
                       f"{name} optimism high": difference["high"]})
    result["usual_probability"], result["nested_probability"] = usual, nested
    return result


def permutation_runs(features: Sequence[np.ndarray], labels: np.ndarray, n_folds: int, seeds: Sequence[int], *,
                     methods: Sequence[str] = ("xgboost",), nested: Sequence[str] = (), grid: dict | None = None,
                     inner_folds: int = 3, cs: int = 8, progress: bool = False) -> pd.DataFrame:
    """The whole chain on labels permuted by each seed: stratified folds drawn on the permuted labels (as the study
    draws them on the labels it is given), linear base models per image, then stacking by each of ``methods`` on the
    same base predictions, and by each of ``nested`` in the nested scheme too (method named ``"<method> (nested)"``).
    One row per (seed, method): stacked accuracy, AUC with DeLong's 95% interval, and whether the interval covers 1/2.

    Out-of-fold probabilities on noise are slightly pessimistic (each base model is fitted without the subjects it
    predicts), and a meta-learner fitted on them can learn that sign and turn it into an AUC above 1/2; the mean of
    the images cannot, so the two side by side tell a learned meta-learner's bias from chance.

    Permuted labels need not be pure noise to a model when the images carry a strong real signal: a permutation keeps
    a chance correlation ``r`` with the real labels (SD about ``1 / sqrt(n)``) in training and test subjects alike, and
    a model that learns the real signal with the sign of ``r`` scores above 1/2 on the permuted labels whatever that
    sign. On the default's sex cohort (16 permutations, mean of the images: ``benchmarks/bench_stacking_null.py
    --mean-only --seeds 16 --first-seed 20221117``) the AUCs spread more than the
    independent-score null (SD 0.061 against 0.041) and rose with ``|r|`` (correlation 0.47, p = 0.07; the line's
    value at ``r = 0``: 0.494). Column ``|r| with the real labels``; :func:`permutation_summary` fits the line.

    Keeping the original folds instead would not be the chain: folds stratified on other labels hold different
    shares of the permuted classes, each base model's intercept follows its training share, and pooling such
    out-of-fold probabilities gives an AUC above 1/2 with no signal at all.
    """
    from ..progress import progress_bar

    from ..train.cv import stratified_folds

    labels = np.asarray(labels).astype(int)
    _check(features, labels, np.zeros(len(labels)))
    z = stats.norm.ppf(0.975)
    rows = []
    for seed in progress_bar(list(seeds), desc="permutation runs", unit="seed", disable=not progress):
        permuted = np.random.default_rng(seed).permutation(labels)
        chance = abs(float(np.corrcoef(permuted, labels)[0, 1]))
        folds = stratified_folds(permuted, n_folds, seed)
        base = linear_base_predictions(features, permuted, folds, seed=seed, cs=cs)
        inner = _nested_linear_features(features, permuted, folds, seed=seed, cs=cs) if nested else None
        for method, scheme in [(m, None) for m in methods] + [(m, "nested") for m in nested]:
            stacked = stack_outer_folds(base, permuted, folds, method, grid=grid, inner_folds=inner_folds, seed=seed,
                                        nested_features=inner if scheme else None)
            if scheme:
                method = f"{method} (nested)"
            auc = delong(permuted, stacked)
            rows.append({"permutation seed": seed, "method": method, "subjects": len(labels),
                         "label 1": int(labels.sum()), "|r| with the real labels": chance,
                         "accuracy": float(((stacked >= 0.5) == permuted).mean()),
                         "auc": auc["auc"], "auc low": max(0.0, auc["auc"] - z * auc["se"]),
                         "auc high": min(1.0, auc["auc"] + z * auc["se"]),
                         "covers 0.5": bool(auc["auc"] - z * auc["se"] <= 0.5 <= auc["auc"] + z * auc["se"])})
    return pd.DataFrame(rows)


def null_auc_se(positives: int, negatives: int) -> float:
    """Standard error of an AUC when scores carry no signal (the Mann-Whitney statistic's null variance, no ties):
    ``sqrt((n1 + n2 + 1) / (12 n1 n2))``."""
    if positives < 1 or negatives < 1:
        raise ValueError("both classes are needed")
    return float(np.sqrt((positives + negatives + 1) / (12 * positives * negatives)))


def permutation_summary(runs: pd.DataFrame) -> pd.DataFrame:
    """What a reader checks in :func:`permutation_runs`, per method: how many intervals cover 1/2, the mean AUC and
    its z against 1/2 (the null standard error over the runs), the mean |AUC - 1/2| and its expectation under no
    signal (``sqrt(2/pi)`` times the null standard error of one AUC); and, since a strong real signal lifts the AUC
    on permuted labels in proportion to their chance correlation ``|r|`` with the real ones, the least-squares line
    of AUC on ``|r|``: its value at ``r = 0`` (the AUC with no chance correlation, which a leak would keep above 1/2)
    and its slope (with three runs or more)."""
    subjects, positives = int(runs["subjects"].iloc[0]), int(runs["label 1"].iloc[0])
    se = null_auc_se(positives, subjects - positives)
    rows = []
    for method, group in runs.groupby("method", sort=False):
        mean = float(group["auc"].mean())
        row = {"method": method, "runs": len(group), "intervals covering 0.5": int(group["covers 0.5"].sum()),
               "mean AUC": mean, "z of the mean AUC": (mean - 0.5) / (se / np.sqrt(len(group))),
               "mean |AUC - 0.5|": float((group["auc"] - 0.5).abs().mean()),
               "expected |AUC - 0.5| under the null": float(np.sqrt(2 / np.pi) * se),
               "null SE of one AUC": se}
        if "|r| with the real labels" in group and len(group) >= 3:
            chance = group["|r| with the real labels"].to_numpy()
            slope, intercept = np.polyfit(chance, group["auc"].to_numpy(), 1)
            row.update({"mean |r| with the real labels": float(chance.mean()), "AUC at r = 0": float(intercept),
                        "AUC per unit |r|": float(slope)})
        rows.append(row)
    return pd.DataFrame(rows).set_index("method")
