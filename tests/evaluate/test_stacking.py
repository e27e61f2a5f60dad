import numpy as np
import pandas as pd
import pytest

from studylib.evaluate import stacking
from studylib.evaluate.leakage import null_auc_se, permutation_runs, permutation_summary, stacking_optimism
from studylib.evaluate.stacking import (MajorityVote, MeanProbability, image_table, inner_meta_features,
                                        nested_meta_features, stack_outer_folds, stack_predictions)

GRID = {"max_depth": [1, 2], "n_estimators": [20], "learning_rate": [0.3]}


def _long_predictions(n=60, images=4, folds=3, seed=0, signal=1.0):
    """Per-image out-of-fold predictions of one arm, shaped like 04/05's."""
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 2, n)
    fold = rng.permutation(np.arange(n) % folds)
    rows = []
    for image in range(images):
        logit = signal * (2 * label - 1) + rng.normal(size=n)
        rows.append(pd.DataFrame({"subject": [f"s{i:03d}" for i in range(n)], "label": label, "fold": fold,
                                  "probability": 1 / (1 + np.exp(-logit)), "cohort": "c", "scheme": "kfold",
                                  "arm": "imagenet", "backbone": "b", "init": "imagenet",
                                  "hemisphere": ["left", "right"][image % 2], "metric": f"m{image // 2}", "seed": 1}))
    return pd.concat(rows, ignore_index=True)


def _test_predictions_ignore_test_labels(stack) -> bool:
    """Whether each outer fold's stacked predictions stay the same when that fold's labels are scrambled: true of a
    scheme whose meta-learner never sees the labels of the subjects it predicts."""
    rng = np.random.default_rng(3)
    n = 60
    labels = rng.integers(0, 2, n)
    folds = np.arange(n) % 3
    features = np.clip(labels[:, None] * 0.3 + rng.uniform(0, 0.7, (n, 4)), 0, 1)
    reference = stack(features, labels, folds)
    for fold in np.unique(folds):
        scrambled = labels.copy()
        scrambled[folds == fold] = 1 - scrambled[folds == fold]
        if not np.allclose(stack(features, scrambled, folds)[folds == fold], reference[folds == fold]):
            return False
    return True


def test_stacking_never_reads_the_labels_of_the_fold_it_predicts():
    for method in ("xgboost", "logistic"):
        assert _test_predictions_ignore_test_labels(
            lambda x, y, f, method=method: stack_outer_folds(x, y, f, method, grid=GRID, inner_folds=3, seed=0))


def test_the_label_check_catches_a_planted_leak(monkeypatch):
    """A meta-learner given the test subjects' labels (fitted on every subject) must fail the check above."""
    def leaky(features, labels, folds, method, **options):
        model = stacking.meta_learner(method, grid=GRID, inner_folds=3, seed=0)
        model.fit(features, labels)  # the leak: the test fold's labels are in the fit
        return model.predict_proba(features)[:, 1]

    assert not _test_predictions_ignore_test_labels(lambda x, y, f: leaky(x, y, f, "logistic"))


def test_stacked_outer_folds_are_the_base_models_folds():
    predictions = _long_predictions()
    stacked = stack_predictions(predictions, ("xgboost", "mean"), grid=GRID, seed=0)
    base = predictions.drop_duplicates("subject").set_index("subject")["fold"]
    for method, group in stacked.groupby("stacking"):
        assert group.set_index("subject")["fold"].sort_index().equals(base.sort_index())
        assert len(group) == predictions["subject"].nunique()
    assert set(stacked["metric"]) == {"stacked (xgboost)", "stacked (mean)"}
    assert (stacked["hemisphere"] == "both").all() and (stacked["images"] == 4).all()


def test_stacking_learns_from_informative_images():
    stacked = stack_predictions(_long_predictions(n=120, signal=1.5), ("xgboost", "logistic", "mean", "vote"),
                                grid=GRID, seed=0)
    for method, group in stacked.groupby("stacking"):
        accuracy = ((group["probability"] >= 0.5) == (group["label"] == 1)).mean()
        assert accuracy > 0.8, method


def test_mean_and_vote_need_no_fit_and_break_ties_by_the_mean():
    x = np.array([[0.9, 0.8, 0.2, 0.3], [0.6, 0.6, 0.1, 0.1], [0.2, 0.2, 0.2, 0.9]])
    assert np.allclose(MeanProbability().fit(x, [0, 1, 0]).predict_proba(x)[:, 1], x.mean(axis=1))
    vote = MajorityVote().fit(x, [0, 1, 0]).predict_proba(x)[:, 1]
    assert vote[0] > 0.5  # 2 of 4 votes, mean 0.55
    assert vote[1] < 0.5  # 2 of 4 votes, mean 0.35
    assert vote[2] == pytest.approx(0.25)


def test_image_table_names_subjects_with_missing_images_or_disagreeing_folds():
    predictions = _long_predictions(n=12)
    with pytest.raises(ValueError, match=r"lack a prediction of image\(s\) \['right/m1'\].*s003"):
        image_table(predictions.drop(predictions.index[(predictions["subject"] == "s003")
                                                       & (predictions["hemisphere"] == "right")
                                                       & (predictions["metric"] == "m1")]))
    moved = predictions.copy()
    moved.loc[(moved["subject"] == "s005") & (moved["metric"] == "m0"), "fold"] += 1
    with pytest.raises(ValueError, match="different folds.*s005"):
        image_table(moved)


