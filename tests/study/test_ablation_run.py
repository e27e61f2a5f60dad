"""07's one call on a small study: 05's models trained first, then the ablation arm again without mix-up."""

from __future__ import annotations

import pandas as pd

from studylib.images import ImageStore
from studylib.study.ablation_run import run_ablation
from studylib.study.config import load_params
from studylib.study.layout import ResultsLayout
from studylib.study.notebook import start_stage
from studylib.train.experiments import Experiment, plan_autism

from tests.support import make_store, minimal_params


def test_ablation_retrains_the_arm_without_mixup_on_the_same_folds_and_starts(tmp_path, write_params):
    content = minimal_params()
    content["train"].update({"epochs": 2, "mixup_epochs": 1, "batch_size": 8, "folds": 2})
    content["transfer"] = {"sex_cohort": "hcp", "autism_cohorts": ["abide"], "sex_arms": ["scratch"],
                           "autism_arms": ["hcp-only"]}
    content["stacking"] = {"n_bootstrap": 20, "grid": {"max_depth": [1], "n_estimators": [10],
                                                       "learning_rate": [0.3]}, "permutations": 0}
    content["ablation"] = {"arm": "hcp-only"}
    params_file = write_params(content)
    params = load_params(params_file)
    layout = ResultsLayout(tmp_path / "results")
    stores: dict[str, ImageStore] = {"hcp": make_store(layout.image_stores, "hcp", ["thickness"], n=16, seed=1),
                                     "abide": make_store(layout.image_stores, "abide", ["thickness"], n=20, seed=2)}
    with_mixup = Experiment(layout.training_jobs("autism"), stores, params.train, params.seed, "cpu")
    plan_autism(with_mixup, params.transfer, ["abide"])
    with_mixup.run(progress=False)

    stage = start_stage("07_ablation", str(params_file), str(layout.root))
    run = run_ablation(stage, progress=False)
    assert run.trained == 2  # one image x two folds
    jobs = sorted(p.parent for p in layout.ablation_jobs.rglob("done.json"))
    assert [p.relative_to(layout.ablation_jobs).as_posix() for p in jobs] == [
        "abide/kfold/hcp-only/resnet18/left_thickness/fold00", "abide/kfold/hcp-only/resnet18/left_thickness/fold01"]
    for folder in jobs:
        history = pd.read_csv(folder / "history.csv")
        assert not history["mixup"].astype(bool).any()
        assert "stage1-scratch" in (folder / "job.json").read_text()  # starts from 05's stage-1 model
    base = with_mixup.predictions().set_index("subject")["fold"]
    stacked = run.stacked.set_index("subject")
    assert (stacked["fold"] == base.loc[stacked.index]).all()
    assert set(zip(run.cells["mixup"], run.cells["stacking"])) == {("on", "xgboost"), ("on", "mean"),
                                                                   ("off", "xgboost"), ("off", "mean")}
    assert set(run.gains["module"]) == {"stacking", "mix-up"} and len(run.gains) == 4
    assert (run.gains["mcnemar p (Holm)"] >= run.gains["mcnemar p"] - 1e-12).all()
    assert run_ablation(stage, progress=False).trained == 0  # idempotent
