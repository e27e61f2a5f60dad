"""Every GPU check of the study in one prepared script, each section within its own time budget.

Run it whenever a GPU is lent (a few minutes in all)::

    .venv/bin/python benchmarks/gpu_check.py            # results/gpu-check/*.csv + provenance.json

Sections (budget in seconds, ``--budget-scale`` multiplies them):

1. ``device`` (5): the card, its memory and compute capability, CUDA, torch, CPU count.
2. ``throughput`` (150): for each paper backbone at 224 px, batch 64: the study's engine with the images
   resident on the GPU, the engine streaming batches from the memory-mapped store, the engine in float32
   (no autocast), and a bare PyTorch loop over resident tensors, as images/s; the engine/bare ratio and the
   AMP speed-up; GPU utilisation sampled (``nvidia-smi``) while the resident engine trains.
3. ``resume`` (90): the GPU tests of the suite (an interrupted GPU fit resumed from its checkpoint in a new
   model object predicts what an uninterrupted fit predicts), run by pytest.
4. ``projection`` (20): the ``paper`` parameter set's training, counted from the study's own plan
   (:func:`studylib.train.workload.planned_workload`: every arm, fold, stage-1 model and site-out fold of every
   autism cohort), at the measured resident-engine rate, scheduled on 1, 4 and 8 GPUs.
5. ``occlusion`` (40): occluded images/s of :func:`studylib.explain.occlusion.occlusion` for each paper backbone
   at 224 px (a 30 px square, random weights: the cost does not depend on them), and the paper's occlusion workload
   (one arm and backbone per task, 2,401 positions per image: ``studylib.study.occlusion_run.PAPER_COPIES``) in
   hours on this card.
6. ``baselines`` (40): 09's 3D networks through the engine (images resident): ``densenet3d_121`` on the
   ``paper`` set's ribbon grid (2 mm: 74 x 93 x 69) and ``densenet3d_small`` on the default's (4 mm), volumes/s,
   and the ``paper`` set's network baselines (:func:`studylib.baselines.networks.planned_baselines`) in hours on
   this card, the slice models at the throughput section's DenseNet-121 rate.
7. ``study`` (540): the study itself with ``params/gpu-check.yaml`` (224 px, ResNet-50 and DenseNet-121, every
   arm on the default's cohorts, sized for ~8 minutes of training on one H100/H200-class card): every notebook's
   wall time and every arm's accuracy beside the linear reference, into ``study.csv`` (its full results land in
   ``results/gpu-check/``). Without a GPU (or with ``--tiny``) it only counts the planned training.

``--sections`` picks sections (default: all), so that the check fits a GPU machine's per-command limit in two
calls, e.g. ``--sections device throughput resume projection`` then ``--sections device study``.

Each measurement sizes its own number of images from a short probe so that its section stays within budget;
a section that runs out of time says so in its CSV row instead of blocking the rest. ``--device cpu --tiny``
runs every section at toy sizes on a CPU (the test suite does, so the script cannot rot between GPU loans).
The book's reproducibility page shows these tables with the card named, or "not measured"; ``--out
benchmarks/records/gpu-check`` records a run with the project, for books built where no GPU is. A section that
fails is recorded with its error in ``sections.csv`` and the next section runs. Every section but ``study`` needs
only PyTorch, the scientific stack, ``pydantic``, ``timm`` and ``monai`` (an offline GPU machine without the
study's environment: ``PYTHONPATH=.`` and ``--commit`` where the tree has no ``.git``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from studylib.study.config import load_params
from studylib.study.layout import ResultsLayout
from studylib.study.provenance import collect_environment
from studylib.train.engine import fit, resolve_device
from studylib.train.models import Init, MetricNet, build_model
from studylib.train.workload import planned_workload, projected_hours

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run directly, via run_all or runpy
from _support import random_store  # noqa: E402

PROJECT = Path(__file__).resolve().parents[1]
BUDGETS = {"device": 5, "throughput": 150, "resume": 90, "projection": 20, "occlusion": 40, "baselines": 40,
           "study": 540}
DEVICE_COUNTS = (1, 4, 8)


class Section:
    """A named section with a deadline; records its wall time and whether it finished within budget."""

    def __init__(self, name: str, scale: float) -> None:
        self.name, self.budget = name, BUDGETS[name] * scale
        self.start = time.perf_counter()

    def left(self) -> float:
        return self.budget - (time.perf_counter() - self.start)

    def close(self) -> dict:
        spent = time.perf_counter() - self.start
        print(f"[{self.name}] {spent:.0f} s of {self.budget:.0f} s", flush=True)
        return {"section": self.name, "seconds": round(spent, 1), "budget_seconds": self.budget,
                "within_budget": spent <= self.budget * 1.1}


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


class UtilisationSampler:
    """Mean GPU utilisation (%) reported by ``nvidia-smi`` while the ``with`` block runs (None on a CPU)."""

    def __init__(self, device: str) -> None:
        self.device, self.samples, self._stop = device, [], threading.Event()

    def _sample(self) -> None:
        while not self._stop.wait(0.25):
            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                                      f"--id={torch.cuda.current_device()}"], capture_output=True, text=True,
                                     timeout=5)
                self.samples.append(float(out.stdout.strip().splitlines()[0]))
            except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
                return

    def __enter__(self) -> UtilisationSampler:
        if self.device == "cuda":
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()

    @property
    def mean(self) -> float | None:
        return round(float(np.mean(self.samples)), 1) if self.samples else None


def _net(backbone: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return MetricNet(build_model(backbone, Init("scratch")), 0.0, 1.0)


def engine_rate(backbone: str, images: np.ndarray, train, device: str, *, resident: bool = True,
                autocast: bool = True) -> float:
    """Images/s of :func:`studylib.train.engine.fit` over one epoch of ``images`` (after a warm-up)."""
    from studylib.train import engine

    labels = np.arange(len(images)) % 2
    net = _net(backbone)
    original = engine._autocast
    if not autocast:
        engine._autocast = lambda device: torch.autocast("cuda", enabled=False)
    try:
        warm = np.arange(min(len(images), 2 * train.batch_size))
        fit(net, images, labels, warm, train, seed=0, device=device)
        _sync(device)
        start = time.perf_counter()
        fit(net, images, labels, np.arange(len(images)), train, seed=0, device=device,
            resident_bytes=None if resident else 0)
        _sync(device)
    finally:
        engine._autocast = original
    return len(images) / (time.perf_counter() - start)


def bare_rate(backbone: str, images: np.ndarray, batch_size: int, device: str) -> float:
    """Images/s of a plain loop over resident tensors: no schedule, mix-up, checkpoint or memory map."""
    net = _net(backbone).train().to(device, memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    x_all = torch.from_numpy(np.array(images)).unsqueeze(1).to(device)
    y_all = (torch.arange(len(images)) % 2).to(device)

    def epoch(order):
        for first in range(0, len(order), batch_size):
            index = order[first: first + batch_size]
            if len(index) < 2:
                continue
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device == "cuda"):
                logits = net(x_all[index].contiguous(memory_format=torch.channels_last))
            loss = torch.nn.functional.cross_entropy(logits.float(), y_all[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    epoch(torch.arange(min(len(images), 2 * batch_size), device=device))
    _sync(device)
    start = time.perf_counter()
    epoch(torch.randperm(len(images), device=device))
    _sync(device)
    return len(images) / (time.perf_counter() - start)


def device_section(device: str) -> pd.DataFrame:
    info = {"device": device, "torch": torch.__version__, "cpus": os.cpu_count()}
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        info |= {"card": props.name, "memory_gib": round(props.total_memory / 2**30, 1),
                 "capability": f"{props.major}.{props.minor}", "cuda": torch.version.cuda,
                 "visible_gpus": torch.cuda.device_count()}
    else:
        info |= {"card": "CPU (no GPU)", "threads": torch.get_num_threads()}
    print("device: " + ", ".join(f"{k} {v}" for k, v in info.items()), flush=True)
    return pd.DataFrame([info])


def throughput_section(section: Section, device: str, backbones: list[str], size: int, batch_size: int,
                       max_images: int, folder: Path) -> pd.DataFrame:
    train = load_params(PROJECT / "params" / "paper.yaml").train.model_copy(
        update={"epochs": 1, "mixup_epochs": 1, "batch_size": batch_size, "backbones": backbones})
    rows = []
    for position, backbone in enumerate(backbones):
        share = section.left() / (len(backbones) - position)  # this backbone's part of what is left
        probe = random_store(folder, 4 * batch_size, size)
        rate = engine_rate(backbone, probe, train, device)
        # four engine runs and one bare loop, each ~ share / 6 seconds
        n = int(np.clip(rate * share / 6, 2 * batch_size, max_images)) // batch_size * batch_size
        images = random_store(folder, n, size)
        row = {"backbone": backbone, "image_size": size, "batch_size": batch_size, "images": n}
        with UtilisationSampler(device) as sampler:
            row["engine_resident"] = engine_rate(backbone, images, train, device)
        row["gpu_utilisation_percent"] = sampler.mean
        row["engine_streamed"] = engine_rate(backbone, images, train, device, resident=False)
        row["bare_loop"] = bare_rate(backbone, images, batch_size, device)
        row["engine_float32"] = engine_rate(backbone, images, train, device, autocast=False) \
            if device == "cuda" else None
        row["engine_vs_bare"] = row["engine_resident"] / row["bare_loop"]
        row["resident_vs_streamed"] = row["engine_resident"] / row["engine_streamed"]
        row["amp_speedup"] = row["engine_resident"] / row["engine_float32"] if row["engine_float32"] else None
        print(f"{backbone} {size}px batch {batch_size} ({n} images): engine {row['engine_resident']:.0f} images/s "
              f"resident, {row['engine_streamed']:.0f} streamed; bare loop {row['bare_loop']:.0f}; engine/bare "
              f"{row['engine_vs_bare']:.2f}; GPU utilisation {row['gpu_utilisation_percent']}%"
              + (f"; AMP speed-up {row['amp_speedup']:.2f}x" if row["amp_speedup"] else ""), flush=True)
        rows.append(row)
    return pd.DataFrame(rows)


def resume_section(section: Section) -> pd.DataFrame:
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
               str(PROJECT / "tests" / "train" / "test_engine.py"), "-k", "gpu"]
    try:
        done = subprocess.run(command, cwd=PROJECT, capture_output=True, text=True, timeout=max(section.left(), 10))
        summary = (done.stdout.strip().splitlines() or ["(no output)"])[-1]
        status = "passed" if done.returncode == 0 and "skipped" not in summary else (
            "skipped (no GPU)" if "skipped" in summary else "failed")
    except subprocess.TimeoutExpired:
        summary, status = "timed out", "timed out"
    print(f"GPU resume test: {status} ({summary})", flush=True)
    if status not in ("passed", "skipped (no GPU)", "timed out"):
        print((done.stdout + done.stderr)[-4000:], flush=True)  # the assertion's numbers, for the next loan
    return pd.DataFrame([{"test": "interrupted GPU fit resumes to the uninterrupted predictions", "status": status,
                          "pytest": summary}])


def projection_section(throughput: pd.DataFrame, card: str, stand_in: bool = False) -> pd.DataFrame:
    """Hours of the paper's training on 1, 4 and 8 cards; ``stand_in``: the one measured (toy) rate stands for
    every paper backbone (exercises the code; not a projection)."""
    params = load_params(PROJECT / "params" / "paper.yaml")
    workload = planned_workload(params)
    rates = dict(zip(throughput["backbone"], throughput["engine_resident"]))
    if stand_in:
        rates = {backbone: float(throughput["engine_resident"].iloc[0]) for backbone in params.train.backbones}
    measured = workload[workload["backbone"].isin(rates)]
    rows = [{"gpus": k, "hours": round(projected_hours(measured, rates, k), 2), "card": card,
             "models": len(measured), "training_images": int(measured["training_images"].sum()),
             "backbones": " + ".join(sorted(rates))} for k in DEVICE_COUNTS]
    shares = measured.groupby(["cohort", "scheme"])["training_images"].sum() / measured["training_images"].sum()
    print("paper training counted from the plan: " + ", ".join(f"{c} {s} {v:.0%}" for (c, s), v in shares.items()),
          flush=True)
    for row in rows:
        print(f"projected paper training on {row['gpus']} x {card}: {row['hours']} h", flush=True)
    return pd.DataFrame(rows)


def occlusion_section(section: Section, device: str, backbones: list[str], size: int) -> pd.DataFrame:
    """Occluded images per second per backbone, and the paper's occlusion workload in hours at that rate."""
    from studylib.explain.occlusion import occlusion
    from studylib.study.occlusion_run import PAPER_COPIES

    rows = []
    patch = max(2, round(30 * size / 224))
    for backbone in backbones:
        if section.left() <= 0:
            rows.append({"backbone": backbone, "status": "out of time"})
            continue
        net = _net(backbone).to(device).eval()
        images = np.random.default_rng(0).normal(size=(2, size, size)).astype(np.float32)
        occlusion(net, images[:1], np.zeros(1, int), patch=patch, stride=patch, fill=-2.0, device=device)  # warm-up
        _sync(device)
        started = time.perf_counter()
        result = occlusion(net, images, np.array([0, 1]), patch=patch, stride=max(1, size // 14), fill=-2.0,
                           batch_size=128, device=device)
        _sync(device)
        rate = len(images) * len(result["positions"]) / (time.perf_counter() - started)
        for task, copies in PAPER_COPIES.items():
            rows.append({"backbone": backbone, "image_size": size, "occluded_images_per_s": round(rate, 1),
                         "task": task, "paper_copies": copies, "hours_on_one_device": round(copies / rate / 3600, 2),
                         "status": "measured"})
    return pd.DataFrame(rows)


def baselines_section(section: Section, device: str, tiny: bool, throughput: pd.DataFrame | None) -> pd.DataFrame:
    """3D training rates of 09's volume networks, and the paper set's network baselines in hours on one device."""
    from studylib.baselines.networks import planned_baselines
    from studylib.train.models import input_channels

    grids = {"densenet3d_121": (74, 93, 69), "densenet3d_small": (39, 48, 36)}
    if tiny:
        grids = {"densenet3d_small": (16, 16, 16)}
    train = load_params(PROJECT / "params" / "paper.yaml").train
    rates, rows = {}, []
    for backbone, shape in grids.items():
        if section.left() <= 0:
            rows.append({"kind": "rate", "backbone": backbone, "status": "out of time"})
            continue
        batch = 2 if tiny else 8
        n = 2 * batch if tiny else 4 * batch
        volumes = np.random.default_rng(0).normal(size=(n, *shape)).astype(np.float32)
        labels = np.arange(n) % 2
        settings = train.model_copy(update={"epochs": 1, "mixup_epochs": 1, "batch_size": batch})
        torch.manual_seed(0)
        net = MetricNet(build_model(backbone, Init("scratch")), 0.0, 1.0, channels=input_channels(backbone))
        fit(net, volumes[: 2 * batch], labels[: 2 * batch], np.arange(2 * batch), settings, seed=0, device=device)
        _sync(device)
        started = time.perf_counter()
        fit(net, volumes, labels, np.arange(n), settings, seed=0, device=device)
        _sync(device)
        rates[backbone] = n / (time.perf_counter() - started)
        rows.append({"kind": "rate", "backbone": backbone, "grid": " x ".join(map(str, shape)), "batch_size": batch,
                     "volumes_per_s": round(rates[backbone], 2), "status": "measured"})
    if throughput is not None and "engine_resident" in throughput:  # the slice models' 2D DenseNet-121
        for record in throughput.to_dict("records"):
            rates.setdefault(record["backbone"], float(record["engine_resident"]))
    plan = planned_baselines(load_params(PROJECT / "params" / "paper.yaml"))
    for record in plan.to_dict("records"):
        rate = rates.get(record["backbone"])
        rows.append({"kind": "paper plan", "backbone": record["backbone"], "arm": record["arm"],
                     "cohort": record["cohort"], "models": record["models"],
                     "training_images": record["training_images"],
                     "hours_on_one_device": round(record["training_images"] / rate / 3600, 2) if rate else None,
                     "status": "projected" if rate and not tiny else "no rate measured" if not rate else
                     "toy sizes: not a projection"})
    return pd.DataFrame(rows)


def study_section(section: Section, device: str, tiny: bool) -> pd.DataFrame:
    """Run ``params/gpu-check.yaml`` end to end (a GPU only) and collect notebook times and arm accuracies."""
    params_file = PROJECT / "params" / "gpu-check.yaml"
    params = load_params(params_file)
    workload = planned_workload(params)
    planned = {"models": len(workload), "training_images": int(workload["training_images"].sum())}
    print(f"gpu-check study: {planned['models']} models, {planned['training_images']:,} training images planned",
          flush=True)
    if tiny or device != "cuda":
        return pd.DataFrame([{"kind": "planned", "name": "training", **planned, "status": "not run (no GPU)"}])
    command = [sys.executable, "-m", "studylib.study.cli", "run", "--params", str(params_file)]
    try:
        done = subprocess.run(command, cwd=PROJECT, capture_output=True, text=True, timeout=max(section.left(), 30))
        status = "finished" if done.returncode == 0 else f"failed (exit {done.returncode})"
        tail = (done.stdout + done.stderr)[-2000:]
    except subprocess.TimeoutExpired as stopped:
        status, tail = "timed out (rerun the section: finished models are kept)", str(stopped.stdout or "")[-2000:]
    print(tail, flush=True)
    rows = [{"kind": "planned", "name": "training", **planned, "status": status}]
    layout = ResultsLayout.for_params(params.name, PROJECT / "results")
    record = layout.root / "provenance.json"
    if record.is_file():
        for stage in json.loads(record.read_text()).get("stages", []):
            rows.append({"kind": "notebook", "name": stage["name"], "seconds": stage.get("seconds"),
                         "status": stage.get("status")})
    for notebook in ("04_train_sex", "05_train_asd_2stage"):
        table = layout.tables(notebook) / "arms_vs_references.csv"
        if table.is_file():
            for arm in pd.read_csv(table).to_dict("records"):
                rows.append({"kind": "arm", "name": f"{arm['cohort']} {arm['scheme']} {arm['arm']} {arm['backbone']}",
                             "accuracy": arm["image-average accuracy"],
                             "linear_reference": arm["linear reference accuracy"],
                             "bayes_ceiling": arm.get("Bayes-optimal accuracy")})
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto, cuda or cpu")
    parser.add_argument("--tiny", action="store_true", help="toy sizes (a CPU run of every section in seconds)")
    parser.add_argument("--budget-scale", type=float, default=1.0)
    parser.add_argument("--out", type=Path, default=None, help="default: results/gpu-check")
    parser.add_argument("--sections", nargs="+", choices=list(BUDGETS), default=list(BUDGETS),
                        help="sections to run (device always runs; projection needs throughput)")
    parser.add_argument("--commit", default=None,
                        help="the code's commit, recorded where the tree has no .git (a copy sent to a GPU machine)")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    out = args.out or ResultsLayout.for_params("default", PROJECT / "results").gpu_check
    out.mkdir(parents=True, exist_ok=True)
    backbones, size, batch, max_images = (["resnet50", "densenet121"], 224, 64, 8192)
    if args.tiny:
        backbones, size, batch, max_images = (["resnet18"], 32, 8, 64)
    started = datetime.now(timezone.utc)
    wanted = set(args.sections) | {"device"} | ({"throughput"} if "projection" in args.sections else set())
    sections, tables = [], {}

    def run(name: str, measure) -> None:
        """Run one section; an error is printed and recorded in ``sections.csv`` and the next section runs."""
        if name not in wanted:
            return
        section = Section(name, args.budget_scale)
        try:
            tables[name] = measure(section)
            error = None
        except Exception as failure:  # noqa: BLE001 - one lent GPU call must still bring back the other sections
            traceback.print_exc()
            error = f"{type(failure).__name__}: {failure}"[:500]
        sections.append(section.close() | {"error": error})

    with tempfile.TemporaryDirectory() as tmp:
        run("device", lambda section: device_section(device))
        run("throughput", lambda section: throughput_section(section, device, backbones, size, batch, max_images,
                                                             Path(tmp)))
    card = str(tables["device"]["card"].iloc[0]) if "device" in tables else "unknown"
    run("resume", resume_section)

    def projection(section: Section) -> pd.DataFrame:
        if "throughput" not in tables:
            raise RuntimeError("no throughput was measured (the throughput section's error says why)")
        return projection_section(tables["throughput"], card if not args.tiny else
                                  f"{card} (toy sizes: not a projection)", stand_in=args.tiny)

    run("projection", projection)
    run("occlusion", lambda section: occlusion_section(section, device, backbones, size))
    run("baselines", lambda section: baselines_section(section, device, args.tiny, tables.get("throughput")))
    run("study", lambda section: study_section(section, device, args.tiny))
    tables["sections"] = pd.DataFrame(sections)
    for name, table in tables.items():
        table.to_csv(out / f"{name}.csv", index=False)
    record = {"command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
              "started": started.isoformat(timespec="seconds"), "tiny": args.tiny, **collect_environment()}
    if record["git"]["commit"] is None and args.commit:  # a copied tree without .git (a lent GPU machine)
        record["git"] = {"commit": args.commit, "uncommitted_changes": None, "stated_by": "--commit"}
    (out / "provenance.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out}", flush=True)


if __name__ == "__main__":
    main()
