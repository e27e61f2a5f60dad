"""Training throughput on this machine: CPU options, the engine against a bare PyTorch loop, the default recipe
against the old one, allocator settings, and a projection of the ``paper`` run on one GPU.

1. CPU options (issue 13), each in its own child process, interleaved over repeats and reported as the median
   ratio to the baseline measured in the same run (EfficientNet-Lite0 from ImageNet, 64 px, batch 16, float32,
   channels-last, 2 threads): contiguous layout; bfloat16 autocast (AVX-512 BF16 CPUs); ``torch.compile`` (with
   its warm-up); 1 thread; two 1-thread processes at once, one per core (throughput); 32, 48 and 96 px.
2. Engine (schedule, mix-up, soft targets, per-epoch checkpoints, resident images) vs a bare loop over in-memory
   tensors, same model, image size and batch size, steady-state epochs, interleaved (issue #5 target: >= 0.9 on
   CPU); with and without the per-epoch checkpoint. On a GPU the engine (bfloat16 autocast) is also compared with
   itself in float32: the AMP speed-up.
3. The default recipe against the old one (4 epochs at batch 8 on 2 threads): seconds per model and images/s on
   the machine's cores, as the study runs them (old: one model at a time; new: one 1-thread model per core).
4. glibc allocator settings (``MALLOC_MMAP_THRESHOLD_``/``MALLOC_TRIM_THRESHOLD_``): the same loop in child
   processes with glibc's defaults, with large thresholds, and with the trim threshold alone, interleaved over
   repeats. The runner sets none of them.
5. Projection: the training rate of each paper backbone at 224 px, batch 64, measured on this machine, applied to
   the ``paper`` parameter set's plan (:func:`studylib.train.workload.planned_workload`). GPU machines: run
   ``benchmarks/gpu_check.py``, which projects 1, 4 and 8 GPUs and feeds the book.

Usage: ``python benchmarks/bench_train.py [--quick]`` (``--quick``: fewer images and repeats, for a first look).
Say the machine's load when quoting its figures: every ratio is measured side by side in one run.
"""

from __future__ import annotations

import argparse
import json
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

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run directly, via run_all or runpy
from _support import random_store, store_path  # noqa: E402

PROJECT = Path(__file__).resolve().parents[1]

ALLOCATOR_SETTINGS = {
    "large thresholds": {"MALLOC_MMAP_THRESHOLD_": "33554432", "MALLOC_TRIM_THRESHOLD_": "268435456"},
    "trim threshold only": {"MALLOC_TRIM_THRESHOLD_": "268435456"},
}


def bare_loop(net: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int,
              device: str, epochs: int = 1) -> float:
    """Images/s of a plain loop over in-memory tensors (no schedule, no mix-up, no checkpoint), over the epochs after
    the first (warm-up) when there are several."""
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    net.train().to(device, memory_format=torch.channels_last)
    images, labels = images.to(device), labels.to(device)
    seconds = []
    for _ in range(epochs):
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
        seconds.append(time.perf_counter() - start)
    return len(images) / float(np.mean(seconds[1:] if epochs > 1 else seconds))


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def engine_rate(backbone: str, init: str, images: np.ndarray, labels: np.ndarray, train, device: str,
                folder: Path, autocast: bool = True, checkpoint: bool = True) -> float:
    """Images/s of :func:`fit` over its epochs after the first (warm-up), from the fit's own epoch times."""
    torch.manual_seed(0)
    net = MetricNet(build_model(backbone, Init(init)), 0.0, 1.0)
    index = np.arange(len(labels))
    from studylib.train import engine

    original = engine._autocast
    if not autocast:
        engine._autocast = lambda device: torch.autocast("cuda", enabled=False)
    try:
        history = fit(net, images, labels, index, train, seed=0, device=device,
                      checkpoint=folder / "c.pt" if checkpoint else None)
    finally:
        engine._autocast = original
    (folder / "c.pt").unlink(missing_ok=True)
    seconds = [row["seconds"] for row in history]
    return len(labels) / float(np.mean(seconds[1:] if len(seconds) > 1 else seconds))


def _interleaved(cases: dict, repeats: int, measure) -> dict[str, list[float]]:
    """``measure(case)`` for every case, ``repeats`` rounds in alternating order (machine drift hits all alike)."""
    rates: dict[str, list[float]] = {label: [] for label in cases}
    for round_ in range(repeats):
        for label in (list(cases) if round_ % 2 == 0 else list(reversed(cases))):
            rates[label].append(measure(cases[label]))
    return rates


