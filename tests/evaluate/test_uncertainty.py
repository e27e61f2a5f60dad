import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, recall_score, roc_auc_score

from studylib.evaluate.stats import delong
from studylib.evaluate.uncertainty import (compare, holm_adjusted, metric_intervals, minimal_detectable_effect,
                                           paired_comparison)


def _predictions(n, seed, signal=1.0, groups=("a",)):
    rng = np.random.default_rng(seed)
    parts = []
    for group in groups:
        label = rng.integers(0, 2, n)
        probability = 1 / (1 + np.exp(-(signal * (2 * label - 1) + rng.normal(size=n))))
        parts.append(pd.DataFrame({"group": group, "subject": np.arange(n), "label": label,
                                   "probability": probability}))
    return pd.concat(parts, ignore_index=True)


def test_metrics_match_scikit_learn_on_random_data():
    predictions = _predictions(157, seed=1, groups=("a", "b"))
    table = metric_intervals(predictions, ["group"], n_resamples=100, seed=0).set_index("group")
    for group, rows in predictions.groupby("group"):
        y, p = rows["label"], rows["probability"]
        predicted = (p >= 0.5).astype(int)
        assert table.loc[group, "accuracy"] == pytest.approx(accuracy_score(y, predicted))
        assert table.loc[group, "sensitivity"] == pytest.approx(recall_score(y, predicted))
        assert table.loc[group, "specificity"] == pytest.approx(recall_score(1 - y, 1 - predicted))
        assert table.loc[group, "auc"] == pytest.approx(roc_auc_score(y, p))
        for metric in ("accuracy", "sensitivity", "specificity", "auc"):
            assert table.loc[group, f"{metric} low"] <= table.loc[group, metric] <= table.loc[group, f"{metric} high"]


def test_bootstrap_intervals_cover_the_true_accuracy_and_auc_about_95_percent_of_the_time():
    """Simulated classifier with known population accuracy and AUC: logit = (2y - 1) + N(0, 1)."""
    from scipy import stats

    true_accuracy = stats.norm.cdf(1.0)
    true_auc = stats.norm.cdf(2.0 / np.sqrt(2))
    covered = {"accuracy": 0, "auc": 0}
    simulations = 300
    for seed in range(simulations):
        row = metric_intervals(_predictions(200, seed), ["group"], n_resamples=400, seed=seed).iloc[0]
        covered["accuracy"] += row["accuracy low"] <= true_accuracy <= row["accuracy high"]
        covered["auc"] += row["auc low"] <= true_auc <= row["auc high"]
    for metric, count in covered.items():
        assert 0.90 <= count / simulations <= 0.99, (metric, count / simulations)


def test_paired_comparison_counts_discordant_subjects_and_uses_delong():
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 2, 120)
    first = np.clip(labels * 0.4 + rng.uniform(0, 0.6, 120), 0, 1)
    second = rng.uniform(0, 1, 120)
    result = paired_comparison(labels, first, second)
    right_first, right_second = (first >= 0.5) == labels, (second >= 0.5) == labels
    assert result["discordant"] == int(np.sum(right_first != right_second))
    assert result["accuracy difference"] == pytest.approx(right_first.mean() - right_second.mean())
    reference = delong(labels, first, second)
    assert result["auc difference"] == pytest.approx(reference["difference"])
    assert result["delong p"] == pytest.approx(reference["p"])
    assert result["auc MDE"] == pytest.approx(minimal_detectable_effect(reference["se"]))
    assert minimal_detectable_effect(0.01) == pytest.approx(0.028, abs=1e-3)


def test_compare_pairs_the_same_subjects_and_holm_spans_every_comparison():
    table = pd.concat([_predictions(80, seed=5).assign(arm="imagenet"),
                       _predictions(80, seed=5, signal=0.2).assign(arm="scratch")], ignore_index=True)
    table["cohort"] = "c"
    first = compare(table, "arm", [("imagenet", "scratch"), ("2-stage", "imagenet")], ["cohort"])
    assert len(first) == 1  # the absent arm's pair is skipped
    assert first.loc[0, "first"] == "imagenet" and first.loc[0, "subjects"] == 80
    both = holm_adjusted(first, first.assign(cohort="d"))
    assert len(both) == 2
    assert (both["delong p (Holm)"] >= both["delong p"]).all()
    assert both["delong p (Holm)"].iloc[0] == pytest.approx(min(1.0, 2 * both["delong p"].iloc[0]))
    broken = table.drop(table.index[(table["arm"] == "scratch") & (table["subject"] == 3)])
    with pytest.raises(ValueError, match="different subjects"):
        compare(broken, "arm", [("imagenet", "scratch")], ["cohort"])
