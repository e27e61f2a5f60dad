"""Fit one model with the paper's recipe, checkpointing every epoch so that an interrupted fit resumes.

:func:`fit` trains a :class:`~studylib.train.models.MetricNet` on the training subjects' images with SGD
(momentum from the parameters), cross-entropy on soft targets (mix-up mixes the one-hot labels), the
learning rate of :func:`~studylib.train.recipe.learning_rate` and mix-up during the first ``mixup_epochs``.
After each epoch the model, optimiser and random states are written to ``checkpoint`` (atomically); a
later call with the same checkpoint continues after the last finished epoch and ends with the same
weights as an uninterrupted fit (on the CPU). :func:`predict` returns the probability of label 1.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .recipe import learning_rate, mix, uses_mixup

__all__ = ["fit", "predict"]


def _batch(images: np.ndarray, index: np.ndarray, device: torch.device) -> torch.Tensor:
    # memory-mapped stores are read in sorted order (faster), then put back in the batch's order
    order = np.argsort(index)
    data = np.empty((len(index), *images.shape[1:]), dtype=np.float32)
    data[order] = np.asarray(images[index[order]], dtype=np.float32)
    return torch.from_numpy(data).unsqueeze(1).to(device)


def _save(path: Path, state: dict) -> None:
    partial = path.with_suffix(".partial")
    torch.save(state, partial)
    os.replace(partial, path)


def fit(net: nn.Module, images: np.ndarray, labels: np.ndarray, train_index: np.ndarray, train: object, *,
        seed: int, checkpoint: str | Path | None = None, device: str = "cpu",
        after_epoch: Callable[[int], None] | None = None) -> list[dict]:
    """Train ``net`` on ``images[train_index]`` and return the per-epoch history.

    Parameters
    ----------
    net : nn.Module
        Maps ``(batch, 1, H, W)`` images to two logits.
    images : ndarray, shape (subjects, H, W)
        The cohort's images for one (hemisphere, metric), e.g. memory-mapped from the image store.
    labels : ndarray of {0, 1}, shape (subjects,)
    train_index : ndarray
        Training subjects (rows of ``images``); nothing else is read.
    train : TrainParams
        ``epochs``, ``mixup_epochs``, ``batch_size``, ``lr``, ``lr_step_epochs``, ``finetune_lr``, ``momentum``.
    seed : int
    checkpoint : path, optional
        Written after every epoch; if it exists, training resumes from it.
    device : str
    after_epoch : callable, optional
        Called with the finished epoch's number (tests use it to interrupt a fit).
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    device = torch.device(device)
    net.to(device)
    optimizer = torch.optim.SGD(net.parameters(), lr=train.lr, momentum=train.momentum)
    history: list[dict] = []
    start = 0
    checkpoint = Path(checkpoint) if checkpoint is not None else None
    if checkpoint is not None and checkpoint.is_file():
        state = torch.load(checkpoint, map_location=device, weights_only=False)
        net.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        rng.bit_generator.state = state["numpy_rng"]
        torch.set_rng_state(state["torch_rng"])
        history, start = state["history"], state["epoch"] + 1
    labels = np.asarray(labels)
    train_index = np.asarray(train_index)
    one_hot = torch.eye(2, device=device)
    for epoch in range(start, train.epochs):
        tick = time.perf_counter()
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(epoch, train)
        net.train()
        order = rng.permutation(train_index)
        total, seen = 0.0, 0
        for first in range(0, len(order), train.batch_size):
            index = order[first: first + train.batch_size]
            if len(index) < 2:  # batch norm needs two samples; the leftover one joins the next epoch's shuffle
                continue
            x = _batch(images, index, device)
            y = one_hot[torch.as_tensor(labels[index], device=device)]
            if uses_mixup(epoch, train):
                x, y, _ = mix(x, y, rng)
            loss = torch.sum(-y * torch.log_softmax(net(x), dim=1), dim=1).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(index)
            seen += len(index)
        history.append({"epoch": epoch, "lr": learning_rate(epoch, train), "mixup": uses_mixup(epoch, train),
                        "loss": total / max(seen, 1), "seconds": time.perf_counter() - tick})
        if checkpoint is not None:
            _save(checkpoint, {"epoch": epoch, "model": net.state_dict(), "optimizer": optimizer.state_dict(),
                               "numpy_rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
                               "history": history})
        if after_epoch is not None:
            after_epoch(epoch)
    return history


@torch.no_grad()
def predict(net: nn.Module, images: np.ndarray, index: np.ndarray, *, batch_size: int = 64,
            device: str = "cpu") -> np.ndarray:
    """Probability of label 1 for ``images[index]`` (evaluation mode)."""
    net.eval()
    net.to(device)
    index = np.asarray(index)
    out = [torch.softmax(net(_batch(images, index[first: first + batch_size], torch.device(device))), dim=1)[:, 1]
           for first in range(0, len(index), batch_size)]
    return torch.cat(out).cpu().numpy() if out else np.empty(0)