_STEP_CHILD = """
import json, os, sys, time, torch
from studylib.train.experiments import imagenet_init
from studylib.train.models import Init, MetricNet, build_model
case = json.loads(sys.argv[1])
if case.get("core") is not None:
    os.sched_setaffinity(0, {case["core"]})
torch.set_num_threads(case["threads"])
torch.manual_seed(0)
init = imagenet_init(case["backbone"]) if case["imagenet"] else Init("scratch")
net = MetricNet(build_model(case["backbone"], init), 0.0, 1.0)
layout = torch.channels_last if case["channels_last"] else torch.contiguous_format
net = net.to(memory_format=layout)
step_net = torch.compile(net) if case["compile"] else net
opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
size, batch = case["size"], case["batch"]
x = torch.randn(batch, 1, size, size).contiguous(memory_format=layout)
y = torch.randint(0, 2, (batch,))
tick = time.perf_counter()
for step in range(case["steps"] + 3):
    if step == 3:
        warm, start = time.perf_counter() - tick, time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=case["bf16"]):
        logits = step_net(x)
    loss = torch.nn.functional.cross_entropy(logits.float(), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
print(json.dumps({"rate": case["steps"] * batch / (time.perf_counter() - start), "warm_up": warm}))
"""


def _step_rate(case: dict, env: dict | None = None) -> dict:
    result = subprocess.run([sys.executable, "-c", _STEP_CHILD, json.dumps(case)], capture_output=True, text=True,
                            env=env, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def _parallel_rate(case: dict, cores: int) -> float:
    """Summed images/s of ``cores`` 1-thread children run at once, one pinned to each core."""
    children = [subprocess.Popen([sys.executable, "-c", _STEP_CHILD, json.dumps({**case, "threads": 1, "core": core})],
                                 stdout=subprocess.PIPE, text=True) for core in sorted(os.sched_getaffinity(0))[:cores]]
    outputs = [child.communicate()[0] for child in children]
    if any(child.returncode for child in children):
        raise RuntimeError("a parallel training child failed")
    return sum(json.loads(out.strip().splitlines()[-1])["rate"] for out in outputs)


def cpu_options(quick: bool) -> None:
    """Images/s of one training step under each CPU option, as median ratios to the baseline in the same run."""
    cores = available_cpus()
    base = {"backbone": "efficientnet_lite0", "imagenet": True, "size": 64, "batch": 16, "threads": min(2, cores),
            "channels_last": True, "bf16": False, "compile": False, "steps": 10 if quick else 25, "core": None}
    cases = {"baseline: float32, channels-last, 2 threads": base,
             "contiguous layout": {**base, "channels_last": False},
             "bfloat16 autocast": {**base, "bf16": True},
             "1 thread": {**base, "threads": 1},
             "32 px": {**base, "size": 32}, "48 px": {**base, "size": 48}, "96 px": {**base, "size": 96}}
    if cores >= 2:
        cases["two 1-thread processes, one per core"] = {**base, "parallel": 2}
    warm_ups: dict[str, float] = {}

    def measure(case: dict) -> float:
        if case.get("parallel"):
            return _parallel_rate({k: v for k, v in case.items() if k != "parallel"}, case["parallel"])
        return _step_rate(case)["rate"]

    repeats = 2 if quick else 3
    rates = _interleaved(cases, repeats, measure)
    compiled = _step_rate({**base, "compile": True, "steps": base["steps"] * 2})
    warm_ups["torch.compile"] = compiled["warm_up"]
    rates["torch.compile (after warm-up)"] = [compiled["rate"]]
    baseline = float(np.median(rates["baseline: float32, channels-last, 2 threads"]))
    cpu_bf16 = "avx512_bf16" in Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else False
    print(f"CPU options, EfficientNet-Lite0 ImageNet, batch 16, {cores} cores, AVX-512 BF16: {cpu_bf16}, "
          f"{repeats} interleaved repeats (median):", flush=True)
    for label, values in rates.items():
        rate = float(np.median(values))
        extra = f", warm-up {warm_ups['torch.compile']:.0f} s" if label.startswith("torch.compile") else ""
        if label.endswith("px"):
            extra = f" (images/s x pixels: {rate * int(label.split()[0]) ** 2 / (baseline * 64 ** 2):.2f}x)"
        print(f"  {label}: {rate:.0f} images/s, {rate / baseline:.2f}x{extra}", flush=True)


def compare(quick: bool, device: str, folder: Path) -> None:
    """Engine vs bare loop, steady-state epochs (the first is warm-up), interleaved."""
    train = load_params(PROJECT / "params" / "default.yaml").train.model_copy(
        update={"epochs": 3, "mixup_epochs": 2, "lr_step_epochs": 1, "batch_size": 16})
    n = 96 if quick else 192
    cases = [("efficientnet_lite0", "imagenet-lite0", 64), ("efficientnet_lite0", "imagenet-lite0", 96),
             ("resnet18", "scratch", 96)]
    if device == "cuda":
        n = 2048
        train = train.model_copy(update={"batch_size": 64})
        cases = [("resnet50", "scratch", 224), ("densenet121", "scratch", 224), ("efficientnet_lite0", "scratch", 224)]
    labels = np.random.default_rng(1).integers(0, 2, n)
    repeats = 1 if quick else 2
    for backbone, init, size in cases:
        images = random_store(folder, n, size)
        tensor = torch.from_numpy(np.array(images)).unsqueeze(1)  # in memory, writable
        variants = {"engine": {"checkpoint": True, "autocast": True}, "bare loop": None,
                    "engine without checkpoints": {"checkpoint": False, "autocast": True}}
        if device == "cuda":
            variants["engine float32"] = {"checkpoint": True, "autocast": False}

        def measure(variant) -> float:
            if variant is None:
                net = MetricNet(build_model(backbone, Init(init)), 0.0, 1.0)
                return bare_loop(net, tensor, torch.as_tensor(labels), train.batch_size, device, epochs=3)
            return engine_rate(backbone, init, images, labels, train, device, folder, **variant)

        rates = {label: float(np.median(values))
                 for label, values in _interleaved(variants, repeats, measure).items()}
        line = (f"{backbone} {size}x{size}, batch {train.batch_size}, {device}"
                f"{'' if device == 'cuda' else f' ({torch.get_num_threads()} threads)'}: engine {rates['engine']:.0f} "
                f"images/s, bare loop {rates['bare loop']:.0f} images/s, ratio {rates['engine'] / rates['bare loop']:.2f}"
                f" (target >= 0.9); without per-epoch checkpoints {rates['engine without checkpoints']:.0f} images/s "
                f"({rates['engine without checkpoints'] / rates['engine']:.2f}x the engine)")
        if device == "cuda":
            line += (f"; float32 engine {rates['engine float32']:.0f} images/s, AMP speed-up "
                     f"{rates['engine'] / rates['engine float32']:.2f}x")
        print(line, flush=True)


_RECIPE_CHILD = """
import json, os, sys, time, numpy as np, torch
from studylib.study.config import load_params
from studylib.train.engine import fit
from studylib.train.experiments import imagenet_init
from studylib.train.models import MetricNet, build_model
case = json.loads(sys.argv[1])
if case.get("core") is not None:
    os.sched_setaffinity(0, {case["core"]})
torch.set_num_threads(case["threads"])
train = load_params(case["params"]).train.model_copy(update=case["train"])
images = np.load(case["images"], mmap_mode="r")
labels = np.random.default_rng(1).integers(0, 2, len(images))
torch.manual_seed(0)
net = MetricNet(build_model("efficientnet_lite0", imagenet_init("efficientnet_lite0")), 0.0, 1.0)
tick = time.perf_counter()
fit(net, images, labels, np.arange(len(images)), train, seed=0, checkpoint=case["checkpoint"])
print(json.dumps({"seconds": time.perf_counter() - tick, "images": len(images) * train.epochs}))
"""

#: The default recipe before issue 13 (each model ~67 SGD steps, one 2-thread model at a time).
OLD_DEFAULT_RECIPE = {"epochs": 4, "mixup_epochs": 2, "batch_size": 8, "lr": 0.01, "lr_step_epochs": 1,
                      "finetune_lr": 1.0e-4, "threads": 2}


def recipes(quick: bool, folder: Path) -> None:
    """Seconds per model and images/s on all cores: the old default recipe against the current one, on a training
    set the size of the default's sex folds (133 subjects, 64 px)."""
    default = load_params(PROJECT / "params" / "default.yaml")
    random_store(folder, 133, default.raster.image_size)  # the training set each child memory-maps
    cores = available_cpus()
    new = {name: getattr(default.train, name) for name in OLD_DEFAULT_RECIPE}
    if quick:
        new["epochs"], new["mixup_epochs"], new["lr_step_epochs"] = 6, 4, 2
    workers = max(1, cores // new["threads"]) if default.executor.kind != "serial" else 1

    def run(recipe: dict, parallel: int) -> tuple[float, float]:
        cases = [{"params": str(PROJECT / "params" / "default.yaml"), "images": str(store_path(folder, 133, default.raster.image_size)),
                  "threads": recipe["threads"], "train": {k: v for k, v in recipe.items() if k != "threads"},
                  "checkpoint": str(folder / f"recipe_{worker}.pt"),
                  "core": sorted(os.sched_getaffinity(0))[worker] if parallel > 1 else None} for worker in range(parallel)]
        children = [subprocess.Popen([sys.executable, "-c", _RECIPE_CHILD, json.dumps(case)], stdout=subprocess.PIPE,
                                     text=True) for case in cases]
        outputs = [json.loads(child.communicate()[0].strip().splitlines()[-1]) for child in children]
        for case in cases:
            Path(case["checkpoint"]).unlink(missing_ok=True)
        seconds = float(np.mean([out["seconds"] for out in outputs]))
        return seconds, sum(out["images"] / out["seconds"] for out in outputs)

    old_seconds, old_rate = run(OLD_DEFAULT_RECIPE, 1)
    new_seconds, new_rate = run(new, workers)
    print(f"recipe, EfficientNet-Lite0 ImageNet {default.raster.image_size} px, 133 training subjects, {cores} cores: "
          f"old default (4 epochs, batch 8, one 2-thread model) {old_seconds:.1f} s per model, {old_rate:.0f} images/s; "
          f"default ({new['epochs']} epochs, batch {new['batch_size']}, {workers} model(s) of {new['threads']} "
          f"thread(s) at once) {new_seconds:.1f} s per model, {new_rate:.0f} images/s: {new_rate / old_rate:.2f}x the "
          f"images/s; per model {new['epochs'] / OLD_DEFAULT_RECIPE['epochs']:.1f}x the images, "
          f"{(new['epochs'] / new['batch_size']) / (OLD_DEFAULT_RECIPE['epochs'] / OLD_DEFAULT_RECIPE['batch_size']):.2f}x "
          f"the SGD steps, {new_seconds / old_seconds:.1f}x the seconds", flush=True)


def allocator(quick: bool) -> None:
    plain = {key: value for key, value in os.environ.items() if not key.startswith("MALLOC_")}
    settings = {"glibc defaults": {}, **ALLOCATOR_SETTINGS}
    for backbone, size in (("efficientnet_lite0", 64), ("resnet18", 96), ("resnet50", 224)):
        case = {"backbone": backbone, "imagenet": False, "size": size, "batch": 32, "threads": available_cpus(),
                "channels_last": True, "bf16": False, "compile": False, "steps": 4 if size == 224 or quick else 10,
                "core": None}

        def measure(env: dict) -> float:
            return _step_rate(case, env={**plain, **env})["rate"]

        rates = {label: float(np.median(values))
                 for label, values in _interleaved(settings, 1 if quick else 3, measure).items()}
        base = rates["glibc defaults"]
        print(f"allocator, {backbone} {size}x{size} batch 32 (median of interleaved repeats): glibc defaults "
              f"{base:.0f} images/s; " + "; ".join(f"{label} {rate:.0f} ({rate / base:.2f}x)"
                                                    for label, rate in rates.items() if label != "glibc defaults"),
              flush=True)


def projection(device: str, folder: Path) -> None:
    """The paper's training (counted from the study's plan) at this machine's measured rate, on one device."""
    params = load_params(PROJECT / "params" / "paper.yaml")
    workload = planned_workload(params)
    train = params.train.model_copy(update={"epochs": 1, "mixup_epochs": 1})
    n = 512 if device == "cuda" else 64
    labels = np.random.default_rng(2).integers(0, 2, n)
    images = random_store(folder, n, 224)
    rates = {backbone: engine_rate(backbone, "scratch", images, labels, train, device, folder)
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
        if device == "cpu":
            cpu_options(args.quick)
            recipes(args.quick, Path(tmp))
        compare(args.quick, device, Path(tmp))
        if device == "cpu":
            allocator(args.quick)
        projection(device, Path(tmp))


if __name__ == "__main__":
    main()
