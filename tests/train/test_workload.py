from __future__ import annotations

import pandas as pd
import pytest

from studylib.study.config import load_params
from studylib.train.cv import train_test
from studylib.train.experiments import Experiment, plan_autism, plan_nested, plan_sex
from studylib.train.workload import (ABIDE1_FREESURFER, CohortShape, cohort_shapes, planned_workload,
                                     projected_hours)

from tests.support import PROJECT, make_store, small_params


def test_the_workload_is_the_plan_of_real_stores(tmp_path):
    """Stand-in cohorts plan the very jobs, with the very training subjects, that real image stores do."""
    stores = {"hcp": make_store(tmp_path, "hcp", ["thickness", "sulc"], n=24),
              "abide": make_store(tmp_path, "abide", ["thickness", "sulc"], n=30, sites=3)}
    params = small_params(autism_cohorts=["abide"], site_out_arms=["2-stage", "scratch"], site_out_cohorts=None)
    params = params.model_copy(update={"cohorts": {name: params.cohorts[name] for name in ("hcp", "abide")}})
    experiment = Experiment(tmp_path / "run", stores, params.train, params.seed, "cpu")
    plan_sex(experiment, params.transfer)
    plan_autism(experiment, params.transfer, ["abide"])
    assert params.stacking.nested  # smoke's: the nested scheme's inner models are part of the workload
    inner = plan_nested(experiment)
    assert inner and all(job.scheme.startswith("inner") for job in inner)
    expected = {job.name: len(train_test(experiment.folds(job.cohort, job.scheme), job.fold)[0])
                for job in experiment.jobs}
    shapes = {"hcp": CohortShape(24, 1, ("thickness", "sulc"), ("left",)),
              "abide": CohortShape(30, 3, ("thickness", "sulc"), ("left",))}
    workload = planned_workload(params, shapes)
    assert list(workload["job"]) == list(expected)
    assert dict(zip(workload["job"], workload["train_subjects"])) == expected
    stage2 = workload[workload["arm"] == "2-stage"]
    assert stage2["after"].str.startswith("hcp/all/stage1-imagenet/").all()
    assert set(workload.loc[workload["after"] != "", "arm"]) == {"2-stage", "hcp-only"}


def test_paper_workload_counts_every_site_out_fold_of_every_autism_cohort():
    params = load_params(PROJECT / "params" / "paper.yaml")
    workload = planned_workload(params)
    site_out = workload[workload["scheme"] == "site-out"]
    n, sites = ABIDE1_FREESURFER
    images = {"abide": 2 * 3, "abide1": 2 * 3}
    arms, backbones = len(params.transfer.site_out_arms), len(params.train.backbones)
    abide = params.cohorts["abide"]
    assert len(site_out[site_out["cohort"] == "abide1"]) == arms * backbones * images["abide1"] * sites
    assert len(site_out[site_out["cohort"] == "abide"]) == arms * backbones * images["abide"] * abide.n_sites
    # leaving each site out once trains (sites - 1) x n subjects per image, whatever the site sizes
    per_image = site_out[site_out["cohort"] == "abide1"].groupby(["arm", "backbone", "job"]).size()
    assert site_out.loc[site_out["cohort"] == "abide1", "train_subjects"].sum() == (
        arms * backbones * images["abide1"] * (sites - 1) * n)
    assert len(per_image) > 0
    shares = workload.groupby("cohort")["training_images"].sum() / workload["training_images"].sum()
    assert shares["abide1"] > 0.1  # the semi-real cohort's share that an older projection left out


def test_projection_schedules_jobs_like_the_executors():
    workload = pd.DataFrame({"job": ["s1", "a", "b", "c"], "backbone": "net", "training_images": [3600, 3600, 7200, 3600],
                             "after": ["", "s1", "", "s1"]})
    rate = {"net": 1.0}
    assert projected_hours(workload, rate, 1) == pytest.approx(5.0)
    # two devices: s1 [0, 1] h; a waits for s1 [1, 2]; b [1, 3]; c [2, 3]
    assert projected_hours(workload, rate, 2) == pytest.approx(3.0)
    # never below the critical path (stage-1 then its longest stage-2 job) or total / devices
    assert projected_hours(workload, rate, 8) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="no measured training rate"):
        projected_hours(workload, {"other": 1.0}, 1)


def test_real_cohorts_need_their_shape(write_params):
    params = load_params(PROJECT / "params" / "default.yaml")
    hcp = params.cohorts["hcp"]
    shapes = cohort_shapes(params)
    assert shapes["hcp"] == CohortShape(hcp.n_subjects, 1, tuple(hcp.metrics))
    assert shapes["abide1"].n_subjects == params.cohorts["abide1"].n_subjects


def test_abide1_shape_matches_the_tables(shared_data):
    from studylib.data.semireal import _join

    subjects, _, _ = _join(shared_data, ["thickness"])
    assert (len(subjects), subjects["site"].nunique()) == ABIDE1_FREESURFER
