from __future__ import annotations

import numpy as np
import pytest

from studylib.evaluate.confounds import CLASSIFIER, head_size_adjusted, match_on_head_size


def _cohort(n=800, seed=0):
    rng = np.random.default_rng(seed)
    female = rng.random(n) < 0.5
    log_tiv = np.log(1300) - 0.1 * female + 0.12 * rng.standard_normal(n)
    folds = rng.permutation(np.arange(n) % 5)
    return rng, female, log_tiv, folds


def _row(result, predictor, subjects):
    rows = result["rows"]
    return rows[(rows["predictor"] == predictor) & rows["subjects set"].str.startswith(subjects)].iloc[0]


def test_a_classifier_that_reads_head_size_only_adds_nothing_and_fails_in_matched_pairs():
    rng, female, log_tiv, folds = _cohort()
    reads_size = 1 / (1 + np.exp(20 * (log_tiv - log_tiv.mean()) + 0.3 * rng.standard_normal(len(female))))
    result = head_size_adjusted(female.astype(int), reads_size, folds, np.exp(log_tiv), female, n_resamples=300)
    assert _row(result, CLASSIFIER, "all")["auc"] > 0.65  # it does separate the sexes...
    matched = _row(result, CLASSIFIER, "TIV-matched")
    assert matched["auc low"] < 0.5 < matched["auc high"]  # ...but not at equal head size
    assert result["tests"].iloc[0]["p"] > 0.01  # and adds nothing to head size


def test_a_classifier_with_its_own_signal_survives_both_adjustments():
    rng, female, log_tiv, folds = _cohort(seed=1)
    signal = 1 / (1 + np.exp(-(2.0 * (female - 0.5) * 2 + rng.standard_normal(len(female)))))
    tiv = np.exp(log_tiv)
    tiv[:7] = np.nan  # unknown volumes are left out and counted
    result = head_size_adjusted(female.astype(int), signal, folds, tiv, female, n_resamples=300)
    assert _row(result, CLASSIFIER, "TIV-matched")["auc low"] > 0.7
    tests = result["tests"].iloc[0]
    assert tests["p"] < 1e-6 and tests["auc difference"] > 0.1 and tests["left out (no TIV)"] == 7
    head_matched = _row(result, "head size alone (logistic on log TIV)", "TIV-matched")
    assert abs(head_matched["auc"] - 0.5) < 0.06  # matching removed what head size says about sex


def test_matching_pairs_each_woman_with_one_man_within_the_caliper():
    _, female, log_tiv, _ = _cohort(n=300, seed=2)
    women, men = match_on_head_size(female, log_tiv, 0.02)
    assert female[women].all() and not female[men].any()
    assert len(set(women)) == len(women) and len(set(men)) == len(men)
    assert np.all(np.abs(log_tiv[women] - log_tiv[men]) <= 0.02) and len(women) > 50


def test_too_few_volumes_is_an_error():
    with pytest.raises(ValueError, match="intracranial volumes: 3 of 20"):
        head_size_adjusted(np.arange(20) % 2, np.full(20, 0.5), np.arange(20) % 2,
                           np.r_[[1300.0] * 3, [np.nan] * 17], np.arange(20) % 2 == 1)
