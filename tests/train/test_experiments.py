from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch

from studylib.params import ParamsError
from studylib.study.config import load_params
from studylib.evaluate.summaries import learning_curves, summarise
from studylib.train.experiments import STAGE1_INIT, Experiment, plan_autism, plan_nested, plan_sex
from studylib.train.models import Init

from tests.support import PROJECT, make_store, minimal_params, small_params


def test_plan_runs_stage1_first_and_maps_metrics_without_a_namesake(tmp_path):
    stores = {"hcp": make_store(tmp_path, "hcp", ["thickness", "sulc"]),
              "abide1": make_store(tmp_path, "abide1", ["thickness", "area"], sites=3)}
    params = small_params(autism_cohorts=["abide1"], site_out_arms=["2-stage"], site_out_cohorts=None,
                          stage1_metrics={"area": "thickness"})
    experiment = Experiment(tmp_path / "run", stores, params.train, params.seed, "cpu")
    plan_autism(experiment, params.transfer, ["abide1"])
    jobs = experiment.jobs
    stage1 = [job for job in jobs if job.scheme == "all"]
    assert jobs[: len(stage1)] == stage1  # every stage-1 model is trained before any model starts from it
    assert {(job.arm, job.metric) for job in stage1} == {("stage1-scratch", "thickness"),
                                                         ("stage1-imagenet", "thickness")}
    assert all(job.cohort == "hcp" and job.fold == -1 for job in stage1)
    by_arm = {}
    for job in jobs[len(stage1):]:
        by_arm.setdefault((job.scheme, job.arm), []).append(job)
    assert set(by_arm) == {("kfold", arm) for arm in ("scratch", "imagenet", "hcp-only", "2-stage")} | {
        ("site-out", "2-stage")}
    assert len(by_arm["kfold", "scratch"]) == 2 * 2  # 2 metrics x 2 folds
    assert len(by_arm["site-out", "2-stage"]) == 2 * 3  # 2 metrics x 3 sites
    for arm, init in STAGE1_INIT.items():
        for job in by_arm["kfold", arm]:
            source = next(s for s in stage1 if s.arm == f"stage1-{init}")
            assert job.init == Init("checkpoint", experiment.model_path(source))
    assert {job.init for job in by_arm["kfold", "imagenet"]} == {Init("imagenet")}  # torchvision weights for resnet18


def test_cohort_arms_replace_the_autism_arms_of_one_cohort(tmp_path):
    stores = {"hcp": make_store(tmp_path, "hcp", ["thickness"]),
              "abide": make_store(tmp_path, "abide", ["thickness"], sites=3),
              "abide1": make_store(tmp_path, "abide1", ["thickness"], sites=3)}
    params = small_params(autism_cohorts=["abide", "abide1"], site_out_arms=[],
                          cohort_arms={"abide1": ["imagenet", "2-stage"]})
    experiment = Experiment(tmp_path / "run", stores, params.train, params.seed, "cpu")
    plan_autism(experiment, params.transfer, ["abide", "abide1"])
    arms = {cohort: {job.arm for job in experiment.jobs if job.cohort == cohort} for cohort in stores}
    assert arms["abide"] == {"scratch", "imagenet", "hcp-only", "2-stage"}
    assert arms["abide1"] == {"imagenet", "2-stage"}
    assert arms["hcp"] == {"stage1-scratch", "stage1-imagenet"}  # stage-1 models of abide's hcp-only arm


def test_cohort_roles_are_checked_when_params_load(write_params):
    content = minimal_params()
    content["transfer"] = {"sex_cohort": "abide", "autism_cohorts": ["abide"]}
    with pytest.raises(ParamsError, match="cohort 'abide' classifies autism, not sex"):
        load_params(write_params(content))
    content["transfer"] = {"sex_cohort": "hcp", "autism_cohorts": ["missing"]}
    with pytest.raises(ParamsError, match="no cohort 'missing'"):
        load_params(write_params(content))
    content["transfer"] = {"sex_cohort": "hcp", "autism_cohorts": ["abide"]}
    content["cohorts"]["abide"]["metrics"] = ["thickness", "sulc"]
    with pytest.raises(ParamsError, match="has metric 'sulc', which the sex cohort 'hcp' lacks"):
        load_params(write_params(content))
    content["transfer"]["stage1_metrics"] = {"sulc": "thickness"}
    assert load_params(write_params(content)).transfer.stage1_metrics == {"sulc": "thickness"}
    content["transfer"]["stage1_metrics"] = {"sulc": "myelin"}
    with pytest.raises(ParamsError, match="stage1_metrics.sulc: 'myelin' is not a metric of the sex cohort"):
        load_params(write_params(content))
    content["transfer"]["autism_arms"] = ["scratch", "imagenet"]
    del content["transfer"]["stage1_metrics"]
    load_params(write_params(content))  # no stage-1 models, no mapping needed
    content["transfer"] = {"autism_cohorts": ["abide"], "autism_arms": ["scratch", "2-stage"]}
    with pytest.raises(ParamsError, match="the 2-stage arms start from models of a sex cohort"):
        load_params(write_params(content))
    content["transfer"]["autism_arms"] = ["scratch"]
    assert load_params(write_params(content)).transfer.sex_cohort is None  # autism only
    content["transfer"]["cohort_arms"] = {"abide": ["scratch", "2-stage"]}
    with pytest.raises(ParamsError, match="the 2-stage arms start from models of a sex cohort"):
        load_params(write_params(content))
    content["transfer"]["cohort_arms"] = {"hcp": ["scratch"]}
    with pytest.raises(ParamsError, match="cohort_arms: 'hcp' is not one of transfer.autism_cohorts"):
        load_params(write_params(content))
    del content["transfer"]["cohort_arms"]
    del content["transfer"]
    assert load_params(write_params(content)).transfer.autism_cohorts == []  # no training experiments


