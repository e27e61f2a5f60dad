"""Uncertainty and paired comparisons of classifiers evaluated on the same subjects.

SciPy provides the distributions and the exact binomial test; what it lacks is written here, small and tested:

- :func:`delong` — AUCs of one or two predictors on the same subjects with DeLong's covariance (fast midrank form
  of Sun & Xu, 2014), and for two predictors the test of equal AUCs (DeLong, DeLong & Clarke-Pearson, 1988).
- :func:`mcnemar_exact` — exact McNemar test of equal accuracy: a two-sided binomial test on the discordant pairs.
- :func:`holm` — Holm's step-down adjustment of p-values across a run's claims.
- :func:`stratified_bootstrap` — percentile intervals of any statistic of (labels, scores...), resampling subjects
  within each class so that every resample keeps the class counts (AUC is defined in each).
- :func:`corrected_resampled_ttest` — Nadeau & Bengio's (2003) t-test of a difference measured on repeated
  train/test splits, whose variance term accounts for the overlap of the training sets.
- :func:`tost` — two one-sided tests of equivalence within a stated margin (a difference that is not significant
  is not evidence of no difference; equivalence is).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
from scipy import stats

__all__ = ["corrected_resampled_ttest", "delong", "holm", "mcnemar_exact", "stratified_bootstrap", "tost"]


def _labels(labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels)
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must be 0 or 1")
    labels = labels.astype(bool)
    if labels.all() or not labels.any():
        raise ValueError("both classes are needed")
    return labels


def delong(labels: np.ndarray, first: np.ndarray, second: np.ndarray | None = None) -> dict[str, float]:
    """AUC with DeLong's standard error; with ``second``, the paired test of equal AUCs.

    Parameters
    ----------
    labels : array of {0, 1}, shape (n,)
    first, second : arrays, shape (n,)
        Scores of two classifiers for the same subjects (higher: more likely label 1).

    Returns
    -------
    dict
        ``auc``, ``se`` (one predictor), or ``auc_first``, ``auc_second``, ``difference`` (first - second),
        ``se``, ``z`` and the two-sided ``p`` (two predictors; ``p`` is 1 when the two give the same ranks).
    """
    positive = _labels(labels)
    scores = np.vstack([np.asarray(first, float)] + ([] if second is None else [np.asarray(second, float)]))
    if scores.shape[1] != len(positive):
        raise ValueError(f"{len(positive)} labels but {scores.shape[1]} scores")
    x, y = scores[:, positive], scores[:, ~positive]  # positives, negatives
    m, n = x.shape[1], y.shape[1]
    rank_x = stats.rankdata(x, axis=1)
    rank_y = stats.rankdata(y, axis=1)
    rank_all = stats.rankdata(np.hstack([x, y]), axis=1)
    auc = (rank_all[:, :m].sum(axis=1) - m * (m + 1) / 2) / (m * n)
    v_positive = (rank_all[:, :m] - rank_x) / n  # placement of each positive among the negatives
    v_negative = 1.0 - (rank_all[:, m:] - rank_y) / m
    covariance = np.atleast_2d(np.cov(v_positive)) / m + np.atleast_2d(np.cov(v_negative)) / n
    if second is None:
        return {"auc": float(auc[0]), "se": float(np.sqrt(covariance[0, 0]))}
    variance = covariance[0, 0] + covariance[1, 1] - 2 * covariance[0, 1]
    difference = float(auc[0] - auc[1])
    se = float(np.sqrt(max(variance, 0.0)))
    z = difference / se if se > 0 else 0.0
    return {"auc_first": float(auc[0]), "auc_second": float(auc[1]), "difference": difference, "se": se,
            "z": float(z), "p": float(2 * stats.norm.sf(abs(z))) if se > 0 else 1.0}


def mcnemar_exact(labels: np.ndarray, first: np.ndarray, second: np.ndarray) -> dict[str, float]:
    """Exact McNemar test that two classifiers' predicted labels are equally accurate on the same subjects.

    Returns ``first_only`` (subjects only the first gets right), ``second_only``, ``difference`` (accuracy of first
    minus second) and the two-sided ``p`` of a binomial test of the discordant pairs at 1/2 (1 when there are none).
    """
    labels = np.asarray(labels).astype(int)
    right_first = np.asarray(first).astype(int) == labels
    right_second = np.asarray(second).astype(int) == labels
    first_only = int(np.sum(right_first & ~right_second))
    second_only = int(np.sum(~right_first & right_second))
    discordant = first_only + second_only
    p = stats.binomtest(first_only, discordant, 0.5).pvalue if discordant else 1.0
    return {"first_only": first_only, "second_only": second_only,
            "difference": (first_only - second_only) / len(labels), "p": float(p)}


def holm(p_values: np.ndarray, *, missing: Literal["raise", "omit"] = "raise") -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error), in the input's order.

    ``missing="omit"``: a NaN p-value (a claim with no test) stays NaN and does not count in the family;
    ``"raise"`` (default) refuses it like any p-value outside [0, 1].
    """
    p = np.asarray(p_values, dtype=float)
    if missing == "omit":
        adjusted = np.full(p.shape, np.nan)
        tested = ~np.isnan(p)
        adjusted[tested] = holm(p[tested])
        return adjusted
    if missing != "raise":
        raise ValueError(f"missing must be 'raise' or 'omit', got {missing!r}")
    if p.size == 0:
        return p
    if np.any((p < 0) | (p > 1) | np.isnan(p)):
        raise ValueError("p-values must lie in [0, 1]")
    order = np.argsort(p)
    scaled = (len(p) - np.arange(len(p))) * p[order]
    adjusted = np.empty_like(p)
    adjusted[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
    return adjusted


def stratified_bootstrap(statistic: Callable[..., float], labels: np.ndarray, *scores: np.ndarray,
                         n_resamples: int = 2000, confidence: float = 0.95,
                         seed: int = 0) -> dict[str, float]:
    """Percentile interval of ``statistic(labels, *scores)`` over resamples of subjects drawn within each class.

    Paired: every score array is resampled with the same subjects, so a statistic of two classifiers (say a
    difference of AUCs) keeps their correlation. Returns ``estimate`` (on the data), ``low``, ``high`` and ``se``
    (the resamples' SD).
    """
    positive = _labels(labels)
    labels = np.asarray(labels)
    scores = [np.asarray(s) for s in scores]
    if any(len(s) != len(labels) for s in scores):
        raise ValueError("every score array needs one value per label")
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(positive), np.flatnonzero(~positive)]
    values = np.empty(n_resamples)
    for k in range(n_resamples):
        index = np.concatenate([rng.choice(group, size=len(group), replace=True) for group in groups])
        values[k] = statistic(labels[index], *(s[index] for s in scores))
    tail = (1 - confidence) / 2
    low, high = np.quantile(values, [tail, 1 - tail])
    return {"estimate": float(statistic(labels, *scores)), "low": float(low), "high": float(high),
            "se": float(values.std(ddof=1))}


