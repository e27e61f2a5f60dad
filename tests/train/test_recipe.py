"""The paper's learning-rate schedule and mix-up."""

from __future__ import annotations

import numpy as np
import pytest

from studylib.study.config import load_params
from studylib.train.recipe import learning_rate, mix, step_learning_rate, uses_mixup
from tests.support import PROJECT


def test_paper_schedule():
    train = load_params(PROJECT / "params" / "paper.yaml").train
    expected = {0: 0.01, 24: 0.01, 25: 0.001, 49: 0.001, 50: 1e-4, 74: 1e-4, 75: 1e-4, 124: 1e-4}
    for epoch, lr in expected.items():
        assert learning_rate(epoch, train) == pytest.approx(lr)
    assert [uses_mixup(e, train) for e in (0, 74, 75, 124)] == [True, True, False, False]
    assert sum(uses_mixup(e, train) for e in range(train.epochs)) == 75
    with pytest.raises(ValueError, match="outside 0..124"):
        learning_rate(125, train)


def test_warmup_ramps_the_rate_linearly_then_hands_over_to_the_schedule():
    paper = load_params(PROJECT / "params" / "paper.yaml").train
    assert paper.warmup_epochs == 0
    assert step_learning_rate(0, 0.25, paper) == learning_rate(0, paper)  # no warm-up: the epoch's rate throughout
    train = paper.model_copy(update={"warmup_epochs": 2})
    steps = 4
    ramp = [step_learning_rate(epoch, (step + 1) / steps, train) for epoch in (0, 1) for step in range(steps)]
    np.testing.assert_allclose(ramp, 0.01 * np.arange(1, 9) / 8)  # from lr/8 up to lr, one step at a time
    assert step_learning_rate(2, 0.25, train) == learning_rate(2, train) == pytest.approx(0.01)
    assert step_learning_rate(80, 0.5, train) == pytest.approx(1e-4)
    with pytest.raises(ValueError, match="done must lie"):
        step_learning_rate(0, 0.0, train)


def test_mixup_is_a_convex_combination():
    rng = np.random.default_rng(0)
    images = rng.normal(size=(16, 1, 4, 4))
    targets = np.eye(2)[rng.integers(0, 2, 16)]
    lams = []
    for _ in range(200):
        mixed, mixed_targets, lam = mix(images, targets, rng)
        lams.append(lam)
        np.testing.assert_allclose(mixed_targets.sum(axis=1), 1.0)
        assert mixed.min() >= images.min() - 1e-12 and mixed.max() <= images.max() + 1e-12
    assert 0.4 < np.mean(lams) < 0.6 and min(lams) >= 0 and max(lams) <= 1  # lambda ~ U(0, 1)
