"""Paired comparisons and intervals: DeLong, exact McNemar, Holm, the stratified bootstrap."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from studylib.evaluate.stats import (corrected_resampled_ttest, delong, holm, mcnemar_exact, stratified_bootstrap,
                                     tost)


def test_delong_auc_equals_scikit_learn_with_ties():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    scores = np.round(rng.normal(size=200) + labels, 1)  # rounding makes ties
    assert delong(labels, scores)["auc"] == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_delong_variance_of_a_hand_worked_example():
    # positives 0.9, 0.8, 0.4 and negatives 0.7, 0.3: placements of the positives (share of negatives below them)
    # 1, 1, 1/2; of the negatives (share of positives above) 2/3, 1; AUC 5/6; variance
    # var(1, 1, 1/2) / 3 + var(2/3, 1) / 2 = (1/12) / 3 + (1/18) / 2 = 1/18 (DeLong et al. 1988, eqs. 3-5)
    labels = np.array([1, 1, 1, 0, 0])
    result = delong(labels, np.array([0.9, 0.8, 0.4, 0.7, 0.3]))
    assert result["auc"] == pytest.approx(5 / 6)
    assert result["se"] ** 2 == pytest.approx(1 / 18)


def test_delong_reproduces_the_published_hanley_mcneil_example():
    """Hanley & McNeil (1982, Radiology 143:29, Table 1): CT ratings (1 = definitely normal ... 5 = definitely
    abnormal) of 58 normal and 51 abnormal subjects. Stata's manual, [R] roctab, analyses these data (its
    ``hanley.dta``) with DeLong et al.'s (1988) standard error, its default, and prints: 109 obs., ROC area 0.8932,
    Std. Err. 0.0307, asymptotic normal 95% interval 0.83295 to 0.95339. (The Hanley-McNeil formula would give
    0.0325 and Bamber's 0.0306, so the printed SE singles out DeLong's.)"""
    ratings = np.arange(1, 6)
    normal = np.repeat(ratings, [33, 6, 6, 11, 2])
    abnormal = np.repeat(ratings, [3, 2, 2, 11, 33])
    labels = np.r_[np.zeros(len(normal)), np.ones(len(abnormal))].astype(int)
    result = delong(labels, np.r_[normal, abnormal].astype(float))
    assert len(labels) == 109
    assert round(result["auc"], 4) == 0.8932 and round(result["se"], 4) == 0.0307
    low, high = result["auc"] + np.array([-1, 1]) * stats.norm.ppf(0.975) * result["se"]
    assert (round(low, 5), round(high, 5)) == (0.83295, 0.95339)


def test_delong_standard_error_matches_the_spread_of_auc_over_samples():
    rng = np.random.default_rng(1)
    labels = np.repeat([0, 1], 100)
    aucs, ses = [], []
    for _ in range(300):
        scores = rng.normal(size=200) + labels
        result = delong(labels, scores)
        aucs.append(result["auc"])
        ses.append(result["se"])
    assert np.mean(ses) == pytest.approx(np.std(aucs), rel=0.15)


def test_delong_paired_test_keeps_its_size_and_finds_a_real_difference():
    rng = np.random.default_rng(2)
    labels = np.repeat([0, 1], 75)
    rejections = 0
    for _ in range(300):
        shared = rng.normal(size=150)  # correlated predictors, as two arms on the same subjects are
        first = labels + shared + rng.normal(size=150)
        second = labels + shared + rng.normal(size=150)
        rejections += delong(labels, first, second)["p"] < 0.05
    assert 0.02 <= rejections / 300 <= 0.09
    strong, weak = labels * 2.0 + rng.normal(size=150), labels * 0.2 + rng.normal(size=150)
    result = delong(labels, strong, weak)
    assert result["difference"] > 0 and result["p"] < 1e-4
    same = delong(labels, strong, 3 * strong + 1)  # the same ranks
    assert same["difference"] == 0 and same["p"] == 1.0


def test_mcnemar_exact_counts_discordant_pairs():
    labels = np.ones(20, dtype=int)
    first = np.ones(20, dtype=int)
    second = np.ones(20, dtype=int)
    second[:9] = 0  # nine subjects only the first gets right
    first[9] = 0  # one only the second gets right
    result = mcnemar_exact(labels, first, second)
    assert (result["first_only"], result["second_only"]) == (9, 1)
    assert result["p"] == pytest.approx(2 * 11 / 1024)  # two-sided binomial, 9 of 10 at 1/2
    assert result["difference"] == pytest.approx(8 / 20)
    assert mcnemar_exact(labels, first, first)["p"] == 1.0


def test_holm_adjusts_step_down_in_input_order():
    adjusted = holm(np.array([0.01, 0.04, 0.03, 0.005]))
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm(np.array([0.5, 0.9])) == pytest.approx([1.0, 1.0])  # monotone: never below an earlier step
    with pytest.raises(ValueError, match="p-values"):
        holm(np.array([1.5]))
    with pytest.raises(ValueError, match="p-values"):
        holm(np.array([0.01, np.nan]))  # a missing test is refused unless the caller says to omit it
    # omitted: the missing test stays missing and the family is the three tested claims
    omitted = holm(np.array([0.01, np.nan, 0.04, 0.03]), missing="omit")
    assert np.isnan(omitted[1]) and omitted[[0, 2, 3]] == pytest.approx([0.03, 0.06, 0.06])


def test_stratified_bootstrap_covers_the_true_accuracy_about_95_percent_of_the_time():
    rng = np.random.default_rng(3)
    labels = np.repeat([0, 1], 50)

    def accuracy(y, correct):
        return float(np.mean(correct))

    covered = 0
    for k in range(200):
        correct = rng.random(100) < 0.7
        interval = stratified_bootstrap(accuracy, labels, correct, n_resamples=400, seed=k)
        covered += interval["low"] <= 0.7 <= interval["high"]
    assert 0.90 <= covered / 200 <= 0.985


def test_stratified_bootstrap_keeps_class_counts_and_pairs():
    labels = np.repeat([0, 1], [30, 10])
    seen = []

    def record(y, first, second):
        seen.append((int(y.sum()), bool(np.array_equal(first, second))))
        return roc_auc_score(y, first)

    scores = np.linspace(0, 1, 40)
    stratified_bootstrap(record, labels, scores, scores.copy(), n_resamples=50)
    assert all(count == 10 and paired for count, paired in seen)
    with pytest.raises(ValueError, match="both classes"):
        stratified_bootstrap(record, np.zeros(5, dtype=int), np.zeros(5), np.zeros(5))


def test_corrected_resampled_ttest_inflates_the_variance_for_overlapping_training_sets():
    from scipy import stats

    d = np.array([0.02, 0.05, -0.01, 0.04, 0.03, 0.00, 0.06, 0.02, 0.01, 0.03])
    plain = stats.ttest_1samp(d, 0.0)
    corrected = corrected_resampled_ttest(d, n_train=90, n_test=10)
    # hand: var 0.000454..., factor 1/10 + 10/90; t = mean / sqrt(var * factor)
    expected_t = d.mean() / np.sqrt(d.var(ddof=1) * (0.1 + 10 / 90))
    assert corrected["t"] == pytest.approx(expected_t)
    assert corrected["df"] == 9 and corrected["p"] > plain.pvalue  # the correction is conservative
    assert corrected_resampled_ttest(d, n_train=10**9, n_test=1)["p"] == pytest.approx(plain.pvalue, rel=1e-6)


def test_tost_shows_equivalence_only_when_the_interval_sits_inside_the_margin():
    inside = tost(0.01, 0.01, margin=0.05)
    assert inside["p"] < 0.05 and -0.05 < inside["low"] and inside["high"] < 0.05
    wide = tost(0.0, 0.04, margin=0.05)  # not significant, and not equivalent either
    assert wide["p"] > 0.05
    from scipy import stats

    assert inside["p"] == pytest.approx(stats.norm.cdf((0.01 - 0.05) / 0.01))
