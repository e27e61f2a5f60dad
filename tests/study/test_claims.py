"""The claims table: every verdict from the run's tables by the rule on the page."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from studylib.study.claims import claims_markdown, claims_table, verdict
from studylib.study.layout import ResultsLayout


def test_verdict_rules():
    assert verdict(0.05, 0.01, 0.04, 0.03) == "reproduced"
    assert verdict(-0.05, 0.01, 0.04, 0.03) == "contradicted"
    assert verdict(0.01, 0.40, 0.02, 0.03) == "not reproduced"  # the paper's 3 points were detectable
    assert verdict(0.01, 0.40, 0.10, 0.03) == "inconclusive"    # they were not, at this n


def _comparison(**fields) -> dict:
    base = {"scheme": "kfold", "backbone": "b", "subjects": 300, "accuracy first": 0.7, "accuracy second": 0.6,
            "accuracy difference": 0.1, "accuracy MDE": 0.05, "auc difference": 0.08, "mcnemar p (Holm)": 0.01}
    return base | fields


def test_claims_come_from_the_run_tables(tmp_path):
    layout = ResultsLayout(tmp_path / "results")
    for stage, name, rows in (
            ("06_stack", "paired_comparisons", [
                _comparison(claim="arm ordering", task="sex", cohort="hcp", first="imagenet", second="scratch"),
                _comparison(claim="arm ordering", task="autism", cohort="abide", first="2-stage", second="imagenet",
                            **{"accuracy difference": 0.01, "mcnemar p (Holm)": 0.6, "accuracy MDE": 0.01}),
                _comparison(claim="stacking gain", task="autism", cohort="abide", first="xgboost", second="mean")]),
            ("09_baselines", "paired_comparisons", [
                _comparison(cohort="abide", first="2-stage", second="3d-mesh",
                            **{"accuracy difference": -0.08, "mcnemar p (Holm)": 0.02})]),
            ("06_stack", "age_analysis", [{"group": "interaction (inside - outside)", "subjects": 300, "gain": 0.01,
                                           "low": -0.03, "high": 0.04, "p": 0.7, "margin": 0.05, "tost p": 0.01,
                                           "cohort": "abide"}])):
        folder = layout.tables(stage)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{name}.csv"
        table = pd.DataFrame(rows)
        table.to_csv(path, index=False, mode="a" if path.is_file() else "w", header=not path.is_file())
    claims = claims_table(layout).set_index("claim")
    assert claims.loc["sex: imagenet > scratch", "verdict"] == "reproduced"
    assert claims.loc["autism: 2-stage > imagenet", "verdict"] == "not reproduced"  # MDE 1 point < the paper's 2
    assert claims.loc["autism: 2-stage flat map > 3d-mesh", "verdict"] == "contradicted"
    assert claims.loc["autism: no age interaction of the 2-stage gain", "verdict"] == "reproduced"
    assert "70.0% vs 60.0% (+10.0 points" in claims.loc["sex: imagenet > scratch", "ours"]
    assert "+3.37 points" in claims.loc["sex: imagenet > scratch", "paper"]  # studylib.paper's Table 1, not typed
    page = claims_markdown(layout)
    assert "4 claims judged" in page and "| sex: imagenet > scratch | hcp (b) |" in page


def test_age_and_overlap_claims_are_holm_adjusted_within_their_family(tmp_path):
    layout = ResultsLayout(tmp_path / "results")
    interaction = {"group": "interaction (inside - outside)", "subjects": 300, "gain": 0.05, "low": 0.0,
                   "high": 0.1, "margin": 0.05}
    age = pd.DataFrame([interaction | {"cohort": "abide", "p": 0.03, "tost p": 0.6},  # alone: significant
                        interaction | {"cohort": "simulated", "p": 0.04, "tost p": 0.02},  # alone: equivalent
                        interaction | {"cohort": "semi-real", "p": np.nan, "tost p": np.nan},  # no test
                        # not a claim (were it counted, abide's adjusted p would be 0.09)
                        {"group": "inside", "subjects": 150, "cohort": "abide", "p": 0.5}])
    overlap = pd.DataFrame([{"task": "autism", "arm": "2-stage", "cohort": c, "paper's regions": "a, b",
                             "top": 5, "our top regions": "a", "overlap": 1, "expected by chance": 0.2,
                             "p (hypergeometric)": p} for c, p in (("abide", 0.02), ("simulated", 0.04))])
    for stage, name, table in (("06_stack", "age_analysis", age), ("08_occlusion", "paper_overlap", overlap)):
        layout.tables(stage).mkdir(parents=True, exist_ok=True)
        table.to_csv(layout.tables(stage) / f"{name}.csv", index=False)
    claims = claims_table(layout)
    ages = claims[claims["claim"].str.contains("age interaction")].set_index("cohort")
    assert ages.loc["abide", "p"] == pytest.approx(0.06) and ages.loc["abide", "verdict"] == "inconclusive"
    assert ages.loc["simulated", "verdict"] == "reproduced"  # equivalent: TOST p 0.02 -> 0.04 after Holm
    assert ages.loc["semi-real", "verdict"] == "inconclusive" and np.isnan(ages.loc["semi-real", "p"])
    regions = claims[claims["claim"].str.contains("occlusion")].set_index("cohort")
    assert regions.loc["abide", "p"] == pytest.approx(0.04) and regions.loc["abide", "verdict"] == "reproduced"
    assert regions.loc["simulated", "p"] == pytest.approx(0.04) and regions.loc["simulated", "verdict"] == "reproduced"
