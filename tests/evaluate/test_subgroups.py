import numpy as np
import pandas as pd
import pytest

from studylib.evaluate.subgroups import gain_by_age, per_site_accuracy


def test_per_site_accuracy_counts_each_site_and_names_subjects_without_one():
    predictions = pd.DataFrame({"subject": list("abcdef"), "label": [1, 0, 1, 0, 1, 1],
                                "probability": [0.9, 0.2, 0.4, 0.6, 0.7, 0.8], "cohort": "c", "scheme": "site-out",
                                "arm": "2-stage", "backbone": "b"})
    sites = pd.Series({"a": "X", "b": "X", "c": "X", "d": "Y", "e": "Y", "f": "Y"})
    table = per_site_accuracy(predictions, sites).set_index("site")
    assert table.loc["X", "accuracy"] == pytest.approx(2 / 3) and table.loc["Y", "accuracy"] == pytest.approx(2 / 3)
    assert table.loc["X", "subjects"] == 3 and table.loc["Y", "label 1"] == 2
    assert (table["accuracy 95% low"] < table["accuracy"]).all()
    with pytest.raises(ValueError, match="without a site.*'f'"):
        per_site_accuracy(predictions, sites.drop("f"))


def test_gain_by_age_estimates_each_group_and_tests_equivalence_only_with_enough_subjects():
    rng = np.random.default_rng(0)
    n = 4000
    labels = rng.integers(0, 2, n)
    age = rng.uniform(6, 60, n)
    # the first classifier is right 70% of the time, the second 60%, at every age: no interaction
    first = np.where(rng.uniform(size=n) < 0.7, labels, 1 - labels) * 0.8 + 0.1
    second = np.where(rng.uniform(size=n) < 0.6, labels, 1 - labels) * 0.8 + 0.1
    table = gain_by_age(labels, first, second, age, (22, 37), margin=0.05).set_index("group")
    inside, outside = table.iloc[0], table.iloc[1]
    assert inside["subjects"] + outside["subjects"] == n
    assert inside["gain"] == pytest.approx(0.1, abs=0.04) and outside["gain"] == pytest.approx(0.1, abs=0.03)
    interaction = table.loc["interaction (inside - outside)"]
    assert interaction["low"] < 0 < interaction["high"]
    assert interaction["tost p"] < 0.05  # 4000 subjects show the gains equal within 5 points
    small = gain_by_age(labels[:120], first[:120], second[:120], age[:120], (22, 37), margin=0.05)
    assert small.iloc[-1]["tost p"] > 0.05  # 120 subjects do not, though the interaction is not significant either
    with pytest.raises(ValueError, match="without an age"):
        gain_by_age(labels, first, second, np.where(age > 50, np.nan, age), (22, 37), margin=0.05)
