"""Occlusion throughput on this machine: ours against captum's ``Occlusion``, batch sizes, and the paper's workload.

1. Occluded images per second of :func:`studylib.explain.occlusion.occlusion` (one forward pass per occluded copy,
   every (subject, position) pair batched) against captum's ``Occlusion`` on the same model, images and settings
   (its ``perturbations_per_eval`` set to the same batch), interleaved over repeats; the ratio is ours / captum's.
   Ours also gives the drop in accuracy from the same passes; captum would need a second run for it.
2. Batch sizes 64, 256 and 1024 (ours), the same way.
3. Projection: the paper's workload (a 30 px square with stride 4 on 224 px: 2,401 positions per image; sex 1,113
   subjects x 8 images, autism 1,994 x 6, one arm and one backbone) at the rate measured at 224 px here.

EfficientNet-Lite0 (the default's backbone, random weights: the cost does not depend on them), threads as the
machine gives them. Usage: ``python benchmarks/bench_occlusion.py [--quick]``. Say the machine's load when quoting
its figures.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from studylib.explain.occlusion import occlusion
from studylib.study.occlusion_run import PAPER_COPIES
from studylib.train.models import Init, MetricNet, build_model


def _model(backbone: str = "efficientnet_lite0") -> MetricNet:
    torch.manual_seed(0)
    return MetricNet(build_model(backbone, Init("scratch")), mean=0.0, sd=1.0).eval()


def _ours(net, images, labels, patch, stride, batch) -> float:
    started = time.perf_counter()
    result = occlusion(net, images, labels, patch=patch, stride=stride, fill=-2.0, batch_size=batch)
    return len(images) * len(result["positions"]) / (time.perf_counter() - started)


def _captum(net, images, labels, patch, stride, batch) -> float:
    from captum.attr import Occlusion

    def probability(x):
        return torch.softmax(net(x), dim=1)

    inputs = torch.from_numpy(images)
    positions = ((images.shape[1] - patch) // stride + 1) * ((images.shape[2] - patch) // stride + 1)
    started = time.perf_counter()
    with torch.no_grad():
        Occlusion(probability).attribute(inputs, sliding_window_shapes=(patch, patch), strides=(stride, stride),
                                         baselines=-2.0, target=torch.from_numpy(labels),
                                         perturbations_per_eval=max(1, batch // len(images)))
    return len(images) * positions / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer subjects and repeats")
    args = parser.parse_args()
    repeats = 1 if args.quick else 3
    subjects = 8 if args.quick else 16
    rng = np.random.default_rng(0)
    print(f"machine: {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, load average "
          f"{os.getloadavg()[0]:.2f} (ratios are measured side by side; absolute rates depend on the load)")
    net = _model()
    images = rng.normal(size=(subjects, 64, 64)).astype(np.float32)
    labels = np.arange(subjects) % 2
    _ours(net, images[:2], labels[:2], 9, 8, 64)  # warm-up

    print("\n1. ours vs captum, EfficientNet-Lite0, 64 px, patch 8, stride 8 (captum needs an exact tiling)")
    ours, theirs = [], []
    for _ in range(repeats):
        ours.append(_ours(net, images, labels, 8, 8, 64))
        theirs.append(_captum(net, images, labels, 8, 8, 64))
    print(f"   ours {np.median(ours):.0f} occluded images/s, captum {np.median(theirs):.0f}/s, "
          f"ratio {np.median(ours) / np.median(theirs):.2f} (target >= 1: ours gives both importances in one pass)")

    print("\n2. batch size (ours, 64 px, patch 9, stride 8: the default)")
    rates = {batch: [] for batch in (64, 256, 1024)}
    for _ in range(repeats):
        for batch in rates:
            rates[batch].append(_ours(net, images, labels, 9, 8, batch))
    base = np.median(rates[64])
    for batch, values in rates.items():
        print(f"   batch {batch:5d}: {np.median(values):7.0f} occluded images/s ({np.median(values) / base:.2f}x batch 64, "
              f"the default's)")

    print("\n3. the paper's workload at 224 px (EfficientNet-Lite0 here; ResNet-50 costs about 10x its FLOPs)")
    big = rng.normal(size=(2, 224, 224)).astype(np.float32)
    rate = np.median([_ours(net, big, labels[:2], 30, 16, 64) for _ in range(repeats)])
    for task, copies in PAPER_COPIES.items():
        print(f"   {task}: {copies:,} occluded copies at {rate:.0f}/s: {copies / rate / 3600:.1f} hours on this machine")


if __name__ == "__main__":
    main()
