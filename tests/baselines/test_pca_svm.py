from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from studylib.baselines.pca_svm import pca_svm


def _data(n=120, p=300, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    features = rng.normal(size=(n, p))
    features[:, :20] += 0.8 * labels[:, None]
    return features, labels, rng.permutation(np.arange(n) % 4)


def test_pca_svm_learns_a_planted_signal_out_of_fold():
    features, labels, folds = _data()
    probability = pca_svm(features, labels, folds, variance=0.9)
    assert np.isfinite(probability).all() and roc_auc_score(labels, probability) > 0.85


def test_each_fold_is_predicted_by_the_pipeline_fitted_on_the_other_folds_only():
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.decomposition import PCA
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    features, labels, folds = _data(seed=1)
    probability = pca_svm(features, labels, folds, variance=0.9, cs=(0.01, 1.0), seed=3)
    for k in (0, 2):
        train = folds != k
        model = GridSearchCV(make_pipeline(StandardScaler(), PCA(n_components=0.9, svd_solver="full"),
                                           CalibratedClassifierCV(LinearSVC(max_iter=20000),
                                                                  ensemble=False, cv=3)),
                             {"calibratedclassifiercv__estimator__C": [0.01, 1.0]}, scoring="roc_auc",
                             cv=StratifiedKFold(3, shuffle=True, random_state=3 + k)).fit(features[train], labels[train])
        np.testing.assert_allclose(probability[folds == k], model.predict_proba(features[folds == k])[:, 1], rtol=1e-4)


def test_bad_inputs_are_named():
    features, labels, folds = _data(n=40)
    features[3, 5] = np.nan
    with pytest.raises(ValueError, match=r"rows \[3\]"):
        pca_svm(features, labels, folds)
    with pytest.raises(ValueError, match="one label and fold per subject"):
        pca_svm(features[:, :10], labels[:-1], folds)