def corrected_resampled_ttest(differences: np.ndarray, n_train: int, n_test: int) -> dict[str, float]:
    """Nadeau & Bengio's corrected resampled t-test of ``differences`` (one per train/test split, e.g. the folds of
    repeated k-fold CV): ``t = mean / sqrt((1/J + n_test/n_train) var)``, ``J - 1`` degrees of freedom.

    Returns ``mean``, ``t``, ``df`` and the two-sided ``p``.
    """
    d = np.asarray(differences, dtype=float)
    if d.size < 2:
        raise ValueError("at least two splits are needed")
    variance = d.var(ddof=1) * (1 / d.size + n_test / n_train)
    mean = float(d.mean())
    if variance == 0:
        return {"mean": mean, "t": float("inf") if mean else 0.0, "df": d.size - 1, "p": 0.0 if mean else 1.0}
    t = mean / np.sqrt(variance)
    return {"mean": mean, "t": float(t), "df": d.size - 1, "p": float(2 * stats.t.sf(abs(t), d.size - 1))}


def tost(difference: float, se: float, margin: float) -> dict[str, float]:
    """Two one-sided z-tests that ``difference`` (with standard error ``se``) lies within ``(-margin, margin)``.

    Returns ``p`` (the larger one-sided p: equivalence is shown when it is below alpha) and the ``low``/``high`` of
    the 90% interval that matches a 5% TOST.
    """
    if margin <= 0 or se <= 0:
        raise ValueError("margin and se must be positive")
    p_lower = stats.norm.sf((difference + margin) / se)  # H0: difference <= -margin
    p_upper = stats.norm.cdf((difference - margin) / se)  # H0: difference >= margin
    z = stats.norm.ppf(0.95)
    return {"p": float(max(p_lower, p_upper)), "low": difference - z * se, "high": difference + z * se}
