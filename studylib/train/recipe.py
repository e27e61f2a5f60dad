"""The paper's training recipe, as functions of the epoch.

"Each model is trained for 125 epochs with a batch size of 64, of which the first 75 epochs are trained with
mix-up, and the latter 50 epochs are trained with original data ... The learning rate is set to 0.01
initially, divided by 10 every 25 epochs for the first 75 epochs, and is then fixed at 0.0001 for the
following 50 epochs. The momentum is set to 0.9." Mix-up mixes two samples and their labels with
``lambda ~ U(0, 1)``. Epochs count from 0.
"""

from __future__ import annotations

import numpy as np

from ..params import TrainParams

__all__ = ["learning_rate", "mix", "uses_mixup"]


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


def mix(images: np.ndarray, targets: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, float]:
    """Mix-up of a batch with a shuffled copy of itself: ``lam * a + (1 - lam) * b``, ``lam ~ U(0, 1)``.

    ``targets`` are one-hot (or probability) rows; returns mixed images, mixed targets and ``lam``. Works on
    NumPy arrays and on torch tensors (indexing and arithmetic only).
    """
    lam = float(rng.uniform(0.0, 1.0))
    order = rng.permutation(len(images))
    return lam * images + (1 - lam) * images[order], lam * targets + (1 - lam) * targets[order], lam
