"""Does a sex classifier only read head size? Its predictions against intracranial volume (TIV).

Reviewers of sex classifiers ask this first: men's heads are about 10% larger, and many maps scale with size.
Two answers, both on the out-of-fold predictions of a classifier and the subjects' TIV:

- **residualised**: in the classifier's own folds, a logistic regression on log TIV alone and one on log TIV plus
  the classifier's logit (each fitted on the training subjects of a fold, scored on its test subjects). The
  classifier adds to head size when the second's AUC exceeds the first's (paired DeLong test).
- **matched**: females and males paired on log TIV (nearest neighbour without replacement within a caliper), so
  that head size carries no information in the matched set (its AUC there is shown: it should be near 0.5); the
  classifier's accuracy and AUC among the matched subjects, with bootstrap intervals.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment
from sklearn.linear_model import LogisticRegression

from .stats import delong
from .uncertainty import metric_intervals, minimal_detectable_effect

__all__ = ["CALIPER_SD", "head_size_adjusted", "match_on_head_size"]

#: Largest difference of log TIV within a matched pair, in within-sex SDs of log TIV.
CALIPER_SD = 0.2
HEAD_SIZE = "head size alone (logistic on log TIV)"
CLASSIFIER = "classifier"
BOTH = "classifier + head size (logistic)"


def _logit(probability: np.ndarray) -> np.ndarray:
    clipped = np.clip(probability, 1e-6, 1 - 1e-6)
    return np.log(clipped / (1 - clipped))


def _out_of_fold(features: np.ndarray, labels: np.ndarray, folds: np.ndarray) -> np.ndarray:
    out = np.empty(len(labels))
    for fold in np.unique(folds):
        test = folds == fold
        model = LogisticRegression(C=1e6, max_iter=1000).fit(features[~test], labels[~test])
        out[test] = model.predict_proba(features[test])[:, 1]
    return out


def match_on_head_size(female: np.ndarray, log_tiv: np.ndarray, caliper: float) -> tuple[np.ndarray, np.ndarray]:
    """Female-male pairs (indices) that minimise the total |difference of log TIV|, each within ``caliper``.

    An optimal assignment (Hungarian algorithm) on the absolute differences, pairs beyond the caliper dropped.
    """
    female = np.asarray(female, bool)
    women, men = np.flatnonzero(female), np.flatnonzero(~female)
    if len(women) == 0 or len(men) == 0:
        return np.empty(0, int), np.empty(0, int)
    cost = np.abs(log_tiv[women, None] - log_tiv[None, men])
    rows, columns = linear_sum_assignment(np.where(cost <= caliper, cost, 1e6))
    kept = cost[rows, columns] <= caliper
    return women[rows[kept]], men[columns[kept]]


def head_size_adjusted(labels: np.ndarray, probability: np.ndarray, folds: np.ndarray, tiv: np.ndarray,
                       female: np.ndarray, *, n_resamples: int = 1000, seed: int = 0) -> dict[str, pd.DataFrame]:
    """The residualised and matched analyses of one classifier's out-of-fold predictions.

    Parameters
    ----------
    labels : array of {0, 1}
        The classifier's labels (for a sex classifier, 1 = female).
    probability : array
        Its out-of-fold probabilities of label 1.
    folds : array
        The outer fold of each subject (the residualised models use the same folds).
    tiv : array
        Intracranial volume (ml); subjects with an unknown (NaN) or non-positive value are left out and counted.
    female : array of bool
        Sex, for the matching (for a sex classifier, the label).
    n_resamples, seed
        Stratified bootstrap of the intervals.

    Returns
    -------
    dict
        ``rows``: one row per predictor (head size alone, classifier, classifier + head size; then the classifier
        and head size in the matched set) with accuracy, sensitivity, specificity and AUC and their 95% bootstrap
        intervals (:func:`~studylib.evaluate.uncertainty.metric_intervals`); ``tests``: the paired
        DeLong test of classifier + head size against head size alone, with its minimal detectable effect.
    """
    labels = np.asarray(labels).astype(int)
    probability, tiv = np.asarray(probability, float), np.asarray(tiv, float)
    known = np.isfinite(tiv) & (tiv > 0)
    if known.sum() < 10:
        raise ValueError(f"head-size analysis needs intracranial volumes: {int(known.sum())} of {len(tiv)} known")
    labels, probability, folds = labels[known], probability[known], np.asarray(folds)[known]
    female, log_tiv = np.asarray(female, bool)[known], np.log(tiv[known])
    head = _out_of_fold(log_tiv[:, None], labels, folds)
    both = _out_of_fold(np.column_stack([log_tiv, _logit(probability)]), labels, folds)
    everyone = "all with TIV"
    parts = [pd.DataFrame({"predictor": name, "subjects set": everyone, "label": labels, "probability": p})
             for name, p in ((HEAD_SIZE, head), (CLASSIFIER, probability), (BOTH, both))]
    within_sd = float(np.sqrt(np.mean([np.var(log_tiv[female == s], ddof=1) for s in (True, False)
                                       if (female == s).sum() > 1])))
    women, men = match_on_head_size(female, log_tiv, CALIPER_SD * within_sd)
    matched = np.concatenate([women, men])
    pairs = f"TIV-matched pairs (caliper {CALIPER_SD} SD)"
    if len(women) >= 5:
        parts += [pd.DataFrame({"predictor": name, "subjects set": pairs, "label": labels[matched],
                                "probability": p[matched]}) for name, p in ((CLASSIFIER, probability),
                                                                             (HEAD_SIZE, head))]
    order = {(n, s): k for k, (n, s) in enumerate([(HEAD_SIZE, everyone), (CLASSIFIER, everyone), (BOTH, everyone),
                                                   (CLASSIFIER, pairs), (HEAD_SIZE, pairs)])}
    rows = metric_intervals(pd.concat(parts, ignore_index=True), ["predictor", "subjects set"],
                            n_resamples=n_resamples, seed=seed)
    rows = rows.iloc[np.argsort([order[(n, s)] for n, s in zip(rows["predictor"], rows["subjects set"])])]
    test = delong(labels, both, head)
    tests = pd.DataFrame([{"comparison": "classifier + head size vs head size alone", "n": len(labels),
                           "auc difference": test["difference"], "se": test["se"], "z": test["z"], "p": test["p"],
                           "minimal detectable AUC difference": minimal_detectable_effect(test["se"]),
                           "left out (no TIV)": int((~known).sum()), "matched pairs": len(women)}])
    return {"rows": rows.reset_index(drop=True), "tests": tests}
