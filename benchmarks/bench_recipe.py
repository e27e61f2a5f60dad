"""The CPU recipe grid (issue 13): accuracy and wall time of the ImageNet arm's models on the tuning draw.

Trains the ImageNet arm (EfficientNet-Lite0) on one or more image sets of the tuning cohorts (``params/tuning.yaml``,
seed 7: not the default's evaluation seed), k-fold as the study does, for named recipes around the default
(:data:`RECIPES`: the old default, other epochs and batch sizes, the paper's fine-tuning rate, 32 and 96 px:
the study's image sizes are multiples of 32; per-pixel normalisation), each beside the linear reference on the same
images and folds, with its training time relative to the first recipe. Several image sets are scored on their
image-average (the mean of the per-image probabilities, as the study scores an arm); the CSV also holds each image
set's own accuracy. Prints one line per recipe and adds its row to ``results/<draw>/recipe_grid.csv`` (replacing
that recipe's row from an earlier run on the same images). Further draws (``--params``, other seeds) tell a recipe's
gain from the spread between draws: an image-average at 200 subjects moves by ~0.03 from draw to draw.
``--training-seed`` trains the same recipe on the same draw, folds and images with other network seeds: the spread
between such runs is the training's own noise, which a recipe's gain must also exceed.

Usage::

    .venv/bin/studylib run --params params/tuning.yaml --only 01_preprocess 02_flatten 03_rasterize
    .venv/bin/python benchmarks/bench_recipe.py [--cohort hcp] [--images left_sulc ... | all] [--recipes NAME ...]
        [--quick] [--params params/tuning-seed8.yaml] [--training-seed N]
    .venv/bin/python benchmarks/bench_recipe.py --summary    # every recipe against the default, draw by draw
"""

from __future__ import annotations

import argparse
import numbers
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
from studylib.train.engine import available_cpus, fit, predict
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


def evaluate(store: ImageStore, image: str, folds: np.ndarray, train, seed: int) -> tuple[np.ndarray, float]:
    """Out-of-fold probabilities of the ImageNet arm on one image set, and the training seconds."""
    hemisphere, metric = image.split("_", 1)
    images = store.images(hemisphere, metric)
    labels = store.subjects["label"].to_numpy()
    probability = np.zeros(len(labels))
    seconds = 0.0
    for fold in np.unique(folds):
        train_index, test_index = np.flatnonzero(folds != fold), np.flatnonzero(folds == fold)
        mean, sd = normalisation(images, train_index, train.normalise)
        torch.manual_seed(seed + int(fold))
        net = MetricNet(build_model("efficientnet_lite0", imagenet_init("efficientnet_lite0")), mean=mean, sd=sd)
        tick = time.perf_counter()
        fit(net, images, labels, train_index, train, seed=seed + int(fold))
        seconds += time.perf_counter() - tick
        probability[test_index] = predict(net, images, test_index)
    return probability, seconds


#: Named recipes of the grid: changes to the default's training parameters (and image size).
RECIPES = {
    "old default (4 epochs, batch 8)": {"epochs": 4, "mixup_epochs": 2, "batch_size": 8, "lr_step_epochs": 1,
                                        "finetune_lr": 1.0e-4},
    "default": {},
    "default, 30 epochs": {"epochs": 30, "mixup_epochs": 18, "lr_step_epochs": 9},
    "default, 12 epochs": {"epochs": 12, "mixup_epochs": 7, "lr_step_epochs": 4},
    "default, batch 8": {"batch_size": 8},
    "default, batch 32": {"batch_size": 32},
    "default, fine-tuning lr 1e-4 (the paper's)": {"finetune_lr": 1.0e-4},
    "default at 32 px": {"size": 32},
    "default at 96 px": {"size": 96},
    "default, per-pixel normalisation": {"normalise": "pixels"},
    "default, mix-up in 6 of 20 epochs": {"mixup_epochs": 6},
    "default without mix-up": {"mixup_epochs": 0},
    # the default until 2026-12-02: lr divided by 10 after 6 of the 12 mix-up epochs (0.725 on the tuning draw)
    "default, lr step after 6 mix-up epochs": {"lr_step_epochs": 6},
    "default, lr step after 6 mix-up epochs, lr 0.03": {"lr_step_epochs": 6, "lr": 0.03},
    # the default until 2026-12-02 (second change): no lr warm-up (3 tuning draws: 0.027 less accuracy on average)
    "default without lr warm-up": {"warmup_epochs": 0},
}


