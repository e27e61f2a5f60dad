"""Stratified and leave-one-site-out folds, and scikit-learn's splitter over them."""

from __future__ import annotations

import numpy as np
import pytest

from studylib.train.cv import (EVALUATED_SCHEMES, EXCLUDED, KFOLD, SITE_OUT, fold_split, inner_folds, inner_scheme,
                               is_inner, site_folds, stratified_folds, train_test)


def test_stratified_folds_cover_every_subject_once_and_keep_balance():
    labels = np.r_[np.zeros(60, int), np.ones(40, int)]
    folds = stratified_folds(labels, 10, seed=3)
    assert folds.shape == (100,) and set(folds) == set(range(10))
    for fold in range(10):
        train, test = train_test(folds, fold)
        assert not np.intersect1d(train, test).size and len(train) + len(test) == 100
        assert labels[test].sum() == 4  # 40 positives over 10 folds
        np.testing.assert_array_equal(test, np.flatnonzero(folds == fold))
    assert fold_split(folds).get_n_splits() == 10
    train, test = train_test(folds, -1)
    assert len(train) == 100 and len(test) == 0
    with pytest.raises(ValueError, match="no subject is in fold 10"):
        train_test(folds, 10)
    np.testing.assert_array_equal(folds, stratified_folds(labels, 10, seed=3))
    assert not np.array_equal(folds, stratified_folds(labels, 10, seed=4))
    with pytest.raises(ValueError, match="smallest label has 3"):
        stratified_folds(np.r_[np.zeros(20, int), np.ones(3, int)], 5, seed=0)


def test_site_folds_leave_one_site_out():
    sites = ["NYU", "USM", "NYU", "KKI", "USM"]
    folds, names = site_folds(sites)
    assert names == ["KKI", "NYU", "USM"]
    for fold, (train, test) in enumerate(fold_split(folds).split()):
        assert {sites[i] for i in test} == {names[fold]}
        assert names[fold] not in {sites[i] for i in train}
    with pytest.raises(ValueError, match="at least two sites"):
        site_folds(["A", "A"])


@pytest.mark.parametrize("n_folds", [2, 3, 5])
def test_inner_folds_exclude_the_outer_fold_and_cover_its_training_subjects(n_folds):
    labels = np.r_[np.zeros(20, int), np.ones(20, int)]
    folds = stratified_folds(labels, n_folds, seed=4)
    for outer in range(n_folds):
        inner = inner_folds(labels, folds, outer)
        assert (inner[folds == outer] == EXCLUDED).all() and (inner[folds != outer] >= 0).all()
        numbers = np.unique(inner[inner >= 0])
        assert len(numbers) == (2 if n_folds == 2 else n_folds - 1)
        for number in numbers:  # a job of the inner scheme never trains on or predicts the outer fold
            train, test = train_test(inner, number)
            assert not set(np.flatnonzero(folds == outer)) & (set(train) | set(test))
            assert sorted([*train, *test]) == np.flatnonzero(folds != outer).tolist()
            assert set(labels[test]) == {0, 1}
    with pytest.raises(ValueError, match="no subject is in outer fold 9"):
        inner_folds(labels, folds, 9)


def test_scheme_names_are_the_prediction_tables_values_and_inner_schemes_are_recognised():
    assert (KFOLD, SITE_OUT) == ("kfold", "site-out") == EVALUATED_SCHEMES  # written into every predictions table
    assert inner_scheme(2) == "inner2" and is_inner("inner2") and is_inner(inner_scheme(10))
    assert not any(is_inner(scheme) for scheme in ("inner", "innerx", KFOLD, SITE_OUT, "all"))
