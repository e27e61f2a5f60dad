from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from studylib.explain.recovery import mean_map, paper_overlap, recovery, recovery_intervals, region_importance, t_maps


def test_recovery_scores_a_map_that_follows_the_planted_effect():
    rng = np.random.default_rng(0)
    effect = np.zeros(1000)
    effect[:100] = np.linspace(1, 2, 100)
    good = np.abs(effect) + 0.3 * rng.normal(size=1000)
    scores = recovery(good, effect)
    assert scores["auc"] > 0.95 and scores["spearman"] > 0.3 and scores["planted vertices"] == 100
    assert abs(recovery(rng.normal(size=1000), effect)["auc"] - 0.5) < 0.1
    with pytest.raises(ValueError, match="zero everywhere"):
        recovery(good, np.zeros(1000))


def test_recovery_intervals_cover_the_subjects_spread_and_ignore_vertices_off_the_map():
    rng = np.random.default_rng(1)
    effect = np.r_[np.ones(50), np.zeros(150), np.nan]
    maps = rng.normal(size=(40, 201)) + 0.4 * np.abs(np.nan_to_num(effect))
    maps[:, 200] = np.nan
    result = recovery_intervals(maps, np.arange(40) % 2, effect, n_resamples=100)
    assert result["auc low"] < result["auc"] < result["auc high"] and result["vertices"] == 200
    np.testing.assert_allclose(mean_map(maps)[:200], maps[:, :200].mean(axis=0))
    assert np.isnan(mean_map(maps)[200])


def test_t_maps_use_each_folds_training_subjects_and_keep_folds_in_resamples():
    rng = np.random.default_rng(2)
    labels = np.arange(60) % 2
    folds = np.arange(60) % 3
    images = rng.normal(size=(60, 4, 4))
    images[:, 1, 2] += 2.0 * labels
    t = t_maps(images, labels, folds)
    assert np.unravel_index(np.argmax(t), t.shape) == (1, 2)
    # each fold's term is Welch's t on the subjects outside that fold (scipy's, for the record)
    expected = np.mean([np.abs(stats.ttest_ind(images[(folds != k) & (labels == 1)],
                                               images[(folds != k) & (labels == 0)], equal_var=False).statistic)
                        for k in range(3)], axis=0)
    np.testing.assert_allclose(t, expected)
    resampled = t_maps(images, labels, folds, n_resamples=5, seed=3)
    assert resampled.shape == (5, 4, 4) and np.all(np.argmax(resampled.reshape(5, -1), axis=1) == 6)


def test_regions_and_the_papers_overlap():
    labels = np.array([1, 1, 2, 2, 3, 0])
    ranked = region_importance(np.array([1.0, 3.0, 5.0, np.nan, 0.0, 9.0]), labels, {1: "a", 2: "b", 3: "c"})
    assert list(ranked.index) == ["b", "a", "c"] and ranked["a"] == 2.0  # label 0 (no region) left out
    overlap = paper_overlap(["x", "y", "z", "w"], ["y", "q"], population=34)
    assert overlap["overlap"] == 1 and overlap["top"] == 2
    assert overlap["p (hypergeometric)"] == pytest.approx(1 - (32 / 34) * (31 / 33))


def test_recovery_equals_scikit_learn_and_scipy():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(4)
    effect = np.round(rng.normal(size=500), 1)  # ties in |effect|
    importance = np.round(np.abs(effect) + rng.normal(size=500), 1)  # and in importance
    scores = recovery(importance, effect, fraction=0.5)
    planted = np.abs(effect) >= 0.5 * np.abs(effect).max()
    assert scores["auc"] == pytest.approx(roc_auc_score(planted, importance))
    assert scores["spearman"] == pytest.approx(stats.spearmanr(importance, np.abs(effect)).statistic)


def test_regional_effects_are_cohens_d_of_the_regional_means():
    from studylib.explain.recovery import regional_effects

    rng = np.random.default_rng(5)
    labels = np.array([1, 1, 2, 2, 0])
    group = np.arange(50) % 2
    region_one = rng.normal(size=50) + 0.8 * group
    maps = np.column_stack([region_one, region_one, rng.normal(size=50), rng.normal(size=50), np.full(50, np.nan)])
    d = regional_effects(maps, labels, group, {1: "a", 2: "b"})
    a, b = region_one[group == 1], region_one[group == 0]
    expected = (a.mean() - b.mean()) / np.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2)
    assert d["a"] == pytest.approx(expected) and abs(d["b"]) < d["a"]
