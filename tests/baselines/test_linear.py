from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from studylib.baselines.linear import linear_reference


def _gaussian(n, separation, features=20, seed=0):
    """Two classes, identity covariance, means ``separation`` apart along the first feature: Bayes
    accuracy Phi(separation / 2)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    x = rng.normal(size=(n, features))
    x[:, 0] += separation * labels
    return x * rng.uniform(0.5, 3.0, features), labels  # scales differ: standardising matters


def test_linear_reference_finds_a_linear_signal_near_the_bayes_ceiling():
    x, y = _gaussian(600, 2.0)
    result = linear_reference(x, y, folds=5, repeats=2, n_bootstrap=200)
    bayes = norm.cdf(1.0)
    assert result.summary["accuracy"] == pytest.approx(bayes, abs=0.05)
    assert result.summary["accuracy_low"] < result.summary["accuracy"] < result.summary["accuracy_high"]
    assert result.summary["auc"] > 0.85
    assert list(result.per_repeat["repeat"]) == [0, 1] and len(result.probability) == 600


def test_linear_reference_stays_at_chance_without_a_signal():
    x, y = _gaussian(400, 0.0, seed=3)
    result = linear_reference(x, y, folds=5, repeats=1, n_bootstrap=200)
    assert result.summary["accuracy_low"] < 0.5 < result.summary["accuracy_high"] + 0.03
    assert result.summary["auc"] < 0.6


def test_linear_reference_rejects_bad_input():
    x, y = _gaussian(40, 1.0)
    with pytest.raises(ValueError, match="one label per subject"):
        linear_reference(x, y[:-1])
    x[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        linear_reference(x, y)
    with pytest.raises(ValueError, match="both 0 and 1"):
        linear_reference(np.ones((10, 2)), np.zeros(10))


def test_linear_reference_on_given_folds_keeps_each_subject_out_of_its_own_training():
    x, y = _gaussian(120, 1.5)
    folds = np.arange(120) % 3
    result = linear_reference(x, y, folds=folds, n_bootstrap=50)
    assert result.summary["folds"] == 3 and result.summary["repeats"] == 1
    # the same folds with one subject's features changed: only that subject's fold can move
    changed = x.copy()
    changed[0] = 100.0
    other = linear_reference(changed, y, folds=folds, n_bootstrap=50)
    np.testing.assert_allclose(other.probability[folds == 0][1:], result.probability[folds == 0][1:])
    assert not np.allclose(other.probability[folds != 0], result.probability[folds != 0])  # trained with it
    with pytest.raises(ValueError, match="fold numbers"):
        linear_reference(x, y, folds=folds[:-1])


def test_linear_reference_on_a_tiny_class_uses_no_impossible_inner_split():
    import warnings

    rng = np.random.default_rng(2)
    x = rng.normal(size=(12, 5))
    y = np.array([1, 1, 1] + [0] * 9)
    folds = np.array([0, 1, 2] + [0, 1, 2] * 3)  # each training set holds two positives, then one in a nested split
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = linear_reference(x, y, folds=folds, n_bootstrap=0)
        assert np.isfinite(result.probability).all()
        single = linear_reference(x[[0, 3, 4, 5, 6, 1, 7, 8]], y[[0, 3, 4, 5, 6, 1, 7, 8]],
                                  folds=np.array([0, 0, 0, 0, 1, 1, 1, 1]), n_bootstrap=0)
        assert np.isfinite(single.probability).all()  # one positive per training set: C stays at 1


def test_linear_reference_fits_with_one_blas_thread(monkeypatch):
    """Its small fits run single-threaded whatever the caller's BLAS threads (spinning threads beside other work made
    a fold 8x slower); the caller's setting is restored afterwards."""
    import studylib.baselines.linear as linear
    from threadpoolctl import threadpool_info, threadpool_limits

    seen = []
    real = linear._one_fold

    def recording(*args, **kwargs):
        seen.append({pool["internal_api"]: pool["num_threads"] for pool in threadpool_info()})
        return real(*args, **kwargs)

    monkeypatch.setattr(linear, "_one_fold", recording)
    rng = np.random.default_rng(0)
    labels = np.arange(40) % 2
    features = rng.normal(size=(40, 5)) + labels[:, None]
    with threadpool_limits(limits=2):
        before = {pool["internal_api"]: pool["num_threads"] for pool in threadpool_info()}
        linear_reference(features, labels, folds=4, repeats=1, n_bootstrap=0)
        after = {pool["internal_api"]: pool["num_threads"] for pool in threadpool_info()}
    assert len(seen) == 4 and all(set(threads.values()) == {1} for threads in seen)
    assert after == before
