"""Training throughput of the engine (memory-mapped images, schedule, checkpoints) against a bare PyTorch loop
over in-memory tensors, same model, image size and batch size. Target (issue #5): ratio >= 0.9 on CPU."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from studylib.config import load_params
from studylib.train.engine import fit
from studylib.train.models import MetricNet, build_model

PROJECT = Path(__file__).resolve().parents[1]


def bare_loop(net: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int) -> float:
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    net.train()
    start = time.perf_counter()
    order = torch.randperm(len(images))
    for first in range(0, len(order), batch_size):
        index = order[first: first + batch_size]
        loss = torch.nn.functional.cross_entropy(net(images[index]), labels[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return len(images) / (time.perf_counter() - start)


def main() -> None:
    train = load_params(PROJECT / "params" / "default.yaml").train.model_copy(
        update={"epochs": 1, "mixup_epochs": 0, "batch_size": 32})
    rng = np.random.default_rng(0)
    n, size = 256, 96
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "images.npy"
        stored = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, size, size))
        stored[:] = rng.normal(size=(n, size, size))
        stored.flush()
        images = np.load(path, mmap_mode="r")
        labels = rng.integers(0, 2, n)
        for backbone, init in (("efficientnet_lite0", "imagenet-lite0"), ("resnet18", "scratch")):
            torch.manual_seed(0)
            net = MetricNet(build_model(backbone, init), 0.0, 1.0)
            fit(net, images, labels, np.arange(n), train, seed=0)  # warm-up
            start = time.perf_counter()
            fit(net, images, labels, np.arange(n), train, seed=0, checkpoint=Path(tmp) / "c.pt")
            engine = n / (time.perf_counter() - start)
            (Path(tmp) / "c.pt").unlink()
            tensor = torch.from_numpy(np.array(images)).unsqueeze(1)  # in memory, writable
            bare = bare_loop(net, tensor, torch.as_tensor(labels), train.batch_size)
            print(f"{backbone} {size}x{size}, batch {train.batch_size}, {torch.get_num_threads()} threads: engine "
                  f"{engine:.0f} images/s, bare loop {bare:.0f} images/s, ratio {engine / bare:.2f} (target >= 0.9)")


if __name__ == "__main__":
    main()
