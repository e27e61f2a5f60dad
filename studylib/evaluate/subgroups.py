"""Results within groups of subjects: per site (the leave-one-site-out table) and by age (does the 2-stage gain
depend on whether an autism subject's age lies inside the HCP cohort's range?).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from .stats import tost
from .summaries import wilson_interval

__all__ = ["gain_by_age", "per_site_accuracy"]


def per_site_accuracy(predictions: pd.DataFrame, sites: pd.Series,
                      by: tuple[str, ...] = ("cohort", "scheme", "arm", "backbone")) -> pd.DataFrame:
    """Accuracy (threshold 1/2) with its Wilson 95% interval per site, within each group of ``by``.

    ``sites`` maps subject -> site; a subject without a site is an error naming it.
    """
    table = predictions.assign(site=predictions["subject"].map(sites))
    if table["site"].isna().any():
        raise ValueError(f"subjects without a site: {sorted(table.loc[table['site'].isna(), 'subject'].unique())[:5]}")
    rows = []
    for keys, group in table.groupby([*by, "site"], sort=True):
        correct = int(((group["probability"] >= 0.5) == (group["label"] == 1)).sum())
        low, high = wilson_interval(correct, len(group))
        rows.append({**dict(zip([*by, "site"], keys)), "subjects": len(group), "label 1": int(group["label"].sum()),
                     "accuracy": correct / len(group), "accuracy 95% low": low, "accuracy 95% high": high})
    return pd.DataFrame(rows)


def gain_by_age(labels: np.ndarray, first: np.ndarray, second: np.ndarray, age: np.ndarray,
                age_range: tuple[float, float], margin: float) -> pd.DataFrame:
    """The accuracy gain of ``first`` over ``second`` (probabilities for the same subjects) inside and outside an age
    range, and their difference (the interaction).

    Each subject's gain is the difference of the two predictions' correctness (-1, 0 or 1); a group's gain is its
    mean, with the paired standard error; the interaction (inside - outside) has the two groups' standard errors
    combined (independent subjects), a two-sided z-test and a TOST of equivalence within ``margin`` (accuracy
    points as a fraction): a non-significant interaction on a small group is not evidence of no difference; an
    equivalence p below 0.05 is.

    Returns one row per group and one for the interaction: ``subjects``, ``gain``, ``se``, ``low``, ``high``
    (95%), ``p``, and for the interaction ``tost p`` and the ``margin``.
    """
    labels = np.asarray(labels).astype(int)
    gain = (((np.asarray(first) >= 0.5) == labels).astype(float)
            - ((np.asarray(second) >= 0.5) == labels).astype(float))
    age = np.asarray(age, dtype=float)
    if np.isnan(age).any():
        raise ValueError(f"{int(np.isnan(age).sum())} subjects without an age")
    inside = (age >= age_range[0]) & (age <= age_range[1])
    z = stats.norm.ppf(0.975)
    rows, parts = [], {}
    for name, mask in ((f"inside {age_range[0]:g}-{age_range[1]:g} y", inside),
                       (f"outside {age_range[0]:g}-{age_range[1]:g} y", ~inside)):
        values = gain[mask]
        n = len(values)
        mean = float(values.mean()) if n else np.nan
        se = float(values.std(ddof=1) / np.sqrt(n)) if n > 1 else np.nan
        parts[name] = (mean, se)
        p = float(2 * stats.norm.sf(abs(mean / se))) if n > 1 and se > 0 else np.nan
        rows.append({"group": name, "subjects": n, "gain": mean, "se": se, "low": mean - z * se,
                     "high": mean + z * se, "p": p})
    (mean_in, se_in), (mean_out, se_out) = parts.values()
    difference, se = mean_in - mean_out, float(np.hypot(se_in, se_out))
    row = {"group": "interaction (inside - outside)", "subjects": len(gain), "gain": difference, "se": se,
           "low": difference - z * se, "high": difference + z * se, "margin": margin}
    if np.isfinite(se) and se > 0:
        row["p"] = float(2 * stats.norm.sf(abs(difference / se)))
        row["tost p"] = tost(difference, se, margin)["p"]
    rows.append(row)
    return pd.DataFrame(rows)
