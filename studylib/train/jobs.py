"""Cross-validated training jobs with out-of-fold predictions, idempotent and resumable.

One job = one model: (arm, backbone, init, cohort images of one hemisphere and metric, fold, seed). Its
folder holds ``checkpoint.pt`` while it trains (a re-run resumes it), then ``model.pt``, ``history.csv`` and
``predictions.csv`` (the test subjects' probabilities). A job whose ``predictions.csv`` exists is done and is
not run again. Images are normalised with the mean and SD of the training subjects only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .cv import split
from .engine import fit, predict
from .models import MetricNet, build_model

__all__ = ["CVJob", "run_cv"]


@dataclass(frozen=True)
class CVJob:
    """What one cross-validated experiment trains (one model per fold)."""

    arm: str
    backbone: str
    init: str
    hemisphere: str
    metric: str
    seed: int


def _write_csv(table: pd.DataFrame, path: Path) -> None:
    partial = path.with_suffix(".partial.csv")
    table.to_csv(partial, index=False)
    os.replace(partial, path)


def _moments(images: np.ndarray, index: np.ndarray, chunk: int = 256) -> tuple[float, float]:
    """Mean and SD over all pixels of ``images[index]``, read in chunks."""
    index = np.sort(index)
    total = total_sq = 0.0
    count = 0
    for start in range(0, len(index), chunk):
        block = np.asarray(images[index[start: start + chunk]], dtype=np.float64)
        total += float(block.sum())
        total_sq += float(np.square(block).sum())
        count += block.size
    mean = total / count
    return mean, float(np.sqrt(max(total_sq / count - mean**2, 0.0))) or 1.0


def run_cv(job: CVJob, images: np.ndarray, subjects: pd.DataFrame, folds: np.ndarray, train: object,
           out: str | Path, *, device: str = "cpu") -> pd.DataFrame:
    """Train one model per fold and return the out-of-fold predictions of every subject.

    Parameters
    ----------
    job : CVJob
    images : ndarray, shape (subjects, H, W)
    subjects : DataFrame
        The image store's subjects (``subject``, ``label``), in row order.
    folds : ndarray
        Fold number per subject (:mod:`studylib.train.cv`).
    train : TrainParams
    out : path
        The job's folder; one sub-folder per fold.

    Returns
    -------
    DataFrame
        ``subject``, ``label``, ``fold``, ``probability`` and the job's fields, one row per subject.
    """
    out = Path(out)
    labels = subjects["label"].to_numpy()
    parts = []
    for fold, train_index, test_index in split(folds):
        folder = out / f"fold{fold:02d}"
        done = folder / "predictions.csv"
        if not done.is_file():
            folder.mkdir(parents=True, exist_ok=True)
            mean, sd = _moments(images, train_index)  # training subjects only
            torch.manual_seed(job.seed + fold)
            net = MetricNet(build_model(job.backbone, job.init), mean=mean, sd=sd)
            history = fit(net, images, labels, train_index, train, seed=job.seed + fold,
                          checkpoint=folder / "checkpoint.pt", device=device)
            torch.save(net.state_dict(), folder / "model.pt")
            _write_csv(pd.DataFrame(history), folder / "history.csv")
            probability = predict(net, images, test_index, device=device)
            _write_csv(pd.DataFrame({"subject": subjects["subject"].to_numpy()[test_index],
                                     "label": labels[test_index], "fold": fold, "probability": probability}), done)
            (folder / "checkpoint.pt").unlink(missing_ok=True)
        parts.append(pd.read_csv(done, dtype={"subject": str}))
    predictions = pd.concat(parts, ignore_index=True)
    for field, value in vars(job).items():
        predictions[field] = value
    return predictions