#: The settings columns that identify a recipe in ``recipe_grid.csv`` (rows match the default by these, not by name).
SETTINGS = ["size", "epochs", "mixup_epochs", "batch_size", "lr", "lr_step_epochs", "finetune_lr", "warmup_epochs",
            "normalise"]


def summarise_draws(results_root: Path, params) -> pd.DataFrame:
    """Each recipe against the default on every tuning draw that ran both, paired (same draw, images and folds).

    Reads ``results/tuning*/recipe_grid.csv``; the default is the row whose settings equal ``params``' (so a row
    that ran under another name, before its recipe became the default, counts; a row named default that is no longer
    the default is shown as an earlier default with its settings). Returns one row per (recipe, draw)
    with the recipe's and the default's image-average accuracy and AUC and their differences.
    """
    default = {**params.train.model_dump(), "size": params.raster.image_size}
    rows = []
    for grid in sorted(results_root.glob("tuning*/recipe_grid.csv")):
        table = pd.read_csv(grid)
        table = table.assign(warmup_epochs=table.get("warmup_epochs", pd.Series(0, index=table.index)).fillna(0),
                             draw=grid.parent.name)
        # a run with another training seed (--training-seed) is a recipe of its own: the spread between runs
        reseeded = (table["training_seed"].notna() & (table["training_seed"] != table["seed"])
                    if "training_seed" in table else np.zeros(len(table), dtype=bool))
        is_default = np.logical_and.reduce([table[key] == default[key] for key in SETTINGS]) & ~reseeded
        for images, group in table.groupby("images"):
            base = group[is_default[group.index]]
            if base.empty:
                continue
            base = base.iloc[0]
            for _, row in group.iterrows():
                if is_default[row.name]:
                    name = "default"
                elif row["recipe"] == "default":  # a run of the default before it changed
                    name = "an earlier default (" + ", ".join(
                        f"{key} {row[key]:g}" if isinstance(row[key], numbers.Number) else f"{key} {row[key]}"
                        for key in SETTINGS if row[key] != default[key]) + ")"
                else:
                    name = row["recipe"]
                rows.append({"recipe": name, "draw": row["draw"],
                             "images": len(images.split()), "accuracy": row["accuracy"], "auc": row["auc"],
                             "default accuracy": base["accuracy"], "default auc": base["auc"],
                             "linear accuracy": row["linear_accuracy"],
                             "accuracy gain": row["accuracy"] - base["accuracy"], "auc gain": row["auc"] - base["auc"],
                             "fraction of linear": row["fraction_of_linear"],
                             "time ratio": row["train_seconds"] / base["train_seconds"]})
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cohort", default="hcp")
    parser.add_argument("--images", nargs="+", default=["left_sulc"],
                        help="image sets, e.g. left_sulc right_thickness, or 'all': each recipe is scored on their "
                             "image-average (the mean of the per-image probabilities), as the study scores an arm")
    parser.add_argument("--recipes", nargs="+", choices=list(RECIPES), default=None,
                        help="default: every recipe of the grid")
    parser.add_argument("--quick", action="store_true", help="the old default and the default only")
    parser.add_argument("--params", type=Path, default=PROJECT / "params" / "tuning.yaml",
                        help="the tuning draw (default: params/tuning.yaml, seed 7; params/tuning-seed8.yaml and "
                             "tuning-seed9.yaml are further draws); never the default's evaluation seed")
    parser.add_argument("--training-seed", type=int, default=None,
                        help="seed the networks with this instead of the draw's seed (folds and images unchanged): "
                             "the row is named '<recipe> (training seed N)', and its difference from the recipe's own "
                             "row is the run-to-run spread of the training")
    parser.add_argument("--summary", action="store_true",
                        help="train nothing: print each recipe against the default on every tuning draw that ran both")
    args = parser.parse_args()
    params = load_params(args.params)
    if args.summary:
        table = summarise_draws(PROJECT / "results", params)
        if table.empty:
            print("bench_recipe --summary: no tuning draw has run the default and another recipe yet")
            return
        print(table.round(3).to_string(index=False))
        print("\nmean over draws (a gain is paired: same draw, images and folds; time ratios from runs on an "
              "otherwise idle machine only):")
        print(table.groupby(["recipe", "images"])[["accuracy gain", "auc gain", "fraction of linear"]]
              .agg(["mean", "count"]).round(3).to_string())
        return
    if params.seed == load_params(PROJECT / "params" / "default.yaml").seed:
        parser.error(f"{args.params} draws with the default's evaluation seed ({params.seed}): tune on another seed")
    layout = ResultsLayout.for_params(args.params.stem, PROJECT / "results")
    if not (layout.image_store(args.cohort) / "store.json").is_file():
        print(f"bench_recipe skipped: no tuning images in {layout.image_store(args.cohort)}; first run "
              f".venv/bin/studylib run --params {args.params} --only 01_preprocess 02_flatten 03_rasterize")
        return
    torch.set_num_threads(available_cpus())  # one model at a time here: all cores (numbers shift by rounding only)
    names = args.recipes or (list(RECIPES)[:2] if args.quick else list(RECIPES))
    training_seed = params.seed if args.training_seed is None else args.training_seed
    rows, references = [], {}
    for name in names:
        change = dict(RECIPES[name])
        size = change.pop("size", params.raster.image_size)
        train = params.train.model_copy(update=change)
        store = store_at(layout, args.cohort, size, params)
        images = ([f"{hemisphere}_{metric}" for hemisphere in store.meta["hemispheres"]
                   for metric in store.meta["metrics"]] if args.images == ["all"] else args.images)
        folds, _ = cohort_folds(store, "kfold", params.train.folds, params.seed)
        labels = store.subjects["label"].to_numpy()
        if size not in references:
            linear = [image_reference(store, *image.split("_", 1), folds, cohort=args.cohort,
                                      seed=params.seed)["probability"].to_numpy() for image in images]
            references[size] = classification_metrics(labels, np.mean(linear, axis=0))
        linear = references[size]
        probabilities, seconds = [], 0.0
        for image in images:
            probability, spent = evaluate(store, image, folds, train, training_seed)
            probabilities.append(probability)
            seconds += spent
        scores = classification_metrics(labels, np.mean(probabilities, axis=0))
        accuracy, auc = scores["accuracy"], scores["auc"]
        recipe = name if training_seed == params.seed else f"{name} (training seed {training_seed})"
        rows.append({"recipe": recipe, "draw": args.params.stem, "seed": params.seed, "training_seed": training_seed,
                     "cohort": args.cohort,
                     "images": " ".join(images), "size": size,
                     "epochs": train.epochs, "mixup_epochs": train.mixup_epochs, "batch_size": train.batch_size,
                     "lr": train.lr, "lr_step_epochs": train.lr_step_epochs, "finetune_lr": train.finetune_lr,
                     "warmup_epochs": train.warmup_epochs, "normalise": train.normalise,
                     "threads": torch.get_num_threads(), "accuracy": accuracy,
                     "auc": auc, "train_seconds": seconds, "linear_accuracy": linear["accuracy"],
                     "linear_auc": linear["auc"], "fraction_of_linear": accuracy / linear["accuracy"],
                     **{f"accuracy {image}": classification_metrics(labels, p)["accuracy"]
                        for image, p in zip(images, probabilities)}})
        base = rows[0]["train_seconds"]
        print(f"{recipe}: {size} px, {train.epochs} epochs ({train.mixup_epochs} mix-up), batch {train.batch_size}, "
              f"normalised per {train.normalise}, {len(images)} image set(s): accuracy {accuracy:.3f} (AUC {auc:.3f}) "
              f"in {seconds:.0f} s ({seconds / base:.1f}x the first recipe's time); linear reference "
              f"{linear['accuracy']:.3f} (AUC {linear['auc']:.3f}); fraction of linear "
              f"{accuracy / linear['accuracy']:.2f}", flush=True)
    table = pd.DataFrame(rows)
    out = layout.root / "recipe_grid.csv"
    if out.is_file():  # earlier runs' recipes stay; a recipe run again on the same images replaces its row
        earlier = pd.read_csv(out)
        for position, (column, value) in enumerate((("draw", args.params.stem), ("seed", params.seed)), 1):
            if column not in earlier:  # rows written before the grid named its draw
                earlier.insert(position, column, value)
        same = earlier.set_index(["recipe", "cohort", "images"]).index.isin(
            table.set_index(["recipe", "cohort", "images"]).index)
        table = pd.concat([earlier[~same], table], ignore_index=True)
    table.to_csv(out, index=False)
    print(f"wrote {out} ({params.train.folds} folds, {len(table)} recipes: single-image accuracies move by ~0.035 "
          "(one SE at 200 subjects) between seeds; read differences below that as noise)")


if __name__ == "__main__":
    main()
