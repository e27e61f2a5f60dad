"""Fitting and prediction: the engine learns, resumes to identical weights, reads ahead, picks devices; a job
normalises with its training subjects only."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from studylib.study.config import load_params
from studylib.train.models import Init, MetricNet, build_model
from tests.support import PROJECT


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
    train = _params(epochs=4, mixup_epochs=2, batch_size=8, lr_step_epochs=1, finetune_lr=1e-4, warmup_epochs=1)
    torch.manual_seed(0)
    net = MetricNet(build_model("resnet18", Init("scratch")), mean=0.75, sd=1.0)
    history = fit(net, images, labels, np.arange(len(labels)), train, seed=0)
    assert [h["mixup"] for h in history] == [True, True, False, False]
    # 3 steps an epoch; the warm-up's epoch records its steps' mean rate: 0.01 x (1/3 + 2/3 + 1) / 3
    assert [h["lr"] for h in history] == pytest.approx([0.01 * 2 / 3, 0.001, 1e-4, 1e-4])
    probability = predict(net, images, np.arange(len(labels)))
    assert ((probability > 0.5) == labels).mean() > 0.8


def _lite0(seed: int) -> MetricNet:
    """A seeded scratch EfficientNet-Lite0 (it has dropout, so resuming must restore random states)."""
    torch.manual_seed(seed)
    return MetricNet(build_model("efficientnet_lite0", Init("scratch")), mean=0.75, sd=1.0)


def test_interrupted_fit_resumes_to_the_same_weights(tmp_path):
    from studylib.train.engine import fit

    images, labels = _toy()
    train = _params(epochs=3, mixup_epochs=2, batch_size=8, lr_step_epochs=1)
    index = np.arange(len(labels))

    def fresh():
        return _lite0(seed=5)

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


def test_checkpoints_every_few_epochs_resume_from_the_last_saved_epoch(tmp_path):
    from studylib.train.engine import fit

    images, labels = _toy()
    train = _params(epochs=4, mixup_epochs=2, batch_size=8, lr_step_epochs=1, checkpoint_every=2)
    index = np.arange(len(labels))
    whole = _lite0(seed=5)
    fit(whole, images, labels, index, train, seed=1)

    class Killed(Exception):
        pass

    saved_after = []

    def kill_after_third(epoch):
        saved_after.append(torch.load(tmp_path / "c.pt", weights_only=False)["epoch"]
                           if (tmp_path / "c.pt").is_file() else None)
        if epoch == 2:
            raise Killed

    with pytest.raises(Killed):
        fit(_lite0(seed=5), images, labels, index, train, seed=1, checkpoint=tmp_path / "c.pt",
            after_epoch=kill_after_third)
    assert saved_after == [None, 1, 1]  # saved after the second epoch only; the third is lost
    resumed = _lite0(seed=5)
    history = fit(resumed, images, labels, index, train, seed=1, checkpoint=tmp_path / "c.pt")
    assert [h["epoch"] for h in history] == [0, 1, 2, 3]
    assert torch.load(tmp_path / "c.pt", weights_only=False)["epoch"] == 3  # the last epoch is always saved
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
    monkeypatch.setattr(jobs, "normalisation",
                        lambda imgs, index, per="images": seen.append(index) or real(imgs, index, per))
    job = Job("toy", "scratch", "kfold", "resnet18", Init("scratch"), "left", "thickness", fold=1, seed=3)
    train = _params(epochs=1, mixup_epochs=1, batch_size=8)
    assert run_job(job, images, subjects, folds, train, tmp_path / "job", store_identity="toy")
    np.testing.assert_array_equal(seen[0], np.flatnonzero(folds == 0))
    state = torch.load(tmp_path / "job" / "model.pt", weights_only=True)
    assert float(state["mean"]) == pytest.approx(float(images[folds == 0].mean()), rel=1e-6)
    predictions = pd.read_csv(tmp_path / "job" / "predictions.csv")
    assert sorted(predictions["subject"]) == sorted(subjects["subject"][folds == 1])
    assert not (tmp_path / "job" / "checkpoint.pt").exists()


def test_a_per_pixel_normalisation_uses_each_training_pixel_and_reloads(tmp_path):
    """train.normalise = pixels: the model holds each pixel's training mean and SD (test subjects excluded), its
    saved state reloads with MetricNet.from_state, and the reloaded model predicts what the job wrote."""
    import pandas as pd

    from studylib.train.jobs import Job, normalisation, run_job

    images, labels = _toy(n=20)
    subjects = pd.DataFrame({"subject": [f"s{i}" for i in range(20)], "label": labels})
    folds = np.arange(20) % 2
    images[folds == 1] += 100.0
    images[folds == 0, :4] *= 3.0  # a pattern the training subjects share, pixel by pixel
    job = Job("toy", "scratch", "kfold", "resnet18", Init("scratch"), "left", "thickness", fold=1, seed=3)
    train = _params(epochs=1, mixup_epochs=1, batch_size=8, normalise="pixels")
    assert run_job(job, images, subjects, folds, train, tmp_path / "job", store_identity="toy")
    state = torch.load(tmp_path / "job" / "model.pt", weights_only=True)
    training = images[folds == 0].astype(np.float64)
    np.testing.assert_allclose(state["mean"].numpy(), training.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(state["sd"].numpy(), training.std(axis=0), rtol=1e-4)
    net = MetricNet.from_state(build_model("resnet18", Init("scratch")), state).eval()
    with torch.no_grad():
        probability = torch.softmax(net(torch.from_numpy(images[folds == 1]).float()), dim=1)[:, 1].numpy()
    written = pd.read_csv(tmp_path / "job" / "predictions.csv")
    np.testing.assert_allclose(written["probability"], probability, atol=1e-6)
    constant = np.ones((4, 3, 3), dtype=np.float32)
    mean, sd = normalisation(constant, np.arange(4), "pixels")
    assert mean.shape == sd.shape == (3, 3) and np.all(sd == 1.0)  # a pixel that never varies: SD 1, no division by 0
    with pytest.raises(ValueError, match="normalise must be"):
        normalisation(constant, np.arange(4), "channels")
    with pytest.raises(ValueError, match="per-pixel normalisation of shape"):
        net(torch.zeros(2, 8, 8))


def test_resident_streamed_and_read_ahead_images_train_the_same_weights():
    """Images held as one tensor, read per batch from the store, or read ahead by threads: same weights."""
    from studylib.train.engine import fit

    images, labels = _toy(n=24)
    index = np.arange(len(labels))
    states = []
    for workers, resident_bytes in ((0, None), (0, 0), (2, 0)):
        train = _params(epochs=2, mixup_epochs=1, batch_size=8, num_workers=workers)
        torch.manual_seed(0)
        net = MetricNet(build_model("resnet18", Init("scratch")), mean=0.75, sd=1.0)
        fit(net, images, labels, index, train, seed=4, resident_bytes=resident_bytes)
        states.append(net.state_dict())
    for other in states[1:]:
        for key, value in states[0].items():
            assert torch.equal(value, other[key]), key


def test_image_source_holds_only_its_rows():
    from studylib.train.engine import ImageSource

    images = np.arange(10 * 4 * 4, dtype=np.float32).reshape(10, 4, 4)
    source = ImageSource(images, np.array([7, 2, 5]), torch.device("cpu"))
    assert source.resident is not None and source.resident.shape == (3, 1, 4, 4)
    assert torch.equal(source.batch(np.array([5, 2])), torch.from_numpy(images[[5, 2]]).unsqueeze(1))
    with pytest.raises(IndexError, match="outside the rows"):
        source.batch(np.array([3]))
    streamed = ImageSource(images, np.array([7, 2, 5]), torch.device("cpu"), budget=0)
    assert streamed.resident is None
    assert torch.equal(streamed.batch(np.array([5, 2])), source.batch(np.array([5, 2])))


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


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_interrupted_fit_resumes_on_a_gpu(tmp_path):
    """A fresh process's view: a new model object resumes from the checkpoint (CPU and CUDA random states included)
    and predicts what an uninterrupted fit predicts."""
    from studylib.train.engine import fit, predict

    images, labels = _toy()
    train = _params(epochs=3, mixup_epochs=1, batch_size=8, lr_step_epochs=1)
    index = np.arange(len(labels))

    def fresh():
        return _lite0(seed=0)

    def stop(epoch):
        if epoch == 1:
            raise KeyboardInterrupt

    torch.backends.cudnn.deterministic = True
    try:
        whole = fresh()
        fit(whole, images, labels, index, train, seed=1, device="cuda")
        with pytest.raises(KeyboardInterrupt):
            fit(fresh(), images, labels, index, train, seed=1, checkpoint=tmp_path / "c.pt", device="cuda",
                after_epoch=stop)
        torch.cuda.manual_seed_all(12345)  # whatever the device generator holds now must not matter
        resumed = fresh()
        history = fit(resumed, images, labels, index, train, seed=1, checkpoint=tmp_path / "c.pt", device="cuda")
    finally:
        torch.backends.cudnn.deterministic = False
    assert [h["epoch"] for h in history] == [0, 1, 2]
    np.testing.assert_allclose(predict(resumed, images, index, device="cuda"),
                               predict(whole, images, index, device="cuda"), atol=1e-6)


def test_a_job_key_covers_the_starting_weights_in_the_hub_cache(tmp_path, monkeypatch):
    from studylib.train.jobs import Job, job_key
    from studylib.train.models import imagenet_weights_file

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    job = Job("toy", "imagenet", "kfold", "resnet18", Init("imagenet"), "left", "thickness", fold=0, seed=3)
    train, folds = _params(), np.arange(6) % 2
    missing = job_key(job, train, "images", folds)
    path = imagenet_weights_file("resnet18")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"weights v1")
    first = job_key(job, train, "images", folds)
    path.write_bytes(b"weights v2")
    assert len({missing, first, job_key(job, train, "images", folds)}) == 3
    assert job_key(job, train.model_copy(update={"threads": train.threads + 1}), "images", folds) != job_key(
        job, train, "images", folds)
    # how often a checkpoint is written does not change what the model learns
    assert job_key(job, train.model_copy(update={"checkpoint_every": 5}), "images", folds) == job_key(
        job, train, "images", folds)


def test_a_volume_network_learns_and_resumes_like_the_image_networks(tmp_path):
    from studylib.train.engine import fit, memory_format, predict
    from studylib.train.models import input_channels

    rng = np.random.default_rng(3)
    labels = np.r_[np.zeros(12, int), np.ones(12, int)]
    volumes = rng.normal(0, 1, (24, 16, 20, 16)).astype(np.float32) + 1.5 * labels[:, None, None, None]
    assert memory_format(volumes) == torch.channels_last_3d and memory_format(volumes[:, 0]) == torch.channels_last
    train = _params(epochs=4, mixup_epochs=2, batch_size=8, lr_step_epochs=2, finetune_lr=1e-3)
    index = np.arange(24)

    def fresh():
        torch.manual_seed(4)
        return MetricNet(build_model("densenet3d_small", Init("scratch")), mean=0.75, sd=1.0,
                         channels=input_channels("densenet3d_small"))

    whole = fresh()
    fit(whole, volumes, labels, index, train, seed=2)
    assert ((predict(whole, volumes, index) > 0.5) == labels).mean() > 0.8

    class Killed(Exception):
        pass

    def kill(epoch):
        if epoch == 1:
            raise Killed

    with pytest.raises(Killed):
        fit(fresh(), volumes, labels, index, train, seed=2, checkpoint=tmp_path / "c.pt", after_epoch=kill)
    resumed = fresh()
    fit(resumed, volumes, labels, index, train, seed=2, checkpoint=tmp_path / "c.pt")
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    with pytest.raises(ValueError, match="3D network with no pretrained weights"):
        build_model("densenet3d_small", Init("imagenet"))
