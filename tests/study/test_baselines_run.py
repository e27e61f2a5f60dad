"""09's one call: PCA + SVM on a simulated autism cohort in the networks' folds, stacked, against the 2-stage arm."""

from __future__ import annotations

import numpy as np
import pandas as pd

from studylib.study.baselines_run import run_baselines, table2_baselines, verdicts
from studylib.study.config import load_params
from studylib.study.layout import ResultsLayout
from studylib.study.notebook import start_stage

from tests.support import build_params_cohorts, minimal_params


def test_pca_svm_runs_in_the_networks_folds_and_is_compared_on_the_same_subjects(tmp_path, write_params):
    content = minimal_params()
    content["cohorts"] = {"abide": {**content["cohorts"]["abide"], "n_subjects": 40}}
    content["transfer"] = {"sex_cohort": None, "autism_cohorts": ["abide"], "autism_arms": ["imagenet"]}
    content["stacking"] = {"n_bootstrap": 20, "methods": ["mean", "vote"]}
    content["baselines"] = {"pca_variance": 0.9, "svm_c": [0.01, 1.0]}
    params_file = write_params(content)
    params = load_params(params_file)
    layout = ResultsLayout(tmp_path / "results")
    [built] = build_params_cohorts(params, layout.cohorts, progress=False, echo=lambda _: None)
    subjects = built.cohort.subjects.assign(subject=lambda t: t["subject"].astype(str))
    rng = np.random.default_rng(0)
    folds = rng.permutation(np.arange(len(subjects)) % 2)
    network = pd.DataFrame({"subject": subjects["subject"], "label": subjects["label"], "fold": folds,
                            "probability": rng.random(len(subjects)), "cohort": "abide", "arm": "2-stage",
                            "scheme": "kfold", "backbone": "resnet18", "init": "-", "hemisphere": "left",
                            "metric": "thickness", "seed": 1})
    layout.predictions("autism").parent.mkdir(parents=True)
    network.to_csv(layout.predictions("autism"), index=False)
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
