"""Occlusion: how much a trained model's prediction of each subject drops when a square of its image is covered.

The paper (Figure 4) slides a 30 x 30 black square with stride 4 over each 224 x 224 image and takes the drop in
accuracy as the importance of the covered region. Here, for every position of the square and every test subject,
one forward pass gives the model's probability of the subject's true class; two importances follow from the same
passes:

- ``probability``: the drop in the true class's probability (per subject; captum's ``Occlusion`` computes exactly
  this for a model whose output is that probability, and a test checks it does);
- ``accuracy``: the drop in correctness (1 if the thresholded prediction was right, 0 if not), whose mean over
  subjects is the paper's drop in accuracy.

A pixel's importance is the mean over the square's positions that cover it (captum's convention). Positions start
at 0 and step by ``stride``; when ``stride`` does not divide ``size - patch``, one more position at ``size - patch``
covers the last rows and columns (captum leaves them out, with importance 0 there).

The occluder: the paper's "black square" is the lowest value of its image's colour scale, i.e. the minimum of the
metric (``"minimum"``: the minimum over the training subjects' images of the set); ``"mean"`` fills with the training
images' mean (after the model's normalisation, 0; with a per-pixel normalisation, the mean image), which removes the
region's information without putting an extreme value into it. (With a per-pixel normalisation, ``train.normalise:
pixels``, the minimum becomes extreme wherever subjects vary little: prefer ``"mean"`` there.) The area-preserving
flat map covers the whole square, so every pixel is on the cortex (pixels whose centre falls between triangles carry
the nearest triangle's value) and every position counts.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

__all__ = ["OCCLUDERS", "occlusion", "occlusion_positions", "window_matrix"]

OCCLUDERS = ("minimum", "mean")


def _starts(size: int, patch: int, stride: int) -> list[int]:
    if not 0 < patch <= size:
        raise ValueError(f"the occluding square ({patch} px) must fit the {size} px image")
    if stride < 1:
        raise ValueError(f"stride must be positive, got {stride}")
    starts = list(range(0, size - patch + 1, stride))
    if starts[-1] != size - patch:
        starts.append(size - patch)
    return starts


def occlusion_positions(shape: tuple[int, int], patch: int, stride: int) -> np.ndarray:
    """Top-left corners (row, column) of every position of the square, row by row: shape (positions, 2)."""
    rows, columns = _starts(shape[0], patch, stride), _starts(shape[1], patch, stride)
    return np.array([(r, c) for r in rows for c in columns], dtype=np.int64)


def window_matrix(shape: tuple[int, int], patch: int, positions: np.ndarray) -> sp.csr_matrix:
    """Sparse (positions, H * W) matrix whose rows are the pixels each position covers, each row divided by the
    number of positions covering its pixels: ``drops @ matrix`` gives each pixel the mean drop of its windows."""
    height, width = shape
    offsets = (np.arange(patch)[:, None] * width + np.arange(patch)[None, :]).ravel()
    columns = (positions[:, 0] * width + positions[:, 1])[:, None] + offsets[None, :]
    rows = np.repeat(np.arange(len(positions)), patch * patch)
    covering = sp.csr_matrix((np.ones(rows.size), (rows, columns.ravel())), shape=(len(positions), height * width))
    coverage = np.asarray(covering.sum(axis=0)).ravel()
    if (coverage == 0).any():
        raise ValueError("some pixels are covered by no position of the square")
    return (covering @ sp.diags(1.0 / coverage)).tocsr()


@torch.no_grad()
def occlusion(net: torch.nn.Module, images: np.ndarray, labels: np.ndarray, *, patch: int, stride: int,
              fill: float | np.ndarray, batch_size: int = 256, device: str = "cpu") -> dict[str, np.ndarray]:
    """Occlusion importances of ``net`` for each of ``images`` (its test subjects).

    Parameters
    ----------
    net : torch.nn.Module
        A two-class model taking raw images ``(n, H, W)`` (a :class:`~studylib.train.models.MetricNet`).
    images : ndarray, shape (n, H, W)
    labels : ndarray of {0, 1}, shape (n,)
    patch, stride : int
        Side of the square and step between its positions, in pixels.
    fill : float or ndarray of shape (H, W)
        The value (in the images' raw units) written into the square: one number, or one per pixel (e.g. the
        training images' mean image).
    batch_size : int
        Occluded copies per forward pass.
    device : str

    Returns
    -------
    dict
        ``probability``, ``accuracy``: per-subject pixel maps (n, H, W), float32; ``positions``: the squares'
        corners; ``probability_by_position``, ``accuracy_by_position``: the drops per (subject, position);
        ``baseline``: the true class's probability without occlusion.
    """
    images = np.asarray(images, dtype=np.float32)
    labels = np.asarray(labels).astype(np.int64)
    if images.ndim != 3 or len(images) != len(labels):
        raise ValueError(f"images must be (subjects, H, W) with one label each; got {images.shape} and "
                         f"{labels.shape}")
    shape = images.shape[1:]
    positions = occlusion_positions(shape, patch, stride)
    fill_values = torch.from_numpy(np.broadcast_to(np.asarray(fill, dtype=np.float32), shape).copy())
    net = net.to(device).eval()

    def true_class_probability(batch: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return torch.softmax(net(batch.to(device)).float(), dim=1).gather(1, targets.to(device)[:, None])[:, 0].cpu()

    tensor, targets = torch.from_numpy(images), torch.from_numpy(labels)
    baseline = torch.cat([true_class_probability(tensor[i: i + batch_size], targets[i: i + batch_size])
                          for i in range(0, len(tensor), batch_size)]).numpy()
    # every (subject, position) pair, in batches of occluded copies
    subject_of = np.repeat(np.arange(len(images)), len(positions))
    position_of = np.tile(np.arange(len(positions)), len(images))
    rows, columns = torch.arange(shape[0]), torch.arange(shape[1])
    corners = torch.from_numpy(positions)
    occluded = np.empty(len(subject_of), dtype=np.float32)
    for first in range(0, len(subject_of), batch_size):
        who = torch.from_numpy(subject_of[first: first + batch_size])
        where = corners[torch.from_numpy(position_of[first: first + batch_size])]
        inside_rows = (rows[None, :] >= where[:, :1]) & (rows[None, :] < where[:, :1] + patch)
        inside_columns = (columns[None, :] >= where[:, 1:]) & (columns[None, :] < where[:, 1:] + patch)
        square = inside_rows[:, :, None] & inside_columns[:, None, :]
        copies = torch.where(square, fill_values, tensor[who])
        occluded[first: first + len(who)] = true_class_probability(copies, targets[who]).numpy()
    occluded = occluded.reshape(len(images), len(positions))
    probability_drop = baseline[:, None] - occluded
    accuracy_drop = (baseline[:, None] >= 0.5).astype(np.float32) - (occluded >= 0.5).astype(np.float32)
    windows = window_matrix(shape, patch, positions)
    return {
        "probability": np.asarray(probability_drop @ windows, dtype=np.float32).reshape(-1, *shape),
        "accuracy": np.asarray(accuracy_drop @ windows, dtype=np.float32).reshape(-1, *shape),
        "positions": positions,
        "probability_by_position": probability_drop,
        "accuracy_by_position": accuracy_drop,
        "baseline": baseline,
    }
