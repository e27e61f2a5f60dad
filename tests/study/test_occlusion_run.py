"""08's occlusion of one image set: each test subject through its own out-of-fold model, cached by the models' keys."""

from __future__ import annotations

import numpy as np
import pandas as pd

from studylib.explain.occlusion import occlusion
from studylib.study.config import load_params
from studylib.study.layout import ResultsLayout
from studylib.study.notebook import start_stage
from studylib.study.occlusion_run import _load, _occlude_set, metric_mean, paper_projection, recovery_verdict
from studylib.train.experiments import Experiment, plan_sex

from tests.support import make_store, minimal_params


def _trained_sex_arm(tmp_path, write_params, train: dict, occlusion: dict, n: int, seed: int):
    """A scratch sex arm trained on a toy store, and 08's stage over it: (params content, stage, experiment, jobs,
    store, layout)."""
    content = minimal_params()
    content["train"].update({"mixup_epochs": 1, "batch_size": 8, "folds": 2, **train})
    content["transfer"] = {"sex_cohort": "hcp", "autism_cohorts": [], "sex_arms": ["scratch"]}
    content["occlusion"] = {"patch": 8, "stride": 8, "arms": {"sex": ["scratch"]}, **occlusion}
    params_file = write_params(content)
    params = load_params(params_file)
    layout = ResultsLayout(tmp_path / "results")
    store = make_store(layout.image_stores, "hcp", ["thickness"], n=n, size=32, seed=seed)
    experiment = Experiment(layout.training_jobs("sex"), {"hcp": store}, params.train, params.seed, "cpu")
    jobs = plan_sex(experiment, params.transfer)
    experiment.run(progress=False)
    stage = start_stage("08_occlusion", str(params_file), str(layout.root))
    return content, stage, experiment, jobs, store, layout


def test_every_subject_is_occluded_by_the_model_that_did_not_train_on_it(tmp_path, write_params):
    content, stage, experiment, jobs, store, layout = _trained_sex_arm(
        tmp_path, write_params, {"epochs": 2}, {"occluder": "mean"}, n=16, seed=1)

    result, rate = _occlude_set(stage, experiment, jobs, store, "cpu")
    assert rate is not None and rate > 0
    folds = experiment.folds("hcp", "kfold")
    labels = store.subjects["label"].to_numpy()
    images = store.images("left", "thickness")
    # the subjects of each fold's maps are exactly that fold's test subjects: no training subject enters a map
    for job in jobs:
        rows = result["row"][result["fold"] == job.fold]
        np.testing.assert_array_equal(np.sort(rows), np.flatnonzero(folds == job.fold))
    # and each map is its own fold model's occlusion, not the other fold's
    subject = int(result["row"][0])
    own, other = (_load(experiment, job, "cpu") for job in sorted(jobs, key=lambda j: j.fold != folds[subject]))
    for net, same in ((own, True), (other, False)):
        expected = occlusion(net, np.asarray(images[[subject]]), labels[[subject]], patch=8, stride=8,
                             fill=float(net.mean))["probability"][0]
        assert np.allclose(result["probability"][0], expected, atol=1e-5) == same
    # a second call reuses the saved maps; other settings compute them again
    again, rate = _occlude_set(stage, experiment, jobs, store, "cpu")
    assert rate is None and np.array_equal(again["probability"], result["probability"])
    content["occlusion"]["stride"] = 4
    stage = start_stage("08_occlusion", str(write_params(content)), str(layout.root))
    _, rate = _occlude_set(stage, experiment, jobs, store, "cpu")
    assert rate is not None


def test_occlusion_units_give_the_same_maps_in_a_worker_process(tmp_path, write_params):
    """08's units through the local executor (a spawned worker): the very maps of an in-process run, saved whole, and
    the caller's thread count restored."""
    import dataclasses

    import torch

    from studylib.study.occlusion_run import _occlusion_task, _saved_maps, occlude_image_set
    from studylib.train.executors import LocalExecutor

    _, stage, experiment, jobs, store, _ = _trained_sex_arm(tmp_path, write_params, {"epochs": 1, "threads": 1}, {},
                                                            n=12, seed=2)
    task = _occlusion_task(stage, experiment, sorted(jobs, key=lambda j: j.fold), store, "cpu")
    threads = torch.get_num_threads()
    assert occlude_image_set(task) > 0 and torch.get_num_threads() == threads
    assert occlude_image_set(task) is None  # saved: not computed again
    elsewhere = dataclasses.replace(task, path=tmp_path / "worker" / "maps.npz")
    rates = {}
    LocalExecutor(workers=1, retries=0).run([elsewhere], lambda index, rate: rates.update({index: rate}),
                                            work=occlude_image_set, cpus=1, gpu=True)
    assert rates[0] > 0
    here, there = _saved_maps(task), _saved_maps(elsewhere)
    assert here.keys() == there.keys() == {"probability", "accuracy", "row", "fold"}
    for name in here:
        np.testing.assert_array_equal(here[name], there[name])


def test_summaries_of_a_run():
    recovery = pd.DataFrame([
        {"task": "sex", "cohort": "hcp", "arm": "imagenet", "backbone": "b", "hemisphere": h, "metric": "thickness",
         "explainer": e, "auc": a, "auc low": a - 0.05, "auc high": a + 0.05}
        for h, e, a in (("left", "occlusion (probability drop)", 0.8), ("left", "|t| map", 0.6),
                        ("right", "occlusion (probability drop)", 0.62), ("right", "|t| map", 0.64))])
    verdict = recovery_verdict(recovery).iloc[0]
    assert verdict["image sets"] == 2 and verdict["occlusion AUC above t-map's"] == 1
    assert verdict["occlusion clearly better (intervals apart)"] == 1 and verdict["t-map clearly better (intervals apart)"] == 0
    speed = pd.DataFrame({"device": "cpu", "backbone": "b", "occluded images per s": [1000.0, 3000.0]})
    projection = paper_projection(speed, 112).set_index("task")
    # 2000/s at 112 px is 500/s at 224 px
    assert projection.loc["sex", "projected hours"] == 49 * 49 * 1113 * 8 / 500 / 3600

    class Run:
        maps = {("sex", "hcp", "a", "b", "left", m): {"vertices": np.array([1.0, -2.0, np.nan]) * k}
                for m, k in (("thickness", 1.0), ("sulc", 10.0))}

    np.testing.assert_allclose(metric_mean(Run(), "sex", "hcp", "a", "b")["left"], [0.5, -1.0, np.nan])
