"""Fit one model with the paper's recipe, checkpointing every few epochs so that an interrupted fit resumes.

:func:`fit` trains a :class:`~studylib.train.models.MetricNet` on the training subjects' images with SGD
(momentum from the parameters), cross-entropy on soft targets (mix-up mixes the one-hot labels), the
learning rate of :func:`~studylib.train.recipe.learning_rate` and mix-up during the first ``mixup_epochs``.
Every ``checkpoint_every`` epochs the model, optimiser and random states are written to ``checkpoint``
(atomically); a later call with the same checkpoint continues after the last finished epoch and ends with the same
weights as an uninterrupted fit (on the CPU). :func:`predict` returns the probability of label 1.

Speed: the training images are held on the device as one tensor when they fit (:class:`ImageSource`; a
224 px image set of the paper's largest cohort is ~0.4 GB), else ``num_workers`` threads read the next
batches from the memory-mapped store while the model trains; tensors use the channels-last layout (faster
convolutions on CPU and GPU); on a GPU the forward and backward passes run under bfloat16 autocast (AMP). :func:`resolve_device` turns the parameters'
``device`` into a torch device. Intra-op threads are set per job by its executor (``train.threads``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..params import TrainParams
from ..storage import atomic_path
from .recipe import learning_rate, mix, step_learning_rate, uses_mixup

__all__ = ["ImageSource", "available_cpus", "fit", "memory_format", "predict", "prediction_batch_size",
           "resident_budget", "resolve_device", "worker_count"]


def resolve_device(device: str = "auto") -> str:
    """``"cuda"`` or ``"cpu"`` for the parameters' ``device`` (``auto`` picks CUDA when one is usable).

    Raises
    ------
    RuntimeError
        When ``cuda`` is asked for and torch sees no GPU.
    """
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, not {device!r}")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device: cuda was asked for, but torch finds no CUDA GPU on this machine; use device: "
                           "auto or cpu")
    return device


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask, which containers and batch systems narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def worker_count(num_workers: int | None, device: str) -> int:
    """Threads that read batches ahead: the parameter, or 0 on CPU (reading is cheap beside the model's
    work and would compete for the cores) and up to 4 beside a GPU."""
    if num_workers is not None:
        return num_workers
    return 0 if device == "cpu" else min(4, max(available_cpus() - 1, 1))


def resident_budget(device: torch.device) -> int:
    """Bytes of images that may be held on ``device`` as one tensor: a quarter of the GPU's free memory, or of
    the memory the system reports available (1 GiB when it reports nothing)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free // 4
    try:
        with open("/proc/meminfo") as info:
            fields = dict(line.split(":", 1) for line in info)
        return int(fields["MemAvailable"].split()[0]) * 1024 // 4
    except (OSError, KeyError, ValueError):  # pragma: no cover - not Linux
        return 1 << 30


def _read(images: np.ndarray, index: np.ndarray) -> torch.Tensor:
    # memory-mapped stores are read in sorted order (faster), then put back in the batch's order
    order = np.argsort(index)
    data = np.empty((len(index), *images.shape[1:]), dtype=np.float32)
    data[order] = np.asarray(images[index[order]], dtype=np.float32)
    return torch.from_numpy(data).unsqueeze(1)


def memory_format(images: np.ndarray) -> torch.memory_format:
    """The channels-last layout for a store's batches: ``channels_last`` for images (subjects x H x W),
    ``channels_last_3d`` for volumes (subjects x D x H x W)."""
    if images.ndim not in (3, 4):
        raise ValueError(f"images must be subjects x H x W or subjects x D x H x W, not shape {images.shape}")
    return torch.channels_last if images.ndim == 3 else torch.channels_last_3d


def _to(batch: torch.Tensor, device: torch.device) -> torch.Tensor:
    if device.type == "cuda":
        batch = batch.pin_memory().to(device, non_blocking=True)
    return batch


