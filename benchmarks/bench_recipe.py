"""The CPU recipe grid (issue 13): accuracy and wall time of single-image models on the tuning draw.

Trains the ImageNet arm (EfficientNet-Lite0) on one image set of the tuning cohorts (``params/tuning.yaml``,
seed 7: not the default's evaluation seed), k-fold as the study does, for a small grid of image sizes, epochs,
batch sizes and learning rates, each beside the linear reference on the same images and folds. Prints one line per
setting and writes ``results/tuning/recipe_grid.csv``.

Usage::

    .venv/bin/studylib run --params params/tuning.yaml --only 01_preprocess 02_flatten 03_rasterize
    .venv/bin/python benchmarks/bench_recipe.py [--cohort hcp] [--image left_sulc] [--quick]
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from studylib.baselines.linear import image_reference
from studylib.data.cohort import Cohort
from studylib.evaluate.metrics import classification_metrics
from studylib.geometry.flatten import FlatMap
from studylib.images import ImageStore, build_image_store
from studylib.study.config import load_params
from studylib.study.layout import ResultsLayout
from studylib.train.engine import fit, predict
from studylib.train.experiments import cohort_folds, imagenet_init
from studylib.train.jobs import normalisation
from studylib.train.models import MetricNet, build_model

PROJECT = Path(__file__).resolve().parents[1]


def store_at(layout: ResultsLayout, cohort: str, size: int, params) -> ImageStore:
    """The tuning cohort's images at ``size`` px (the study's own store when its size matches)."""
    own = ImageStore(layout.image_store(cohort))
    if own.meta["size"] == size:
        return own
    folder = layout.root / "recipe_grid" / f"{cohort}_{size}px"
    if (folder / "store.json").is_file():
        return ImageStore(folder)
    data = Cohort(layout.cohort(cohort))
    flats = {h: FlatMap.load(layout.flat_map(data.template, h)) for h in data.hemispheres}
    return build_image_store(data, flats, size, folder, method=params.raster.method, dtype=params.raster.dtype)


def evaluate(store: ImageStore, image: str, folds: np.ndarray, train, seed: int) -> tuple[float, float, float]:
    """Pooled out-of-fold accuracy and AUC of the ImageNet arm, and the training seconds."""
    hemisphere, metric = image.split("_", 1)
    images = store.images(hemisphere, metric)
    labels = store.subjects["label"].to_numpy()
    probability = np.zeros(len(labels))
    seconds = 0.0
    for fold in np.unique(folds):
        train_index, test_index = np.flatnonzero(folds != fold), np.flatnonzero(folds == fold)
        mean, sd = normalisation(images, train_index)
        torch.manual_seed(seed + int(fold))
        net = MetricNet(build_model("efficientnet_lite0", imagenet_init("efficientnet_lite0")), mean=mean, sd=sd)
        tick = time.perf_counter()
        fit(net, images, labels, train_index, train, seed=seed + int(fold))
        seconds += time.perf_counter() - tick
        probability[test_index] = predict(net, images, test_index)
    scores = classification_metrics(labels, probability)
    return scores["accuracy"], scores["auc"], seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cohort", default="hcp")
    parser.add_argument("--image", default="left_sulc")
    parser.add_argument("--quick", action="store_true", help="two settings only")
    parser.add_argument("--sizes", default="32,64")
    parser.add_argument("--epochs", default="4,12,24")
    parser.add_argument("--batch", default="8")
    parser.add_argument("--lr", default="0.01")
    parser.add_argument("--mixup-share", type=float, default=0.6, help="share of epochs with mix-up (paper: 75/125)")
    parser.add_argument("--finetune-lr", type=float, default=None, help="default: the tuning params' finetune_lr")
    args = parser.parse_args()
    params = load_params(PROJECT / "params" / "tuning.yaml")
    layout = ResultsLayout.for_params("tuning", PROJECT / "results")
    if not (layout.image_store(args.cohort) / "store.json").is_file():
        print(f"bench_recipe skipped: no tuning images in {layout.image_store(args.cohort)}; first run "
              ".venv/bin/studylib run --params params/tuning.yaml --only 01_preprocess 02_flatten 03_rasterize")
        return
    torch.set_num_threads(params.train.threads)
    grid = list(itertools.product([int(s) for s in args.sizes.split(",")], [int(e) for e in args.epochs.split(",")],
                                  [int(b) for b in args.batch.split(",")], [float(r) for r in args.lr.split(",")]))
    if args.quick:
        grid = grid[:2]
    rows = []
    for size in sorted({g[0] for g in grid}):
        store = store_at(layout, args.cohort, size, params)
        folds, _ = cohort_folds(store, "kfold", params.train.folds, params.seed)
        hemisphere, metric = args.image.split("_", 1)
        reference = image_reference(store, hemisphere, metric, folds, cohort=args.cohort, seed=params.seed)
        linear = classification_metrics(reference["label"].to_numpy(), reference["probability"].to_numpy())
        for _, epochs, batch, lr in [g for g in grid if g[0] == size]:
            mixup = round(args.mixup_share * epochs)
            train = params.train.model_copy(update={
                "epochs": epochs, "mixup_epochs": mixup, "batch_size": batch, "lr": lr,
                "lr_step_epochs": max(1, mixup // 3),  # the paper: three steps of 25 over 75 mix-up epochs
                "finetune_lr": args.finetune_lr if args.finetune_lr is not None else params.train.finetune_lr})
            accuracy, auc, seconds = evaluate(store, args.image, folds, train, params.seed)
            row = {"cohort": args.cohort, "image": args.image, "size": size, "epochs": epochs, "mixup_epochs": mixup,
                   "batch_size": batch, "lr": lr, "finetune_lr": train.finetune_lr, "accuracy": accuracy, "auc": auc, "train_seconds": seconds,
                   "linear_accuracy": linear["accuracy"], "linear_auc": linear["auc"],
                   "fraction_of_linear": accuracy / linear["accuracy"]}
            rows.append(row)
            print(f"{size:>3} px, {epochs:>2} epochs ({mixup} mix-up), batch {batch}, lr {lr}: accuracy {accuracy:.3f} "
                  f"(AUC {auc:.3f}) in {seconds:.0f} s; linear reference {linear['accuracy']:.3f} "
                  f"(AUC {linear['auc']:.3f}); fraction {accuracy / linear['accuracy']:.2f}", flush=True)
    table = pd.DataFrame(rows)
    out = layout.root / "recipe_grid.csv"
    if out.is_file():
        table = pd.concat([pd.read_csv(out), table], ignore_index=True)
    table.to_csv(out, index=False)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
