"""09's one call: the baselines on a simulated autism cohort in the networks' folds, stacked, against the 2-stage
arm."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from studylib.study.baselines_run import run_baselines, surface_distance_verdicts, table2_baselines, verdicts
from studylib.train.cv import stratified_folds
from studylib.study.config import load_params
from studylib.study.layout import ResultsLayout
from studylib.study.notebook import start_stage

from tests.support import build_params_cohorts, minimal_params


def test_pca_svm_runs_in_the_networks_folds_and_is_compared_on_the_same_subjects(tmp_path, write_params):
    content = minimal_params()
    content["cohorts"] = {"abide": {**content["cohorts"]["abide"], "n_subjects": 40}}
    content["transfer"] = {"sex_cohort": None, "autism_cohorts": ["abide"], "autism_arms": ["imagenet"]}
    content["stacking"] = {"n_bootstrap": 20, "methods": ["mean", "vote"]}
    content["baselines"] = {"arms": ["PCA+SVM"], "pca_variance": 0.9, "svm_c": [0.01, 1.0]}
    params_file = write_params(content)
    params = load_params(params_file)
    layout = ResultsLayout(tmp_path / "results")
    [built] = build_params_cohorts(params, layout.cohorts, progress=False, echo=lambda _: None)
    subjects = built.cohort.subjects.assign(subject=lambda t: t["subject"].astype(str))
    folds = np.random.default_rng(0).permutation(np.arange(len(subjects)) % 2)
    network = _network_predictions(layout, subjects, folds)
    layout.stacked_predictions.parent.mkdir(parents=True)
    stacked = network.drop(columns=["hemisphere", "metric"]).assign(task="autism", stacking="mean",
                                                                    hemisphere="both", metric="stacked (mean)")
    reference = stacked.assign(arm="linear reference", backbone="logistic regression",
                               probability=np.where(stacked["label"] == 1, 0.8, 0.3))
    pd.concat([stacked, reference]).to_csv(layout.stacked_predictions, index=False)

    stage = start_stage("09_baselines", str(params_file), str(layout.root))
    run = run_baselines(stage, progress=False)
    # exactly the networks' folds, every subject once per image set
    merged = run.predictions.merge(network[["subject", "fold"]], on="subject", suffixes=("", " network"))
    assert len(merged) == len(subjects) * 2 and (merged["fold"] == merged["fold network"]).all()  # 2 hemispheres
    assert set(run.per_stack["arm"]) == {"PCA+SVM", "2-stage", "linear reference"}
    assert len(run.comparisons) == 1  # the reference stands beside the rows, it is not a claim
    comparison = run.comparisons.iloc[0]
    assert (comparison["first"], comparison["second"], comparison["subjects"]) == ("2-stage", "PCA+SVM", 40)
    assert comparison["delong p (Holm)"] >= comparison["delong p"]
    table = table2_baselines(run.per_stack, "mean").set_index("model")
    assert table.loc["PCA+SVM", "paper accuracy (%)"] == 58.12 and table.loc["2-stage", "paper auc"] == 0.7237
    # every row beside the linear reference (which is right on every subject here) and the cohort's Bayes ceiling
    assert (table["linear reference accuracy"] == 1.0).all()
    assert table["Bayes-optimal accuracy"].between(0.5, 1).all()
    [sentence] = verdicts(run.comparisons)
    assert sentence.startswith("abide: 2-stage vs PCA+SVM: AUC") and sentence.endswith("at n = 40")
    assert layout.baseline_predictions.is_file()


def _autism_study(tmp_path, write_params, baselines: dict, n_subjects: int = 24):
    content = minimal_params()
    content["cohorts"] = {"abide": {**content["cohorts"]["abide"], "n_subjects": n_subjects}}
    content["transfer"] = {"sex_cohort": None, "autism_cohorts": ["abide"], "autism_arms": ["imagenet"]}
    content["train"] = {**content["train"], "epochs": 1, "mixup_epochs": 1}
    content["stacking"] = {"n_bootstrap": 20, "methods": ["mean"]}
    content["baselines"] = baselines
    params_file = write_params(content)
    params = load_params(params_file)
    layout = ResultsLayout(tmp_path / "results")
    [built] = build_params_cohorts(params, layout.cohorts, progress=False, echo=lambda _: None)
    return params_file, params, layout, built.cohort.subjects.assign(subject=lambda t: t["subject"].astype(str))


def _network_predictions(layout, subjects, folds):
    rng = np.random.default_rng(1)
    network = pd.DataFrame({"subject": subjects["subject"], "label": subjects["label"], "fold": folds,
                            "probability": rng.random(len(subjects)), "cohort": "abide", "arm": "2-stage",
                            "scheme": "kfold", "backbone": "resnet18", "init": "-", "hemisphere": "left",
                            "metric": "thickness", "seed": 1})
    layout.predictions("autism").parent.mkdir(parents=True)
    network.to_csv(layout.predictions("autism"), index=False)
    return network


def test_slice_volume_and_mesh_networks_train_as_jobs_in_the_networks_folds(tmp_path, write_params):
    baselines = {"arms": ["slice", "3d-volume", "3d-mesh"], "pca_variance": 0.9, "voxel_size": 6.0,
                 "slice_backbone": "efficientnet_lite0"}
    params_file, params, layout, subjects = _autism_study(tmp_path, write_params, baselines)
    folds = stratified_folds(subjects["label"].to_numpy(), params.train.folds, params.seed)  # what 05 used
    network = _network_predictions(layout, subjects, folds)
    stacked = network.drop(columns=["hemisphere", "metric"]).assign(task="autism", stacking="mean",
                                                                    hemisphere="both", metric="stacked (mean)")
    layout.stacked_predictions.parent.mkdir(parents=True)
    stacked.to_csv(layout.stacked_predictions, index=False)

    stage = start_stage("09_baselines", str(params_file), str(layout.root))
    run = run_baselines(stage, progress=False)
    predictions = run.predictions
    sets = predictions.groupby("arm")[["hemisphere", "metric"]].apply(lambda t: set(map(tuple, t.values)))
    assert sets["3d-volume"] == {("both", "ribbon")} and sets["3d-mesh"] == {("both", "thickness")}
    assert sets["slice"] == {("axial0", "ribbon"), ("coronal0", "ribbon"), ("sagittal_left0", "ribbon"),
                             ("sagittal_right0", "ribbon")}
    assert set(predictions.loc[predictions["arm"] == "slice", "backbone"]) == {"efficientnet_lite0"}
    assert set(predictions.loc[predictions["arm"] != "slice", "backbone"]) == {"densenet3d_small"}
    merged = predictions.merge(network[["subject", "fold"]], on="subject", suffixes=("", " network"))
    assert len(merged) == len(subjects) * 6 and (merged["fold"] == merged["fold network"]).all()
    assert set(run.comparisons["second"]) == {"slice", "3d-volume", "3d-mesh"}
    assert set(run.comparisons["first"]) == {"2-stage"}
    [sentence] = surface_distance_verdicts(run.comparisons, simulated={"abide"})
    assert sentence.startswith("abide (resnet18, 2-stage vs ") and "against the 3D mesh" in sentence
    table = table2_baselines(run.per_stack, "mean").set_index("model")
    assert table.loc["3d-volume", "paper accuracy (%)"] == 62.39 and table.loc["slice", "paper auc"] == 0.6693
    # a second run reuses the volumes and every trained job
    jobs = sorted(layout.baseline_jobs.rglob("done.json"))
    assert len(jobs) == 6 * params.train.folds
    stamps = [path.stat().st_mtime_ns for path in jobs]
    again = run_baselines(stage, progress=False)
    assert [path.stat().st_mtime_ns for path in jobs] == stamps
    pd.testing.assert_frame_equal(again.predictions, predictions)


def test_baselines_refuse_folds_other_than_the_networks(tmp_path, write_params):
    baselines = {"arms": ["3d-volume"], "pca_variance": 0.9, "voxel_size": 8.0}
    params_file, params, layout, subjects = _autism_study(tmp_path, write_params, baselines, n_subjects=16)
    folds = stratified_folds(subjects["label"].to_numpy(), params.train.folds, params.seed)
    _network_predictions(layout, subjects, 1 - folds)  # the networks were evaluated in other folds
    stage = start_stage("09_baselines", str(params_file), str(layout.root))
    with pytest.raises(ValueError, match="the baselines' folds differ from the networks' for 16 subjects"):
        run_baselines(stage, progress=False)