class ImageSource:
    """Batches of ``images[index]`` for the rows in ``rows``, as ``(batch, 1, H, W)`` float32 tensors on ``device``.

    When the rows fit in :func:`resident_budget` they are read once into a tensor on the device (a GPU then
    never waits for the disk or the host, and a CPU stops copying from the memory map every epoch);
    otherwise each batch is read from the (memory-mapped) store, ``workers`` batches ahead by threads.
    Either way a batch holds the same numbers, so results do not depend on which path was taken.
    """

    def __init__(self, images: np.ndarray, rows: np.ndarray, device: torch.device, workers: int = 0,
                 budget: int | None = None) -> None:
        self.images, self.device, self.workers = images, device, workers
        self.rows = np.sort(np.asarray(rows))
        nbytes = len(self.rows) * int(np.prod(images.shape[1:])) * 4
        self.resident: torch.Tensor | None = None
        if nbytes <= (resident_budget(device) if budget is None else budget):
            self.resident = _to(_read(images, self.rows), device)

    def _rows(self, index: np.ndarray) -> torch.Tensor:
        position = np.searchsorted(self.rows, index)
        if np.any(position >= len(self.rows)) or np.any(self.rows[np.minimum(position, len(self.rows) - 1)] != index):
            raise IndexError("a batch asks for images outside the rows this source holds")
        return torch.as_tensor(position, device=self.device)

    def batch(self, index: np.ndarray) -> torch.Tensor:
        if self.resident is not None:
            return self.resident[self._rows(index)]
        return _to(_read(self.images, index), self.device)

    def batches(self, indices: list[np.ndarray]) -> Iterator[torch.Tensor]:
        """The batches of ``indices`` in order."""
        if self.resident is not None or self.workers == 0:
            for index in indices:
                yield self.batch(index)
            return
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            ahead = self.workers + 1
            pending = [pool.submit(_read, self.images, index) for index in indices[:ahead]]
            for position in range(len(indices)):
                batch = pending[position].result()
                if position + ahead < len(indices):
                    pending.append(pool.submit(_read, self.images, indices[position + ahead]))
                pending[position] = None
                yield _to(batch, self.device)


def prediction_batch_size(device: str | torch.device) -> int:
    """Images per forward pass when predicting: 256 on a GPU, 64 on a CPU (evaluation mode: the batch size does
    not change the probabilities beyond rounding)."""
    return 256 if torch.device(device).type == "cuda" else 64


def _autocast(device: torch.device):
    """bfloat16 autocast on GPUs that compute in it natively (compute capability 8+, e.g. A100, H100): no loss
    scaling needed. Older GPUs and CPUs train in float32 (CPU runs stay bit-reproducible)."""
    enabled = device.type == "cuda" and torch.cuda.get_device_capability(device)[0] >= 8
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=enabled)