def test_every_params_file_plans_its_cohorts():
    for name in ("smoke", "default", "paper", "tuning", "tuning-seed8", "tuning-seed9", "gpu-check"):
        params = load_params(PROJECT / "params" / f"{name}.yaml")
        assert params.cohorts[params.transfer.sex_cohort].task == "sex"
        assert all(params.cohorts[c].task == "autism" for c in params.transfer.autism_cohorts)


def test_two_stage_starts_from_the_stage1_model_and_no_test_subject_is_trained_on(tmp_path, monkeypatch):
    from studylib.train import jobs as jobs_module

    stores = {"hcp": make_store(tmp_path, "hcp", ["thickness"], n=16, seed=1),
              "abide": make_store(tmp_path, "abide", ["thickness"], n=18, sites=3, seed=2)}
    params = small_params(autism_cohorts=["abide"], autism_arms=["hcp-only"], site_out_arms=["hcp-only"],
                          site_out_cohorts=None)
    params = params.model_copy(update={"train": params.train.model_copy(update={"epochs": 1, "mixup_epochs": 1})})
    experiment = Experiment(tmp_path / "run", stores, params.train, params.seed, "cpu")
    plan_autism(experiment, params.transfer, ["abide"])
    starts, trained_on = {}, {}
    real_fit = jobs_module.fit

    def spy(net, images, labels, train_index, train, **kwargs):
        folder = kwargs["checkpoint"].parent
        starts[folder] = {k: v.clone() for k, v in net.state_dict().items()}
        trained_on[folder] = set(train_index.tolist())
        return real_fit(net, images, labels, train_index, train, **kwargs)

    monkeypatch.setattr(jobs_module, "fit", spy)
    assert experiment.run(progress=False) == len(experiment.jobs) == 1 + 2 + 3
    stage1 = experiment.jobs[0]
    stage1_state = torch.load(experiment.model_path(stage1), weights_only=True)
    subjects = stores["abide"].subjects
    for job in experiment.jobs[1:]:
        start = starts[tmp_path / "run" / job.name]
        for key, value in stage1_state.items():
            if key.startswith("backbone.") and not key.startswith("backbone.fc."):
                assert torch.equal(start[key], value), (job.name, key)
        assert not torch.equal(start["backbone.fc.weight"], stage1_state["backbone.fc.weight"])  # new head
        folds = experiment.folds("abide", job.scheme)
        test = set(np.flatnonzero(folds == job.fold).tolist())
        assert test and not trained_on[tmp_path / "run" / job.name] & test
        if job.scheme == "site-out":
            assert subjects["site"].iloc[sorted(test)].nunique() == 1
    predictions = experiment.predictions()
    for scheme, table in predictions.groupby("scheme"):
        assert sorted(table["subject"]) == sorted(subjects["subject"])  # each subject predicted exactly once
    scores = summarise(predictions)
    assert set(scores["scheme"]) == {"kfold", "site-out"} and scores["accuracy"].between(0, 1).all()
    curves = learning_curves(experiment.histories())
    assert set(curves["arm"]) == {"stage1-scratch", "hcp-only"}

    from studylib.evaluate.filters import experiment_filter_variation

    variation = experiment_filter_variation(experiment.jobs[1:], experiment.root)  # from the stage-1 weights
    assert set(variation["scheme"]) == {"kfold", "site-out"}
    assert variation["variation"].between(0, 1).all() and (variation["variation"] > 0).any()


