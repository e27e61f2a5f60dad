"""Intervals and paired tests for the study's classification results.

- :func:`metric_intervals` -- accuracy, sensitivity, specificity and AUC per group with stratified bootstrap 95%
  intervals over subjects (every resample keeps the class counts, so each metric is defined in each).
- :func:`paired_comparison` -- two classifiers on the same subjects: exact McNemar for accuracy, DeLong for AUC, and
  the minimal detectable effect of each at this n (two-sided 5%, 80% power).
- :func:`compare` -- :func:`paired_comparison` for named pairs (arms, or stacking methods) in every group;
  :func:`holm_adjusted` adjusts the p-values of every comparison of a run together (its family of claims).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from .stats import delong, holm, mcnemar_exact

__all__ = ["METRICS", "compare", "holm_adjusted", "metric_intervals", "minimal_detectable_effect", "paired_comparison"]

METRICS = ("accuracy", "sensitivity", "specificity", "auc")

_POWER_Z = stats.norm.ppf(0.975) + stats.norm.ppf(0.80)


def _bootstrap(labels: np.ndarray, probability: np.ndarray, n_resamples: int, confidence: float,
               seed: int) -> dict[str, float]:
    """All four metrics on the data and their percentile intervals over stratified resamples (vectorised)."""
    labels = np.asarray(labels).astype(int)
    probability = np.asarray(probability, dtype=float)
    positive, negative = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    m, k = len(positive), len(negative)

    def scores(p_pos: np.ndarray, p_neg: np.ndarray) -> dict[str, np.ndarray]:
        hits_pos, hits_neg = (p_pos >= 0.5).sum(axis=-1), (p_neg < 0.5).sum(axis=-1)
        ranks = stats.rankdata(np.concatenate([p_pos, p_neg], axis=-1), axis=-1)
        out = {"accuracy": (hits_pos + hits_neg) / (m + k),
               "sensitivity": hits_pos / m if m else np.full(np.shape(hits_pos), np.nan),
               "specificity": hits_neg / k if k else np.full(np.shape(hits_neg), np.nan)}
        out["auc"] = ((ranks[..., :m].sum(axis=-1) - m * (m + 1) / 2) / (m * k) if m and k
                      else np.full(np.shape(hits_pos), np.nan))
        return out

    point = {key: float(value) for key, value in scores(probability[positive], probability[negative]).items()}
    result = {"subjects": m + k, **point}
    if n_resamples and m and k:
        rng = np.random.default_rng(seed)
        draws = scores(probability[rng.choice(positive, (n_resamples, m))],
                       probability[rng.choice(negative, (n_resamples, k))])
        tail = (1 - confidence) / 2
        for key, values in draws.items():
            result[f"{key} low"], result[f"{key} high"] = np.quantile(values, [tail, 1 - tail])
    else:
        for key in METRICS:
            result[f"{key} low"] = result[f"{key} high"] = np.nan
    return result


def metric_intervals(predictions: pd.DataFrame, by: Sequence[str], *, n_resamples: int = 1000,
                     confidence: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """Accuracy, sensitivity (label 1), specificity and AUC of each group of ``predictions`` (columns ``label`` and
    ``probability``, threshold 1/2), each with a stratified bootstrap interval over the group's rows (subjects).

    Columns: ``by``, ``subjects``, then ``<metric>``, ``<metric> low``, ``<metric> high`` for each metric.
    """
    rows = []
    for keys, group in predictions.groupby(list(by), sort=True):
        keys = keys if isinstance(keys, tuple) else (keys,)
        rows.append({**dict(zip(by, keys)),
                     **_bootstrap(group["label"].to_numpy(), group["probability"].to_numpy(), n_resamples,
                                  confidence, seed)})
    columns = list(by) + ["subjects"] + [f"{key}{part}" for key in METRICS for part in ("", " low", " high")]
    return pd.DataFrame(rows, columns=columns)


def minimal_detectable_effect(se: float) -> float:
    """The difference a two-sided 5% test with standard error ``se`` detects with 80% power: ``(z_0.975 + z_0.8) se``."""
    return float(_POWER_Z * se)


def paired_comparison(labels: np.ndarray, first: np.ndarray, second: np.ndarray) -> dict[str, float]:
    """Two classifiers' probabilities for the same subjects, compared.

    Returns accuracies and their difference (first - second) with the exact McNemar p-value and the minimal detectable
    accuracy difference at this n (from the discordant share ``d``: ``se = sqrt(d / n)``, the McNemar test's standard
    error under no difference); AUCs and their difference with DeLong's 95% interval, p-value and minimal detectable
    AUC difference (from DeLong's standard error).
    """
    labels = np.asarray(labels).astype(int)
    first, second = np.asarray(first, dtype=float), np.asarray(second, dtype=float)
    n = len(labels)
    accuracy = mcnemar_exact(labels, first >= 0.5, second >= 0.5)
    discordant = (accuracy["first_only"] + accuracy["second_only"]) / n
    auc = delong(labels, first, second)
    z = stats.norm.ppf(0.975)
    return {"subjects": n,
            "accuracy first": float(((first >= 0.5) == labels).mean()),
            "accuracy second": float(((second >= 0.5) == labels).mean()),
            "accuracy difference": accuracy["difference"], "discordant": accuracy["first_only"] + accuracy["second_only"],
            "mcnemar p": accuracy["p"],
            "accuracy MDE": minimal_detectable_effect(np.sqrt(max(discordant, 1 / n) / n)),
            "auc first": auc["auc_first"], "auc second": auc["auc_second"], "auc difference": auc["difference"],
            "auc difference low": auc["difference"] - z * auc["se"],
            "auc difference high": auc["difference"] + z * auc["se"],
            "delong p": auc["p"], "auc MDE": minimal_detectable_effect(auc["se"])}


def compare(predictions: pd.DataFrame, column: str, pairs: Sequence[tuple[str, str]], keys: Sequence[str],
            *, subject: str = "subject") -> pd.DataFrame:
    """Paired comparisons of ``column``'s values (e.g. arms, or stacking methods) within each group of ``keys``.

    For every group and pair ``(first, second)`` present in it, the two sets of predictions are matched on ``subject``
    (a pair whose subjects differ is an error) and compared by :func:`paired_comparison`. The p-values are raw: adjust
    the run's comparisons together with :func:`holm_adjusted`.
    """
    rows = []
    for group_keys, group in predictions.groupby(list(keys), sort=True):
        group_keys = group_keys if isinstance(group_keys, tuple) else (group_keys,)
        present = set(group[column])
        for first, second in pairs:
            if first not in present or second not in present:
                continue
            a = group[group[column] == first].set_index(subject)
            b = group[group[column] == second].set_index(subject)
            if set(a.index) != set(b.index):
                raise ValueError(f"{dict(zip(keys, group_keys))}: {first!r} and {second!r} were tested on different "
                                 f"subjects ({len(set(a.index) ^ set(b.index))} differ); a paired test needs the same")
            b = b.loc[a.index]
            if not np.array_equal(a["label"].to_numpy(), b["label"].to_numpy()):
                raise ValueError(f"{dict(zip(keys, group_keys))}: labels differ between {first!r} and {second!r}")
            rows.append({**dict(zip(keys, group_keys)), "first": first, "second": second,
                         **paired_comparison(a["label"].to_numpy(), a["probability"].to_numpy(),
                                             b["probability"].to_numpy())})
    return pd.DataFrame(rows)


def holm_adjusted(*comparisons: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``comparisons`` (tables of :func:`compare`) as one family, with ``mcnemar p (Holm)`` and
    ``delong p (Holm)``: Holm's adjustment of each test's p-values across every row."""
    table = pd.concat([c for c in comparisons if not c.empty], ignore_index=True) if any(
        not c.empty for c in comparisons) else pd.DataFrame()
    if not table.empty:
        table["mcnemar p (Holm)"] = holm(table["mcnemar p"].to_numpy())
        table["delong p (Holm)"] = holm(table["delong p"].to_numpy())
    return table