def fit(net: nn.Module, images: np.ndarray, labels: np.ndarray, train_index: np.ndarray, train: TrainParams, *,
        seed: int, checkpoint: str | Path | None = None, device: str = "cpu",
        after_epoch: Callable[[int], None] | None = None, resident_bytes: int | None = None) -> list[dict]:
    """Train ``net`` on ``images[train_index]`` and return the per-epoch history (loss, the mean rate of the
    epoch's steps, mix-up flag, seconds).

    Parameters
    ----------
    net : nn.Module
        Maps ``(batch, 1, H, W)`` images to two logits.
    images : ndarray, shape (subjects, H, W) or (subjects, D, H, W)
        The cohort's images (or volumes) for one (hemisphere, metric), e.g. memory-mapped from the image store.
    labels : ndarray of {0, 1}, shape (subjects,)
    train_index : ndarray
        Training subjects (rows of ``images``); nothing else is read.
    train : TrainParams
        ``epochs``, ``mixup_epochs``, ``batch_size``, ``lr``, ``lr_step_epochs``, ``finetune_lr``, ``warmup_epochs``,
        ``momentum``.
    seed : int
    checkpoint : path, optional
        Written after every ``train.checkpoint_every`` epochs and after the last; if it exists, training resumes
        from it.
    device : str
    after_epoch : callable, optional
        Called with the finished epoch's number (progress bars; tests use it to interrupt a fit).
    resident_bytes : int, optional
        Hold the training images on the device when they take at most this many bytes (default:
        :func:`resident_budget`; 0 streams every batch from the store).
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    device = torch.device(device)
    layout = memory_format(images)
    net.to(device, memory_format=layout)
    workers = worker_count(train.num_workers, device.type)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed image size: let cuDNN pick its fastest kernels once
    optimizer = torch.optim.SGD(net.parameters(), lr=train.lr, momentum=train.momentum)
    history: list[dict] = []
    start = 0
    checkpoint = Path(checkpoint) if checkpoint is not None else None
    if checkpoint is not None and checkpoint.is_file():
        state = torch.load(checkpoint, map_location=device, weights_only=False)
        net.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        rng.bit_generator.state = state["numpy_rng"]
        torch.set_rng_state(state["torch_rng"].cpu())  # map_location moved it; the CPU generator needs it here
        if device.type == "cuda" and state.get("cuda_rng") is not None:  # dropout on the GPU draws from these
            torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda_rng"]])
        history, start = state["history"], state["epoch"] + 1
    labels = np.asarray(labels)
    train_index = np.asarray(train_index)
    source = ImageSource(images, train_index, device, workers, budget=resident_bytes)
    one_hot = torch.eye(2, device=device)
    for epoch in range(start, train.epochs):
        tick = time.perf_counter()
        net.train()
        order = rng.permutation(train_index)
        # batch norm needs two samples: a leftover single subject joins the next epoch's shuffle
        indices = [index for first in range(0, len(order), train.batch_size)
                   if len(index := order[first: first + train.batch_size]) >= 2]
        total, seen, rates = 0.0, 0, []
        for step, (index, x) in enumerate(zip(indices, source.batches(indices))):
            rates.append(step_learning_rate(epoch, (step + 1) / len(indices), train))
            for group in optimizer.param_groups:
                group["lr"] = rates[-1]
            y = one_hot[torch.as_tensor(labels[index], device=device)]
            if uses_mixup(epoch, train):
                x, y, _ = mix(x, y, rng)
            x = x.contiguous(memory_format=layout)
            with _autocast(device):
                logits = net(x)
            loss = torch.sum(-y * torch.log_softmax(logits.float(), dim=1), dim=1).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(index)
            seen += len(index)
        # the mean rate of the epoch's steps: below learning_rate(epoch) while the warm-up ramps it up
        history.append({"epoch": epoch, "lr": float(np.mean(rates)) if rates else learning_rate(epoch, train),
                        "mixup": uses_mixup(epoch, train),
                        "loss": total / max(seen, 1), "seconds": time.perf_counter() - tick})
        if checkpoint is not None and ((epoch + 1) % train.checkpoint_every == 0 or epoch + 1 == train.epochs):
            with atomic_path(checkpoint) as partial:
                torch.save({"epoch": epoch, "model": net.state_dict(), "optimizer": optimizer.state_dict(),
                            "numpy_rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
                            "cuda_rng": torch.cuda.get_rng_state_all() if device.type == "cuda" else None,
                            "history": history}, partial)
        if after_epoch is not None:
            after_epoch(epoch)
    return history


@torch.no_grad()
def predict(net: nn.Module, images: np.ndarray, index: np.ndarray, *, batch_size: int | None = None,
            device: str = "cpu") -> np.ndarray:
    """Probability of label 1 for ``images[index]`` (evaluation mode, float32 so that probabilities keep their
    precision for AUC and stacking); ``batch_size`` defaults to :func:`prediction_batch_size`."""
    net.eval()
    device = torch.device(device)
    batch_size = batch_size or prediction_batch_size(device)
    layout = memory_format(images)
    net.to(device, memory_format=layout)
    index = np.asarray(index)
    out = []
    for first in range(0, len(index), batch_size):
        x = _to(_read(images, index[first: first + batch_size]), device).contiguous(memory_format=layout)
        out.append(torch.softmax(net(x).float(), dim=1)[:, 1])
    return torch.cat(out).cpu().numpy().astype(np.float64) if out else np.empty(0)
