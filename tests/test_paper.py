from __future__ import annotations

import pytest

from studylib import paper
from studylib.study.config import load_params

from tests.support import PROJECT


def test_results_tables():
    sex = paper.results_table("sex")
    asd = paper.results_table("asd")
    assert len(sex) == 4 and len(asd) == 15
    best = asd.loc[asd["accuracy"].idxmax()]
    assert (best["model"], best["arm"], best["accuracy"], best["auc"]) == ("DenseNet-121", "2-stage", 67.85, 0.7237)
    assert set(asd["cv"]) == {"10-fold", "leave-one-site-out"}
    with pytest.raises(ValueError, match="unknown task"):
        paper.results_table("age")


def test_training_settings_put_paper_beside_run():
    params = load_params(PROJECT / "params" / "paper.yaml")
    table = paper.training_settings(params.train, params.raster.image_size)
    assert (table["paper"] == table["this run"]).all(), table[table["paper"] != table["this run"]]
    smoke = load_params(PROJECT / "params" / "smoke.yaml")
    table = paper.training_settings(smoke.train, smoke.raster.image_size).set_index("setting")
    assert table.loc["epochs", "this run"] == "2" and table.loc["epochs", "paper"] == "125"
    assert table.loc["lr warm-up (epochs)", "this run"] == "1" and table.loc["lr warm-up (epochs)", "paper"] == "none"


def test_the_papers_arms_are_the_studys_arms():
    from studylib.params import SEX_ARMS, STAGED_ARMS, TASK_ARMS
    from studylib.train.experiments import STAGE1_INIT

    assert set(paper.results_table("sex")["arm"]) == set(SEX_ARMS)
    assert set(paper.results_table("asd")["arm"]) - {"baseline"} == set(TASK_ARMS["autism"])
    for task, pairs in paper.ARM_CLAIMS.items():
        assert {arm for pair in pairs for arm in pair} <= set(TASK_ARMS[task])
    assert set(STAGE1_INIT) == set(STAGED_ARMS) and set(STAGE1_INIT.values()) <= set(SEX_ARMS)


def test_every_baseline_has_its_row_in_the_papers_table_2():
    from studylib.study.baselines_run import BASELINE_ARMS

    assert tuple(paper.BASELINE_MODELS) == BASELINE_ARMS
    rows = paper.results_table("asd")
    assert set(paper.BASELINE_MODELS.values()) == set(rows[rows["arm"] == "baseline"]["model"])