def test_nested_meta_features_never_show_an_outer_fold_to_its_base_models():
    labels = np.tile([0, 1], 15)
    folds = np.arange(30) % 3
    seen = []

    def fit_predict(image, subjects, inner):
        seen.append((image, set(subjects), set(inner)))
        return np.full(len(subjects), 0.5)

    features = nested_meta_features(fit_predict, 2, labels, folds)
    assert sorted(features) == [0, 1, 2]
    for fold, matrix in features.items():
        assert matrix.shape == (20, 2)
    for image, subjects, inner in seen:
        held_out = set(range(30)) - subjects
        assert len(held_out) == 10 and len(set(folds[list(held_out)])) == 1
        assert len(inner) == 2  # the other two outer folds


def test_usual_and_nested_stacking_and_permutation_runs_on_noise():
    rng = np.random.default_rng(0)
    n = 60
    labels = np.tile([0, 1], n // 2)
    folds = np.arange(n) % 3
    features = [rng.normal(size=(n, 30)) for _ in range(3)]
    result = stacking_optimism(features, labels, folds, method="logistic", seed=0, cs=3, n_resamples=200)
    assert result["base fits (nested)"] == 3 * 3 * 3
    assert result["accuracy optimism low"] <= result["accuracy optimism"] <= result["accuracy optimism high"]
    assert len(result["usual_probability"]) == n and len(result["nested_probability"]) == n
    # the mean of the images learns nothing, so on noise it stays near 1/2; a learned meta-learner need not (it can
    # learn the sign of the base models' pessimistic out-of-fold bias), which is what 06's permutation runs measure
    runs = permutation_runs(features, labels, 3, [1, 2, 3, 4, 5], methods=("mean", "logistic"), nested=("logistic",),
                            cs=3)
    assert len(runs) == 15 and (runs["label 1"] == 30).all()
    assert set(runs["method"]) == {"mean", "logistic", "logistic (nested)"}
    assert runs.loc[runs["method"] == "mean", "permutation seed"].tolist() == [1, 2, 3, 4, 5]
    assert (runs["auc low"] <= runs["auc"]).all() and (runs["auc"] <= runs["auc high"]).all()
    chance = runs["|r| with the real labels"]
    assert ((chance >= 0) & (chance <= 1)).all()
    summary = permutation_summary(runs)
    assert summary.loc["mean", "null SE of one AUC"] == pytest.approx(null_auc_se(30, 30))
    assert abs(summary.loc["mean", "AUC at r = 0"] - 0.5) < 0.2 and "AUC per unit |r|" in summary
    assert abs(summary.loc["mean", "z of the mean AUC"]) < 3 and summary.loc["logistic", "runs"] == 5


def _inner_predictions(predictions: pd.DataFrame, seed: int = 5) -> pd.DataFrame:
    """Inner-model predictions (scheme inner<k>) for every outer fold's training subjects and image."""
    rng = np.random.default_rng(seed)
    parts = []
    for (fold, hemisphere, metric), _ in predictions.groupby(["fold", "hemisphere", "metric"]):
        rows = predictions[(predictions["fold"] != fold) & (predictions["hemisphere"] == hemisphere)
                           & (predictions["metric"] == metric)]
        parts.append(rows.assign(scheme=f"inner{fold}", probability=rng.random(len(rows))))
    return pd.concat(parts, ignore_index=True)


def test_stacking_with_inner_predictions_is_the_nested_scheme():
    predictions = _long_predictions(n=45)
    inner = _inner_predictions(predictions)
    stacked = stack_predictions(predictions, ["logistic"], grid=GRID, inner=inner)
    assert set(stacked["meta-features"]) == {"nested"}
    table = image_table(predictions)
    expected = stack_outer_folds(table.probability.to_numpy(), table.label, table.fold, "logistic", grid=GRID,
                                 nested_features=inner_meta_features(table, inner, "c"))
    assert np.allclose(stacked.set_index("subject").loc[table.probability.index, "probability"], expected)
    usual = stack_predictions(predictions, ["logistic"], grid=GRID)
    assert set(usual["meta-features"]) == {"out-of-fold"}
    assert not np.allclose(usual["probability"], stacked["probability"])
    # the training side of outer fold k comes from the inner models of k, row for row
    features = inner_meta_features(table, inner, "c")
    first = inner[(inner["scheme"] == "inner0")].pivot(index="subject", columns=["hemisphere", "metric"],
                                                        values="probability")
    training = table.probability.index[table.fold != 0]
    assert np.allclose(np.sort(features[0].ravel()), np.sort(first.loc[training].to_numpy().ravel()))
    with pytest.raises(ValueError, match="inner predictions of outer fold 1 do not cover"):
        inner_meta_features(table, inner.drop(inner.index[inner["scheme"] == "inner1"][0]), "c")
