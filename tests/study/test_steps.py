from __future__ import annotations

import numpy as np

from studylib.baselines.linear import REFERENCE_ARM
from studylib.study.steps import linear_references
from studylib.train.experiments import Experiment, plan_autism

from tests.support import make_store, small_params


def test_the_linear_reference_runs_in_every_evaluated_scheme_on_the_networks_folds(tmp_path):
    """k-fold and leave-one-site-out get the reference on the networks' own folds; stage-1 models get none."""
    stores = {"hcp": make_store(tmp_path, "hcp", ["thickness", "sulc"]),
              "abide": make_store(tmp_path, "abide", ["thickness", "sulc"], n=30, sites=3)}
    params = small_params(autism_cohorts=["abide"], site_out_arms=["2-stage"], site_out_cohorts=None)
    experiment = Experiment(tmp_path / "run", stores, params.train, params.seed, "cpu")
    plan_autism(experiment, params.transfer, ["abide"])
    assert {job.scheme for job in experiment.jobs} == {"all", "kfold", "site-out"}

    reference = linear_references(experiment, progress=False)
    assert set(reference["arm"]) == {REFERENCE_ARM}
    assert set(reference["cohort"]) == {"abide"}  # hcp trains stage-1 models only: nothing to compare there
    assert set(reference.groupby(["scheme", "metric"]).size().items()) == {
        (("kfold", "thickness"), 30), (("kfold", "sulc"), 30), (("site-out", "thickness"), 30),
        (("site-out", "sulc"), 30)}
    subjects = stores["abide"].subjects["subject"].astype(str).to_numpy()
    for scheme in ("kfold", "site-out"):
        rows = reference[(reference["scheme"] == scheme) & (reference["metric"] == "thickness")]
        assert list(rows["subject"]) == list(subjects)
        np.testing.assert_array_equal(rows["fold"].to_numpy(), experiment.folds("abide", scheme))
    site_out = reference[reference["scheme"] == "site-out"]
    sites = stores["abide"].subjects.set_index("subject")["site"]
    # one fold per site: every test fold is exactly one site's subjects
    assert (site_out.groupby("fold")["subject"].agg(lambda s: sites.loc[list(s)].nunique()) == 1).all()
    # the images are learnable (label 1 brighter): the reference learns across sites as well
    correct = (site_out["probability"] >= 0.5) == (site_out["label"] == 1)
    assert correct.mean() > 0.8
