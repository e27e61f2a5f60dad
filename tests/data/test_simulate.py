from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from studylib.data.simulate import (
    PAPER_SIZED_CEILING,
    bayes_accuracy,
    build_model,
    oracle_log_odds,
    sample_covariates,
    sample_maps,
)

from tests.support import synthetic_template

METRICS = ["thickness", "sulc"]


@pytest.fixture(scope="module")
def template():
    return synthetic_template()


def _model(template, task, n_sites, scenario="paper-sized"):
    surface, parcels = template
    return build_model(surface, task, METRICS, n_sites, scenario=scenario, n_modes=20, parcels=parcels)


@pytest.mark.parametrize(("task", "n_sites", "scenario"), [("autism", 4, "paper-sized"), ("sex", 1, "paper-sized"),
                                                           ("autism", 4, "realistic"), ("sex", 1, "realistic")])
def test_analytic_bayes_accuracy_matches_monte_carlo(template, task, n_sites, scenario):
    model = _model(template, task, n_sites, scenario=scenario)
    analytic = bayes_accuracy(model).iloc[-1]["bayes_accuracy"]
    if scenario == "paper-sized":  # the scenario's definition
        assert analytic == pytest.approx(PAPER_SIZED_CEILING[task], abs=1e-6)
    assert 0.5 < analytic < 0.999
    rng = np.random.default_rng(11)
    n = 6000
    covariates = sample_covariates(model, n, rng)
    maps = {m: sample_maps(model, m, covariates, rng) for m in METRICS}
    predicted = oracle_log_odds(model, maps, covariates) > 0
    observed = (predicted == covariates["label"].to_numpy().astype(bool)).mean()
    standard_error = np.sqrt(analytic * (1 - analytic) / n)
    assert abs(observed - analytic) < 4 * standard_error, (observed, analytic)


def test_oracle_beats_a_wrong_rule(template):
    """Sanity: flipping the oracle's weights must do worse than chance-level plus margin."""
    model = _model(template, "sex", 1)
    rng = np.random.default_rng(5)
    covariates = sample_covariates(model, 2000, rng)
    maps = {m: sample_maps(model, m, covariates, rng) for m in METRICS}
    log_odds = oracle_log_odds(model, maps, covariates)
    labels = covariates["label"].to_numpy().astype(bool)
    assert ((log_odds > 0) == labels).mean() > 0.6
    assert ((log_odds < 0) == labels).mean() < 0.4


def test_planted_effects_are_recovered_by_a_t_test(template):
    surface, parcels = template
    model = _model(template, "sex", 1)
    rng = np.random.default_rng(2)
    n = 3000
    covariates = sample_covariates(model, n, rng)
    labels = covariates["label"].to_numpy().astype(bool)
    maps = sample_maps(model, "thickness", covariates, rng)
    t, p = stats.ttest_ind(maps[labels], maps[~labels], axis=0)
    planted = model.planted[model.planted["metric"] == "thickness"]
    planted = planted.reindex(planted["d"].abs().sort_values(ascending=False).index[:4])  # the 4 largest
    left = model.vertex_index["left"]
    effect = model.blocks["thickness"].effect
    for _, region in planted.iterrows():
        offset = 0 if region["hemisphere"] == "left" else len(left)
        index = model.vertex_index[region["hemisphere"]]
        inside = np.flatnonzero(np.asarray(parcels.labels[region["hemisphere"]])[index] == region["label"]) + offset
        # the region's vertices show the planted direction, and its mean difference is the planted d x SD
        assert np.sign(np.median(t[inside])) == np.sign(region["d"])
        difference = maps[labels][:, inside].mean() - maps[~labels][:, inside].mean()
        assert difference == pytest.approx(region["d"] * region["sd"], abs=4 * region["sd"] * np.sqrt(4 / n))
    # and the strongest vertices sit where the planted effect is large
    strongest = np.argsort(-np.abs(t))[:20]
    assert np.median(np.abs(effect[strongest])) > np.median(np.abs(effect))


def test_same_seed_same_cohort(template):
    a, b = _model(template, "autism", 3), _model(template, "autism", 3)
    rng_a, rng_b = np.random.default_rng(1), np.random.default_rng(1)
    cov_a, cov_b = sample_covariates(a, 50, rng_a), sample_covariates(b, 50, rng_b)
    assert cov_a.equals(cov_b)
    np.testing.assert_array_equal(sample_maps(a, "sulc", cov_a, rng_a), sample_maps(b, "sulc", cov_b, rng_b))
    realistic = _model(template, "autism", 3, scenario="realistic")
    assert not np.array_equal(a.blocks["sulc"].effect, realistic.blocks["sulc"].effect)


def test_abide_like_sites_are_the_real_largest_sites(template):
    from studylib.data.calibration import load_calibration

    model = _model(template, "autism", 5)
    real = load_calibration().sites.sort_values("n", ascending=False, kind="stable")
    assert model.site_names == list(real["site"][:5])
    np.testing.assert_allclose(model.site_prevalence, real["autism"][:5])
    assert len(set(np.round(model.site_scale, 6))) == 5
    assert _model(template, "autism", 22).site_names[20:] == [f"{real['site'].iloc[0]}_20", f"{real['site'].iloc[1]}_21"]
    table = bayes_accuracy(model)
    assert list(table["site"]) == [*model.site_names, "all"]
    assert table.iloc[:-1]["share"].sum() == pytest.approx(1.0)
