"""Result tables: each arm beside the paper's number."""

from __future__ import annotations

import pandas as pd


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
    alone = arms_vs_paper(pd.DataFrame(), "sex")
    assert set(alone["arm"]) == {"scratch", "imagenet"} and "paper ResNet-50 (%)" in alone
