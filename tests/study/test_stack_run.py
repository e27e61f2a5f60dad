"""06's one call on a small study folder: predictions fabricated for two tasks, image stores from tests.support."""

from __future__ import annotations

import numpy as np
import pandas as pd

from studylib.study.layout import ResultsLayout
from studylib.study.notebook import start_stage
from studylib.study.stack_run import stack_arms

from tests.support import make_store, minimal_params


def _predictions(store, arms, scheme, folds, seed):
    rng = np.random.default_rng(seed)
    subjects = store.subjects
    label = subjects["label"].to_numpy()
    rows = []
    for arm_number, arm in enumerate(arms):
        for metric in store.meta["metrics"]:
            logit = (0.5 + arm_number) * (2 * label - 1) + rng.normal(size=len(label))
            rows.append(pd.DataFrame({"subject": subjects["subject"], "label": label, "fold": folds,
                                      "probability": 1 / (1 + np.exp(-logit)), "cohort": store.meta["cohort"],
                                      "arm": arm, "scheme": scheme, "backbone": "resnet18", "init": "-",
                                      "hemisphere": "left", "metric": metric, "seed": 1}))
    return pd.concat(rows, ignore_index=True)


def test_stacking_run_writes_stacked_predictions_claims_checks_and_subgroups(tmp_path, write_params):
    params = minimal_params()
    params["transfer"] = {"sex_cohort": "hcp", "autism_cohorts": ["abide"], "sex_arms": ["scratch", "imagenet"],
                          "autism_arms": ["imagenet", "2-stage"], "site_out_arms": ["2-stage"]}
    params["stacking"] = {"n_bootstrap": 20, "grid": {"max_depth": [1], "n_estimators": [10], "learning_rate": [0.3]},
                          "permutations": 2}
    params["ablation"] = {"cohorts": []}
    params_file = write_params(params)
    layout = ResultsLayout(tmp_path / "results")
    hcp = make_store(layout.image_stores, "hcp", ["thickness", "sulc"], n=30, size=8)
    abide = make_store(layout.image_stores, "abide", ["thickness", "sulc"], n=36, size=8, sites=3)
    subjects = abide.subjects.assign(age=np.linspace(8, 50, 36))
    hcp_subjects = hcp.subjects
    female = hcp_subjects["label"].to_numpy() == 1
    hcp_subjects.assign(sex=np.where(female, "female", "male"),
                        tiv=1300 * np.exp(-0.1 * female + 0.1 * np.sin(np.arange(30)))).to_csv(
        hcp.path / "subjects.csv", index=False)
    subjects.to_csv(abide.path / "subjects.csv", index=False)
    kfold = lambda n: np.arange(n) % 3  # noqa: E731
    sites = abide.subjects["site"].str.removeprefix("site").astype(int).to_numpy()
    layout.predictions("sex").parent.mkdir(parents=True)
    _predictions(hcp, ["scratch", "imagenet"], "kfold", kfold(30), 1).to_csv(layout.predictions("sex"), index=False)
    layout.predictions("autism").parent.mkdir(parents=True)
    pd.concat([_predictions(abide, ["imagenet", "2-stage"], "kfold", kfold(36), 2),
               _predictions(abide, ["2-stage"], "site-out", sites, 3)]).to_csv(layout.predictions("autism"),
                                                                                index=False)
    stage = start_stage("06_stack", str(params_file), str(layout.root))
    run = stack_arms(stage, progress=False)

    stacked = pd.read_csv(layout.stacked_predictions, dtype={"subject": str})
    assert len(stacked) == len(run.stacked) == (2 * 30 + 3 * 36) * 4  # arms x subjects x methods
    base = run.predictions.drop_duplicates(["task", "cohort", "scheme", "arm", "subject"])
    merged = stacked.merge(base, on=["task", "cohort", "scheme", "arm", "subject"], suffixes=("", " base"))
    assert (merged["fold"] == merged["fold base"]).all()
    claims = run.comparisons
    assert set(claims.loc[claims["claim"] == "arm ordering", "comparison"]) == {"imagenet > scratch",
                                                                               "2-stage > imagenet"}
    assert (claims["delong p (Holm)"] >= claims["delong p"] - 1e-12).all()
    assert set(run.per_stack["stacking"]) == {"xgboost", "logistic", "mean", "vote"}
    assert run.optimism["cohort"] == "hcp" and len(run.permutations) == 2 * 3  # seeds x (primary, mean, nested primary)
    assert set(run.per_site["site"]) == {"site0", "site1", "site2"}
    assert list(run.age["group"]) == ["inside 22-37 y", "outside 22-37 y", "interaction (inside - outside)"]
    # sex classifiers against head size, per arm; ABIDE-like stores without volumes are not asked
    assert set(run.head_size["arm"]) == {"scratch", "imagenet"} and set(run.head_size["cohort"]) == {"hcp"}
    assert (run.head_size_tests["matched pairs"] > 0).all()
    # every stacked accuracy beside the cohort's yardsticks (no reference arm and no truth here: NaN, not absent)
    assert {"linear reference accuracy", "Bayes-optimal accuracy", "fraction of Bayes ceiling"} <= set(run.per_stack)
    for name in ("stacked_metrics", "paired_comparisons", "stacking_optimism", "permutation_runs",
                 "site_out_per_site", "age_analysis", "head_size", "head_size_tests"):
        assert (stage.tables_dir / f"{name}.csv").is_file(), name
