"""Training throughput of the engine against a bare PyTorch loop, allocator settings, and a projection of the
``paper`` run on one GPU.

1. Engine (memory-mapped images, schedule, checkpoints, channels-last) vs a bare loop over in-memory tensors,
   same model, image size and batch size, as images/s and ratio (issue #5 target: >= 0.9 on CPU). On a GPU the
   engine (bfloat16 autocast) is also compared with itself in float32: the AMP speed-up.
2. glibc allocator settings (``MALLOC_MMAP_THRESHOLD_``/``MALLOC_TRIM_THRESHOLD_``): the same loop in child
   processes with glibc's defaults, with large thresholds, and with the trim threshold alone (which fixes the
   mmap threshold at 128 KiB: every large tensor is mapped and unmapped). The runner sets none of them: on this
   machine large thresholds did not beat glibc's adaptive defaults.
3. Projection: the training rate of each paper backbone at 224 px, batch 64, measured on this machine, applied to
   the ``paper`` parameter set's plan (:func:`studylib.train.workload.planned_workload`). GPU machines: run
   ``benchmarks/gpu_check.py``, which projects 1, 4 and 8 GPUs and feeds the book.

Usage: ``python benchmarks/bench_train.py [--quick]`` (``--quick``: fewer images, for a first look).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from studylib.study.config import load_params
from studylib.train.engine import available_cpus, fit, resolve_device
from studylib.train.models import Init, MetricNet, build_model
from studylib.train.workload import planned_workload, projected_hours

PROJECT = Path(__file__).resolve().parents[1]

ALLOCATOR_SETTINGS = {
    "large thresholds": {"MALLOC_MMAP_THRESHOLD_": "33554432", "MALLOC_TRIM_THRESHOLD_": "268435456"},
    "trim threshold only": {"MALLOC_TRIM_THRESHOLD_": "268435456"},
}


def bare_loop(net: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int,
              device: str) -> float:
    """Images/s of a plain loop: in-memory tensors, no schedule, no mix-up, no checkpoint."""
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    net.train().to(device, memory_format=torch.channels_last)
    images, labels = images.to(device), labels.to(device)
    _sync(device)
    start = time.perf_counter()
    order = torch.randperm(len(images), device=device)
    for first in range(0, len(order), batch_size):
        index = order[first: first + batch_size]
        x = images[index].contiguous(memory_format=torch.channels_last)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device == "cuda"):
            logits = net(x)
        loss = torch.nn.functional.cross_entropy(logits.float(), labels[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    _sync(device)
    return len(images) / (time.perf_counter() - start)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _store(folder: Path, n: int, size: int) -> np.ndarray:
    path = folder / f"images_{size}.npy"
    if not path.is_file():
        stored = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, size, size))
        stored[:] = np.random.default_rng(0).normal(size=(n, size, size))
        stored.flush()
    return np.load(path, mmap_mode="r")


def engine_rate(backbone: str, init: str, images: np.ndarray, labels: np.ndarray, train, device: str,
                folder: Path, autocast: bool = True) -> tuple[float, torch.nn.Module]:
    torch.manual_seed(0)
    net = MetricNet(build_model(backbone, Init(init)), 0.0, 1.0)
    index = np.arange(len(labels))
    from studylib.train import engine

    original = engine._autocast
    if not autocast:
        engine._autocast = lambda device: torch.autocast("cuda", enabled=False)
    try:
        fit(net, images, labels, index[: 4 * train.batch_size], train, seed=0, device=device)  # warm-up
        _sync(device)
        start = time.perf_counter()
        fit(net, images, labels, index, train, seed=0, checkpoint=folder / "c.pt", device=device)
        _sync(device)
    finally:
        engine._autocast = original
    (folder / "c.pt").unlink(missing_ok=True)
    return len(labels) / (time.perf_counter() - start), net


def compare(quick: bool, device: str, folder: Path) -> None:
    train = load_params(PROJECT / "params" / "default.yaml").train.model_copy(
        update={"epochs": 1, "mixup_epochs": 0, "batch_size": 32})
    n = 96 if quick else 256
    cases = [("efficientnet_lite0", "imagenet-lite0", 64), ("efficientnet_lite0", "imagenet-lite0", 96),
             ("resnet18", "scratch", 96)]
    if device == "cuda":
        n = 2048
        train = train.model_copy(update={"batch_size": 64})
        cases = [("resnet50", "scratch", 224), ("densenet121", "scratch", 224), ("efficientnet_lite0", "scratch", 224)]
    labels = np.random.default_rng(1).integers(0, 2, n)
    for backbone, init, size in cases:
        images = _store(folder, n, size)
        engine, net = engine_rate(backbone, init, images, labels, train, device, folder)
        tensor = torch.from_numpy(np.array(images)).unsqueeze(1)  # in memory, writable
        bare = bare_loop(net, tensor, torch.as_tensor(labels), train.batch_size, device)
        line = (f"{backbone} {size}x{size}, batch {train.batch_size}, {device}"
                f"{'' if device == 'cuda' else f' ({torch.get_num_threads()} threads)'}: engine {engine:.0f} "
                f"images/s, bare loop {bare:.0f} images/s, ratio {engine / bare:.2f} (target >= 0.9)")
        if device == "cuda":
            fp32, _ = engine_rate(backbone, init, images, labels, train, device, folder, autocast=False)
            line += f"; float32 engine {fp32:.0f} images/s, AMP speed-up {engine / fp32:.2f}x"
        print(line, flush=True)


_CHILD = """
import time, numpy as np, torch
from studylib.train.models import Init, MetricNet, build_model
from studylib.train.workload import planned_workload, projected_hours
torch.manual_seed(0)
net = MetricNet(build_model("{backbone}", Init("scratch")), 0.0, 1.0).to(memory_format=torch.channels_last)
opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
x, y = torch.randn(32, 1, {size}, {size}), torch.randint(0, 2, (32,))
for step in range({steps}):
    if step == 2:
        start = time.perf_counter()
    loss = torch.nn.functional.cross_entropy(net(x.contiguous(memory_format=torch.channels_last)), y)
    opt.zero_grad(); loss.backward(); opt.step()