def test_a_rerun_skips_done_jobs_and_retrains_when_inputs_change(tmp_path):
    stores = {"hcp": make_store(tmp_path, "hcp", ["thickness"], n=12)}
    params = small_params(sex_arms=["scratch"])
    train = params.train.model_copy(update={"epochs": 1, "mixup_epochs": 1})
    experiment = Experiment(tmp_path / "run", stores, train, params.seed, "cpu")
    plan_sex(experiment, params.transfer)
    assert experiment.run(progress=False) == 2
    first = experiment.predictions()
    assert experiment.run(progress=False) == 0
    pd.testing.assert_frame_equal(first, experiment.predictions())
    faster = Experiment(tmp_path / "run", stores, train.model_copy(update={"num_workers": 2}), params.seed, "cpu")
    plan_sex(faster, params.transfer)
    assert faster.run(progress=False) == 0  # reading threads change speed, not results
    changed = Experiment(tmp_path / "run", stores, train.model_copy(update={"lr": 0.005}), params.seed, "cpu")
    plan_sex(changed, params.transfer)
    with pytest.raises(RuntimeError, match="2 of 2 planned models are not trained"):
        changed.predictions()  # nothing stale is read
    assert changed.run(progress=False) == 2  # another learning rate: the old models are not reused
    subjects = stores["hcp"].subjects
    subjects.loc[0, "label"] = 1 - subjects.loc[0, "label"]
    subjects.to_csv(stores["hcp"].path / "subjects.csv", index=False)
    assert changed.run(progress=False) == 2  # other subjects' labels: new images identity, retrained


def test_a_killed_run_restarts_to_the_same_predictions(tmp_path):
    stores = tmp_path / "stores"
    make_store(stores, "hcp", ["thickness", "sulc"], n=24)
    command = [sys.executable, "-m", "tests.support"]
    env = {**os.environ, "PYTHONPATH": str(PROJECT)}

    def epochs_trained(root):
        result = subprocess.run([*command, str(root), str(stores)], check=True, cwd=PROJECT, env=env,
                                capture_output=True, text=True)
        return int(result.stdout.split("epochs trained:")[1])

    assert epochs_trained(tmp_path / "whole") == 4 * 3  # 2 images x 2 folds, 3 epochs each

    process = subprocess.Popen([*command, str(tmp_path / "killed"), str(stores)], cwd=PROJECT, env=env)
    deadline = time.monotonic() + 120
    while not list((tmp_path / "killed").rglob("checkpoint.pt")):
        assert process.poll() is None and time.monotonic() < deadline, "the run ended before it could be killed"
        time.sleep(0.005)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (tmp_path / "killed" / "predictions.csv").exists()  # it really was interrupted
    finished = len(list((tmp_path / "killed").rglob("done.json")))
    # the restart trains only what was missing: at least the checkpointed epoch and the finished jobs are reused
    assert epochs_trained(tmp_path / "killed") <= 4 * 3 - max(1, 3 * finished)
    whole = pd.read_csv(tmp_path / "whole" / "predictions.csv")
    restarted = pd.read_csv(tmp_path / "killed" / "predictions.csv")
    assert len(whole) == 2 * 24
    pd.testing.assert_frame_equal(whole, restarted, check_exact=True)


def test_nested_inner_models_never_see_their_outer_fold_and_stay_out_of_the_predictions(tmp_path, monkeypatch):
    from studylib.train import jobs as jobs_module

    stores = {"hcp": make_store(tmp_path, "hcp", ["thickness"], n=18, seed=3)}
    params = small_params(sex_arms=["scratch"])
    train = params.train.model_copy(update={"epochs": 1, "mixup_epochs": 1, "folds": 3})
    experiment = Experiment(tmp_path / "run", stores, train, params.seed, "cpu")
    plan_sex(experiment, params.transfer)
    inner = plan_nested(experiment)
    assert len(inner) == 3 * 2 and {job.scheme for job in inner} == {"inner0", "inner1", "inner2"}
    seen = {}
    real_fit = jobs_module.fit

    def spy(net, images, labels, train_index, train, **kwargs):
        seen[kwargs["checkpoint"].parent.relative_to(tmp_path / "run").as_posix()] = set(train_index.tolist())
        return real_fit(net, images, labels, train_index, train, **kwargs)

    monkeypatch.setattr(jobs_module, "fit", spy)
    experiment.run(progress=False)
    outer = experiment.folds("hcp", "kfold")
    for job in inner:
        held_out = set(np.flatnonzero(outer == int(job.scheme.removeprefix("inner"))).tolist())
        assert not seen[job.name] & held_out
    assert set(experiment.predictions()["scheme"]) == {"kfold"}
    inner_predictions = experiment.predictions(inner=True)
    subjects = stores["hcp"].subjects["subject"]
    for k in range(3):  # each outer fold's inner models predict exactly its training subjects, once
        rows = inner_predictions[inner_predictions["scheme"] == f"inner{k}"]
        assert sorted(rows["subject"]) == sorted(subjects[outer != k])
