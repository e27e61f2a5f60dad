"""The network baselines' cost on this machine (09_baselines, issue 16), and the paper-scale projection.

1. Volumes: seconds per subject to voxelise the ribbon, fill the metric grids and cut the slices
   (:func:`studylib.baselines.volumes.build_volume_store`'s per-subject work) at the default's 4 mm and the paper
   set's 2 mm voxels, on the fs_LR 32k template.
2. Training rate: volumes (or slices) per second through the engine's ``fit`` (mix-up, soft targets, SGD), one
   intra-op thread per model as the default runs them (``--threads`` to change): ``densenet3d_small`` on the 4 mm
   grid in the engine's ``channels_last_3d`` layout and, side by side, in the contiguous layout; ``densenet3d_121``
   on the 4 mm and 2 mm grids; the slice networks (the default's EfficientNet-Lite0 at 64 px and the paper's
   DenseNet-121 at 224 px).
3. Projection: every network-baseline job of the ``paper`` parameter set (autism cohorts x folds x image sets:
   the ribbon, one grid per metric, 4 slices per ``slices_per_direction``) x its training subjects x epochs, at the
   rates measured here, as one device runs them; the same for ``default`` on this machine's cores (one 1-thread
   model per core), beside its 09 budget.

Usage: ``python benchmarks/bench_train3d.py [--quick] [--device cuda]``. Say the machine's load when quoting.
"""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from unittest.mock import patch

import numpy as np
import torch

from studylib.baselines.networks import planned_baselines
from studylib.baselines.volumes import RibbonVoxeliser, cut_slices, metric_grid, myelin_contrast, slice_positions
from studylib.data.templates import HEMISPHERES, load_template
from studylib.study.config import load_params
from studylib.train import engine
from studylib.train.engine import available_cpus, fit, resolve_device
from studylib.train.models import Init, MetricNet, build_model, input_channels

PROJECT = Path(__file__).resolve().parents[1]


def volume_seconds(voxel: float, subjects: int) -> tuple[float, tuple[int, ...]]:
    """Seconds per subject to build a ribbon volume, three metric grids and the slices at ``voxel`` mm."""
    template = load_template("fs_LR_32k")
    voxeliser = RibbonVoxeliser("fs_LR_32k", voxel)
    thickness = {h: template.metric_map(h, "thickness") for h in HEMISPHERES}
    positions = slice_positions(voxeliser.volume(thickness, partial_only=True), 1)
    midthickness = {h: template.surfaces[h].vertices for h in HEMISPHERES}
    rng = np.random.default_rng(0)
    tick = time.perf_counter()
    for _ in range(subjects):
        subject = {h: t + rng.normal(0, 0.1, len(t)) for h, t in thickness.items()}
        ribbon = voxeliser.volume(subject, myelin_contrast("fs_LR_32k", None))
        for _metric in range(3):
            metric_grid(subject, midthickness, voxeliser.grid)
        cut_slices(ribbon, positions, 64)
    return (time.perf_counter() - tick) / subjects, voxeliser.grid.shape


def training_rate(backbone: str, shape: tuple[int, ...], n: int, batch_size: int, device: str,
                  layout_contiguous: bool = False) -> float:
    """Images (volumes) per second of one epoch of ``fit`` on ``n`` random inputs of ``shape``."""
    rng = np.random.default_rng(0)
    data = rng.normal(size=(n, *shape)).astype(np.float32)
    labels = np.arange(n) % 2
    train = load_params(PROJECT / "params" / "default.yaml").train.model_copy(
        update={"epochs": 1, "mixup_epochs": 1, "batch_size": batch_size})
    init = Init("scratch")
    torch.manual_seed(0)
    net = MetricNet(build_model(backbone, init), mean=0.0, sd=1.0, channels=input_channels(backbone))
    # the engine picks channels-last itself (engine.memory_format); the comparison swaps that choice for this fit only
    layout = (patch.object(engine, "memory_format", lambda images: torch.contiguous_format) if layout_contiguous
              else nullcontext())
    with layout:
        warm = min(n, 2 * batch_size)
        fit(net, data[:warm], labels[:warm], np.arange(warm), train, seed=0, device=device)  # warm-up
        tick = time.perf_counter()
        fit(net, data, labels, np.arange(n), train, seed=0, device=device)
        return n / (time.perf_counter() - tick)

def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer subjects and inputs")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads per model (default 1, as default)")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    torch.set_num_threads(args.threads)
    n = 16 if args.quick else 48
    print(f"machine: {available_cpus()} CPUs, device {device}, {args.threads} thread(s) per model; "
          f"load average {', '.join(f'{x:.2f}' for x in __import__('os').getloadavg())}")

    print("\n1. Volumes (ribbon + 3 metric grids + 4 slices), per subject")
    grids = {}
    for voxel in (4.0, 2.0):
        seconds, shape = volume_seconds(voxel, 5 if args.quick else 20)
        grids[voxel] = shape
        print(f"   {voxel:.0f} mm: grid {' x '.join(map(str, shape))}: {seconds:.3f} s a subject "
              f"({4 * np.prod(shape) / 2**20:.2f} MB a float32 volume)")

    print("\n2. Training rate through fit (images or volumes per second)")
    rates = {}
    small = training_rate("densenet3d_small", grids[4.0], n, 16, device)
    contiguous = training_rate("densenet3d_small", grids[4.0], n, 16, device, layout_contiguous=True)
    rates["densenet3d_small"] = small
    print(f"   densenet3d_small, 4 mm, batch 16: {small:.1f}/s (channels_last_3d); contiguous {contiguous:.1f}/s: "
          f"ratio {small / contiguous:.2f}")
    big_batch = 4
    rates["densenet3d_121 4mm"] = training_rate("densenet3d_121", grids[4.0], max(n // 4, 2 * big_batch), big_batch,
                                                device)
    rates["densenet3d_121"] = training_rate("densenet3d_121", grids[2.0], 2 * big_batch if args.quick else 3 * big_batch,
                                            big_batch, device)
    print(f"   densenet3d_121, batch {big_batch}: 4 mm {rates['densenet3d_121 4mm']:.2f}/s, "
          f"2 mm {rates['densenet3d_121']:.2f}/s")
    rates["efficientnet_lite0"] = training_rate("efficientnet_lite0", (64, 64), n, 16, device)
    rates["densenet121"] = training_rate("densenet121", (224, 224), 8 if args.quick else 16, 8, device)
    print(f"   slices: efficientnet_lite0 64 px {rates['efficientnet_lite0']:.1f}/s; densenet121 224 px "
          f"{rates['densenet121']:.2f}/s")

    print("\n3. Projection of 09's network baselines")
    for name, workers in (("default", available_cpus()), ("paper", 1)):
        params = load_params(PROJECT / "params" / f"{name}.yaml")
        total = 0.0
        for row in planned_baselines(params).itertuples():
            hours = row.training_images / rates[row.backbone] / 3600 / workers
            total += hours
            took = f"{hours * 60:.1f} min" if hours < 2 else f"{hours:,.0f} h"
            print(f"   {name} {row.cohort} {row.arm}: {row.models} models, {row.training_images:,} training "
                  f"inputs at {rates[row.backbone]:.2f}/s: {took}")
        where = f"{workers} one-thread model(s) at once" if name == "default" else f"one {device} device"
        budget = params.budget.minutes.get("09_baselines") if params.budget else None
        print(f"   {name}: " + (f"{total * 60:.1f} min" if total < 2 else f"{total:,.0f} h") + f" of training on {where}"
              + (f" (09's budget: {budget} min, PCA+SVM and volumes included)" if budget else ""))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
