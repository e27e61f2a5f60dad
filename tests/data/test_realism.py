"""Realism yardsticks: correct on draws of known structure, and the simulated ABIDE-like cohorts within tolerance
of real ABIDE I."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from studylib.data.calibration import load_calibration
from studylib.data.realism import TOLERANCES, realism_table, regional_means, thickness_yardsticks
from studylib.data.templates import DK_REGIONS

REGIONS = [r for r in DK_REGIONS if r != "corpuscallosum"]
COLUMNS = [f"left:{r}" for r in REGIONS] + [f"right:{r}" for r in REGIONS]


def _known_draw(n=20000, seed=0):
    """Regions with SD 0.3, correlation 0.3 between any two regions and 0.8 between homologues; 4 sites with
    offsets -0.2, 0, 0.1, 0.3 mm; thinning 0.1 mm per decade; no autism effect."""
    rng = np.random.default_rng(seed)
    k = len(REGIONS)
    correlation = np.full((2 * k, 2 * k), 0.3)
    correlation[np.arange(k), np.arange(k) + k] = correlation[np.arange(k) + k, np.arange(k)] = 0.8
    np.fill_diagonal(correlation, 1.0)
    values = rng.multivariate_normal(np.full(2 * k, 2.5), 0.09 * correlation, size=n)
    sites = rng.integers(0, 4, n)
    age = rng.uniform(10, 40, n)
    values += np.array([-0.2, 0.0, 0.1, 0.3])[sites, None] - 0.01 * (age - 25)[:, None]
    covariates = pd.DataFrame({"site": [f"s{s}" for s in sites], "age": age, "female": rng.random(n) < 0.2,
                               "autism": rng.integers(0, 2, n)})
    return pd.DataFrame(values, columns=COLUMNS), covariates, correlation


def test_yardsticks_recover_a_known_structure():
    values, covariates, correlation = _known_draw()
    found = thickness_yardsticks(values, covariates)
    # the site offsets and the age spread add shared variance: the expected raw covariance, by the law of total variance
    site_variance = np.var([-0.2, 0.0, 0.1, 0.3])
    age_variance = 0.01**2 * 30**2 / 12
    covariance = 0.09 * correlation + site_variance + age_variance
    expected = covariance / np.sqrt(np.outer(np.diag(covariance), np.diag(covariance)))
    assert found["median_regional_sd"] == pytest.approx(np.sqrt(covariance[0, 0]), rel=0.02)
    assert found["median_correlation"] == pytest.approx(np.median(expected[np.triu_indices(len(expected), 1)]), abs=0.02)
    assert found["median_left_right_correlation"] == pytest.approx(expected[0, len(REGIONS)], abs=0.02)
    assert found["first_eigenvector_share"] == pytest.approx(np.linalg.eigvalsh(expected)[-1] / len(expected), abs=0.02)
    assert found["site_mean_sd"] == pytest.approx(np.std([-0.2, 0.0, 0.1, 0.3], ddof=1), abs=0.01)
    assert found["site_mean_min"] == pytest.approx(2.5 - 0.2, abs=0.02)
    assert found["age_slope_controls"] == pytest.approx(-0.1, abs=0.01)
    assert found["autism_max_abs_d"] < 0.06  # no effect planted: only noise of n = 20000


def test_regional_means_average_each_region_and_skip_the_corpus_callosum():
    labels = {"left": np.array([1, 1, 2, 4, 0]), "right": np.array([36, 37, 37, 39, 0])}
    names = {i + 1: f"L_{r}" for i, r in enumerate(DK_REGIONS)} | {i + 36: f"R_{r}" for i, r in enumerate(DK_REGIONS)}
    maps = {"left": np.array([[1.0, 3.0, 5.0, 100.0, np.nan]]), "right": np.array([[2.0, 4.0, 6.0, 100.0, 7.0]])}
    table = regional_means(maps, labels, names)
    assert list(table.columns) == [f"left:{DK_REGIONS[0]}", f"left:{DK_REGIONS[1]}", f"right:{DK_REGIONS[0]}",
                                   f"right:{DK_REGIONS[1]}"]
    np.testing.assert_allclose(table.to_numpy(), [[2.0, 5.0, 2.0, 5.0]])


def test_realism_table_flags_yardsticks_outside_tolerance():
    real = {"median_regional_sd": 0.3, "site_mean_sd": 0.15, "autism_max_abs_d": 0.2}
    table = realism_table({"median_regional_sd": 0.37, "site_mean_sd": 0.19, "autism_max_abs_d": 0.5}, real)
    within = dict(zip(table["key"], table["within"]))
    assert within == {"median_regional_sd": False, "site_mean_sd": True, "autism_max_abs_d": None}


@pytest.fixture(scope="module")
def fslr():
    from studylib.data.templates import load_template

    return load_template("fs_LR_32k")


@pytest.mark.parametrize("scenario", ["realistic", "paper-sized"])
def test_simulated_abide_like_cohort_is_within_tolerance_of_real_abide1(fslr, scenario, tmp_path_factory):
    """The ABIDE-like cohort, summarised per D-K region exactly as the real tables are, at the real size (1035)."""
    from studylib.data.simulate import build_model, regional_draw

    model = build_model(fslr, "autism", ["thickness"], 20, scenario=scenario, n_modes=20,
                        cache=tmp_path_factory.getbasetemp() / "simcache")
    values, covariates = regional_draw(model, 1035, np.random.default_rng(7))
    values = values["thickness"]
    table = realism_table(thickness_yardsticks(values, covariates), load_calibration().yardsticks)
    tested = table[table["key"].isin(TOLERANCES)]
    assert len(tested) == len(TOLERANCES)
    assert tested["within"].all(), tested[["key", "real ABIDE I", "simulated", "relative difference"]].to_string()


def test_dk_labels_ship_with_the_package_and_equal_the_brainspace_files(shared_data):
    from studylib.data.templates import dk_labels

    for template, name in (("fs_LR_32k", "aparc_conte69.csv"), ("fsaverage5", "aparc_fsa5.csv")):
        np.testing.assert_array_equal(dk_labels(template), np.loadtxt(shared_data / "atlas" / name, dtype=np.int64))


def test_shipped_calibration_is_rederived_from_the_data(shared_data):
    from studylib.data.calibration import derive_calibration

    shipped = load_calibration().raw
    derived = json.loads(json.dumps(derive_calibration(shared_data)))
    assert derived.keys() == shipped.keys()
    assert derived["regions"] == shipped["regions"]
    assert [s["site"] for s in derived["sites"]] == [s["site"] for s in shipped["sites"]]

    def close(a, b, path="calibration"):
        if isinstance(a, dict):
            for key in a:
                close(a[key], b[key], f"{path}.{key}")
        elif isinstance(a, list):
            assert len(a) == len(b), path
            for i, (x, y) in enumerate(zip(a, b)):
                close(x, y, f"{path}[{i}]")
        elif isinstance(a, float):
            assert a == pytest.approx(b, abs=2e-4), path
        else:
            assert a == b, path

    close(derived, shipped)


def test_calibration_is_real_abide1(shared_data):
    """Sanity of the shipped numbers against what the issue measured on the same tables."""
    calibration = load_calibration()
    assert calibration.raw["n_subjects"] == 1035 and len(calibration.regions) == 68
    assert len(calibration.sites) == 20 and calibration.sites["n"].sum() == 1035
    yardsticks = calibration.yardsticks
    assert 0.28 < yardsticks["median_regional_sd"] < 0.30
    assert 0.75 < yardsticks["median_left_right_correlation"] < 0.8
    assert calibration.raw["sex"]["n"] > 100 and calibration.raw["sex"]["n_female"] >= 20
    # shrinkage never enlarges an effect, and keeps its sign
    for contrast in ("autism", "sex"):
        d, shrunk = calibration.array(contrast, "d"), calibration.array(contrast, "shrunk_d")
        assert np.all(np.abs(shrunk) <= np.abs(d) + 1e-9) and np.all(shrunk * d >= 0)
