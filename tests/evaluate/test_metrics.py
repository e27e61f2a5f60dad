"""Classification metrics and filter variation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch


def test_classification_metrics():
    from studylib.evaluate.metrics import classification_metrics

    result = classification_metrics(np.array([1, 1, 0, 0]), np.array([0.9, 0.4, 0.2, 0.6]))
    assert result == {"accuracy": 0.5, "sensitivity": 0.5, "specificity": 0.5, "auc": 0.75, "n": 4}


def test_filter_variation_is_the_relative_change_of_each_convolution():
    from studylib.evaluate.filters import filter_variation

    start = {"conv1.weight": torch.ones(4, 1, 3, 3), "bn.weight": torch.ones(4), "conv2.weight": torch.ones(2, 4, 1, 1)}
    tuned = {"conv1.weight": torch.ones(4, 1, 3, 3) * 1.5, "bn.weight": torch.zeros(4),
             "conv2.weight": torch.ones(2, 4, 1, 1)}
    table = filter_variation(start, tuned)
    assert table["layer"].tolist() == ["conv1.weight", "conv2.weight"]  # convolutions only, in order
    assert table["variation"].tolist() == pytest.approx([0.5, 0.0])
    assert table["relative_depth"].tolist() == [0.0, 1.0]
    with pytest.raises(KeyError, match="conv2.weight"):
        filter_variation(start, {"conv1.weight": tuned["conv1.weight"]})


def test_filter_variation_by_network_level():
    from studylib.evaluate.filters import variation_by_level

    variation = pd.DataFrame({"relative_depth": [0.0, 0.5, 1.0] * 2, "variation": [0.3, 0.2, 0.1, 0.6, 0.4, 0.2],
                              "arm": ["2-stage"] * 3 + ["imagenet"] * 3, "cohort": "abide", "backbone": "resnet50"})
    levels = variation_by_level(variation).loc[("abide", "resnet50")]
    assert levels.loc["low", "2-stage"] == pytest.approx(0.3) and levels.loc["high", "imagenet"] == pytest.approx(0.2)