print(({steps} - 2) * 32 / (time.perf_counter() - start))
"""


def allocator(quick: bool) -> None:
    plain = {key: value for key, value in os.environ.items() if not key.startswith("MALLOC_")}
    for backbone, size in (("efficientnet_lite0", 64), ("resnet18", 96), ("resnet50", 224)):
        steps = 6 if size == 224 or quick else 12
        code = _CHILD.format(backbone=backbone, size=size, steps=steps)
        rates = {}
        for label, env in (("glibc defaults", {}), *ALLOCATOR_SETTINGS.items()):
            result = subprocess.run([sys.executable, "-c", code], env={**plain, **env}, capture_output=True,
                                    text=True, check=True)
            rates[label] = float(result.stdout.strip().splitlines()[-1])
        base = rates["glibc defaults"]
        print(f"allocator, {backbone} {size}x{size} batch 32: glibc defaults {base:.0f} images/s; "
              + "; ".join(f"{label} {rate:.0f} ({rate / base:.2f}x)" for label, rate in rates.items()
                          if label != "glibc defaults"), flush=True)


def projection(device: str, folder: Path) -> None:
    """The paper's training (counted from the study's plan) at this machine's measured rate, on one device."""
    params = load_params(PROJECT / "params" / "paper.yaml")
    workload = planned_workload(params)
    train = params.train.model_copy(update={"epochs": 1, "mixup_epochs": 1})
    n = 512 if device == "cuda" else 64
    labels = np.random.default_rng(2).integers(0, 2, n)
    images = _store(folder, n, 224)
    rates = {backbone: engine_rate(backbone, "scratch", images, labels, train, device, folder)[0]
             for backbone in params.train.backbones}
    for backbone, rate in rates.items():
        part = workload[workload["backbone"] == backbone]
        print(f"paper run, {backbone}: {len(part)} models, {part['training_images'].sum():,} training images "
              f"(all arms, folds, stage-1 and site-out) at {rate:.0f} images/s measured here ({device}, 224x224, "
              f"batch {train.batch_size}, mix-up on) -> {projected_hours(part, rates, 1):.1f} h", flush=True)
    print(f"paper run, training of both backbones on one {device}: {projected_hours(workload, rates, 1):.1f} h "
          "(benchmarks/gpu_check.py projects 1, 4 and 8 GPUs)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    device = resolve_device("auto")
    threads = available_cpus()
    torch.set_num_threads(threads)
    print(f"device {device}, torch {torch.__version__}, {threads} CPU threads", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        compare(args.quick, device, Path(tmp))
        if device == "cpu":
            allocator(args.quick)
        projection(device, Path(tmp))


if __name__ == "__main__":
    main()
