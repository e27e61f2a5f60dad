"""Result tables: each arm beside the paper's number."""

from __future__ import annotations

import pandas as pd
import pytest


def test_arms_beside_the_paper():
    from studylib.evaluate.summaries import arms_vs_paper

    rows = []
    for arm, probability in (("2-stage", [0.9, 0.2, 0.6, 0.4]), ("scratch", [0.4, 0.6, 0.6, 0.4])):
        for metric, shift in (("thickness", 0.05), ("sulc", -0.05)):
            for subject, (label, p) in enumerate(zip([1, 0, 1, 0], probability)):
                rows.append({"subject": f"s{subject}", "label": label, "fold": subject % 2, "probability": p + shift,
                             "cohort": "abide", "scheme": "kfold", "arm": arm, "backbone": "resnet50",
                             "hemisphere": "left", "metric": metric})
    table = arms_vs_paper(pd.DataFrame(rows), "asd").set_index("arm")
    assert table.loc["2-stage", "image-average accuracy (%)"] == 100.0  # the 0.05 shifts cancel in the mean
    assert table.loc["scratch", "image-average accuracy (%)"] == 50.0
    assert table.loc["2-stage", "image-average AUC"] == 1.0
    assert table.loc["2-stage", "paper ResNet-50 (%)"] == 67.70 and table.loc["scratch", "paper DenseNet-121 (%)"] == 63.64
    assert table.loc["2-stage", "mean single-image accuracy (%)"] == 100.0
    # the paper's numbers right after ours; no column the paper leaves empty for every row (site-out's model)
    columns = list(table.reset_index().columns)
    assert columns[4:7] == ["image-average accuracy (%)", "paper DenseNet-121 (%)", "paper ResNet-50 (%)"]
    assert "paper unspecified (%)" not in columns
    alone = arms_vs_paper(pd.DataFrame(), "sex")
    assert set(alone["arm"]) == {"scratch", "imagenet"} and "paper ResNet-50 (%)" in alone


def _rows(arm, backbone, probability, labels, metrics=("thickness", "sulc")):
    return [{"subject": f"s{i}", "label": label, "fold": i % 2, "probability": p, "cohort": "abide", "scheme": "kfold",
             "arm": arm, "backbone": backbone, "hemisphere": "left", "metric": metric}
            for metric in metrics for i, (label, p) in enumerate(zip(labels, probability))]


def test_arms_against_the_linear_reference_and_the_bayes_ceiling():
    import numpy as np

    from studylib.evaluate.summaries import REFERENCE_VIEW, against_references, wilson_interval

    labels = [1, 0] * 50
    good = [0.8 if label else 0.2 for label in labels]
    half = [0.8 if (label and i < 50) else 0.2 for i, label in enumerate(labels)]  # half the positives missed
    networks = pd.DataFrame(_rows("2-stage", "resnet50", half, labels))
    reference = pd.DataFrame(_rows("linear reference", "logistic regression", good, labels))
    table = against_references(networks, reference, {"abide": 0.8}).set_index("arm")
    assert table.loc["linear reference", "image-average accuracy"] == 1.0
    assert table.loc["2-stage", "image-average accuracy"] == 0.75
    assert table.loc["2-stage", "fraction of linear reference"] == 0.75
    assert table.loc["2-stage", "fraction of Bayes ceiling"] == round(0.75 / 0.8, 4)
    low, high = wilson_interval(75, 100)
    assert (table.loc["2-stage", "accuracy 95% low"], table.loc["2-stage", "accuracy 95% high"]) == (
        round(low, 4), round(high, 4))
    assert low > 0.5 and bool(table.loc["2-stage", "above chance"])
    assert table.loc["2-stage", "images"] == 2
    assert set(REFERENCE_VIEW) <= set(table.columns)  # what the notebooks show exists
    assert np.isnan(against_references(networks, reference, {})["Bayes-optimal accuracy"]).all()
    # Wilson's interval: a textbook value (Newcombe 1998: 81/263 -> 0.2553 to 0.3662)
    assert wilson_interval(81, 263) == pytest.approx((0.2553, 0.3662), abs=1e-4)
