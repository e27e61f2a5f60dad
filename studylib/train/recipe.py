"""The paper's training recipe, as functions of the epoch.

"Each model is trained for 125 epochs with a batch size of 64, of which the first 75 epochs are trained with
mix-up, and the latter 50 epochs are trained with original data ... The learning rate is set to 0.01
initially, divided by 10 every 25 epochs for the first 75 epochs, and is then fixed at 0.0001 for the
following 50 epochs. The momentum is set to 0.9." Mix-up mixes two samples and their labels with
``lambda ~ U(0, 1)``. Epochs count from 0.

The paper starts at its full rate; ``warmup_epochs`` (0 in the paper's recipe) optionally ramps the rate up
linearly over the first steps, a common guard for fine-tuning pretrained weights with few steps (Goyal et al.
2017, "Accurate, large minibatch SGD").
"""

from __future__ import annotations

import numpy as np

from ..params import TrainParams

__all__ = ["learning_rate", "mix", "step_learning_rate", "uses_mixup"]


def uses_mixup(epoch: int, train: TrainParams) -> bool:
    """Whether ``epoch`` trains on mixed samples (the first ``mixup_epochs``)."""
    return epoch < train.mixup_epochs


def learning_rate(epoch: int, train: TrainParams) -> float:
    """``lr / 10**(epoch // lr_step_epochs)`` during mix-up, then ``finetune_lr``."""
    if epoch < 0 or epoch >= train.epochs:
        raise ValueError(f"epoch {epoch} is outside 0..{train.epochs - 1}")
    if uses_mixup(epoch, train):
        return train.lr / 10 ** (epoch // train.lr_step_epochs)
    return train.finetune_lr


def step_learning_rate(epoch: int, done: float, train: TrainParams) -> float:
    """The rate of one SGD step: :func:`learning_rate` of ``epoch``, times the linear warm-up
    ``min(1, (epoch + done) / warmup_epochs)`` while it lasts.

    ``done`` is the fraction of the epoch's steps taken after this one (``(step + 1) / steps``), so the first step
    already has a rate above 0 and the warm-up ends exactly at the end of epoch ``warmup_epochs - 1``.
    """
    if not 0 < done <= 1:
        raise ValueError(f"done must lie in (0, 1], got {done}")
    rate = learning_rate(epoch, train)
    if epoch < train.warmup_epochs:
        rate *= (epoch + done) / train.warmup_epochs
    return rate


def mix(images: np.ndarray, targets: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, float]:
    """Mix-up of a batch with a shuffled copy of itself: ``lam * a + (1 - lam) * b``, ``lam ~ U(0, 1)``.

    ``targets`` are one-hot (or probability) rows; returns mixed images, mixed targets and ``lam``. Works on
    NumPy arrays and on torch tensors (indexing and arithmetic only).
    """
    lam = float(rng.uniform(0.0, 1.0))
    order = rng.permutation(len(images))
    return lam * images + (1 - lam) * images[order], lam * targets + (1 - lam) * targets[order], lam
