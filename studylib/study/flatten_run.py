"""What ``02_flatten`` and ``03_rasterize`` run for the flat-map mode (``flatten.mode``): each subject's own map of
the per-subject cohorts, its distortion per subject, the spread of the D-K regions' centroids across subjects beside
the template mode's zero, and how far images through the subjects' own maps differ from images through the
template's, in pixels and in one arm's accuracy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..data.cohort import Cohort, open_cohorts
from ..data.surfaces import SURFACE_SOURCES
from ..data.templates import load_parcellation
from ..baselines.linear import linear_reference
from ..flatmaps import centroid_spread, flatten_subjects, image_differences, load_subject_maps, paired_images
from ..train.executors import make_executor
from ..geometry.flatten import FlatMap
from .notebook import StageContext
from .steps import bayes_ceilings

__all__ = ["ImageAgreement", "SubjectMapsRun", "flatten_per_subject", "image_agreement", "map_accuracy",
           "per_subject_cohorts", "store_flat_maps"]


def per_subject_cohorts(params) -> list[str]:
    """The cohorts whose subjects get their own flat maps (``flatten.mode: per-subject``), in cohort order."""
    if params.flatten.mode != "per-subject":
        return []
    chosen = params.flatten.cohorts
    return [name for name in params.cohorts if chosen is None or name in chosen]


def flattening_executor(params):
    """The study's executor (``executor`` params) sized for flattening: one single-threaded map per CPU (or per Ray
    CPU)."""
    return make_executor(params.executor, 1, "cpu")


@dataclass
class SubjectMapsRun:
    """What 02 shows of the per-subject maps: ``runs`` (one row per cohort, hemisphere and subject: times, iterations,
    flips, area ratios), ``distribution`` (their spread per cohort and hemisphere), ``spread`` (per cohort, hemisphere
    and D-K region: the centroid spread across subjects in pixels, per-subject and template maps side by side) and
    ``notes``."""

    runs: pd.DataFrame = field(default_factory=pd.DataFrame)
    distribution: pd.DataFrame = field(default_factory=pd.DataFrame)
    spread: pd.DataFrame = field(default_factory=pd.DataFrame)
    notes: list[str] = field(default_factory=list)


def _distribution(runs: pd.DataFrame) -> pd.DataFrame:
    columns = {"seconds": "seconds", "flipped": "flipped triangles", "area_ratio_p5": "triangle area ratio p5",
               "area_ratio_p95": "triangle area ratio p95", "DK_ratio_p5": "D-K parcel ratio p5",
               "DK_ratio_p95": "D-K parcel ratio p95", "K_median": "median K"}
    rows = []
    for (cohort, hemisphere), group in runs.groupby(["cohort", "hemisphere"], sort=False):
        for column, name in columns.items():
            if column in group:
                values = group[column].astype(float)
                rows.append({"cohort": cohort, "hemisphere": hemisphere, "measure": name, "subjects": len(values),
                             "min": values.min(), "median": values.median(), "max": values.max()})
    return pd.DataFrame(rows)


def flatten_per_subject(stage: StageContext, template_maps: Mapping[tuple[str, str], FlatMap], *,
                        progress: bool = True) -> SubjectMapsRun:
    """Flatten every subject of the per-subject cohorts (cached per subject, in parallel by the executor's workers)
    and measure the maps.

    Raises
    ------
    ValueError
        When a per-subject cohort's source has no individual surfaces.
    """
    params, layout = stage.params, stage.layout
    run = SubjectMapsRun()
    chosen = per_subject_cohorts(params)
    if not chosen:
        run.notes.append("flatten.mode is template: every subject of a template shares its map, so each region's "
                         "centroid sits on the same pixel in every subject's images (spread 0 px).")
        return run
    cohorts, skipped = open_cohorts({name: layout.cohort(name) for name in chosen})
    run.notes += [f"cohort {name!r} was skipped in 01_preprocess (optional, data absent): no subject maps"
                  for name in skipped]
    for name, cohort in cohorts.items():
        if cohort.meta.get("source") not in SURFACE_SOURCES:
            raise ValueError(f"flatten.cohorts: cohort {name!r} (source {cohort.meta.get('source')!r}) has no "
                             f"individual surfaces; per-subject maps run on sources {list(SURFACE_SOURCES)}")
    size = params.raster.image_size
    runs, spreads = [], []
    executor = flattening_executor(params)
    described = ", ".join(f"{key} {value}" for key, value in executor.describe().items() if value not in ([], None))
    run.notes.append(f"Subjects' maps were flattened by the study's executor ({described}), one CPU per map.")
    for name, cohort in cohorts.items():
        atlas = load_parcellation("dk", cohort.template)
        flats = {h: template_maps[(cohort.template, h)] for h in cohort.hemispheres}
        runs.append(flatten_subjects(cohort, flats, layout.subject_flat_map, executor=executor,
                                     labels=atlas.labels, progress=progress, **params.flatten.solver_options()))
        cortical = {k: v for k, v in atlas.names.items() if not v.endswith(("corpuscallosum", "unknown", "???"))}
        for hemisphere in cohort.hemispheres:
            own = centroid_spread(load_subject_maps(cohort, hemisphere, layout.subject_flat_map),
                                  atlas.labels[hemisphere], cortical, size)
            shared = centroid_spread([flats[hemisphere]] * len(cohort), atlas.labels[hemisphere], cortical, size)
            both = own.merge(shared[["region", "spread (px)"]].rename(columns={"spread (px)": "template maps (px)"}),
                             on="region", how="left")
            spreads.append(both.rename(columns={"spread (px)": "own maps (px)", "max (px)": "own maps, max (px)"})
                           .assign(cohort=name, hemisphere=hemisphere))
    run.runs = pd.concat(runs, ignore_index=True) if runs else pd.DataFrame()
    run.distribution = _distribution(run.runs) if not run.runs.empty else pd.DataFrame()
    if spreads:
        spread = pd.concat(spreads, ignore_index=True)
        run.spread = spread[["cohort", "hemisphere", "region", "subjects", "own maps (px)", "own maps, max (px)",
                             "template maps (px)"]]
    return run


def store_flat_maps(stage: StageContext, cohort: Cohort) -> dict[str, FlatMap | list[FlatMap]]:
    """The flat maps ``03_rasterize`` rasterizes a cohort through: each subject's own (per-subject cohorts), else the
    template's."""
    layout = stage.layout
    if cohort.name in per_subject_cohorts(stage.params):
        return {h: load_subject_maps(cohort, h, layout.subject_flat_map) for h in cohort.hemispheres}
    return {h: FlatMap.load(layout.flat_map(cohort.template, h)) for h in cohort.hemispheres}


@dataclass
class ImageAgreement:
    """What 03 shows of per-subject cohorts' images: ``per_subject`` (one row per cohort, hemisphere, metric and
    subject: pixel correlation and mean |difference| against the template map's image), ``summary`` (their medians
    per cohort, hemisphere and metric), ``accuracy`` (one arm, the linear reference, on both kinds of image in the
    same folds: :func:`map_accuracy`) and ``notes``."""

    per_subject: pd.DataFrame = field(default_factory=pd.DataFrame)
    summary: pd.DataFrame = field(default_factory=pd.DataFrame)
    accuracy: pd.DataFrame = field(default_factory=pd.DataFrame)
    notes: list[str] = field(default_factory=list)


def map_accuracy(template_images: np.ndarray, own_images: np.ndarray, labels: np.ndarray, *, folds: int = 5,
                 repeats: int = 2, seed: int = 0, n_bootstrap: int = 1000) -> dict:
    """The linear reference (standardised pixels + logistic regression) on the same subjects' images through the
    template map and through their own maps, in identical repeated stratified folds.

    Returns accuracies and AUCs (averaged over repeats) of both, and the difference in accuracy (own minus template,
    percentage points) with a 95% interval from a paired bootstrap over subjects (of each subject's share of repeats
    classified correctly).

    Raises
    ------
    ValueError
        When the image sets differ in shape or a class has fewer than two subjects.
    """
    if template_images.shape != own_images.shape or len(template_images) != len(labels):
        raise ValueError(f"image sets of shapes {template_images.shape} and {own_images.shape} for {len(labels)} "
                         "labels")
    if n_bootstrap < 1:
        raise ValueError(f"n_bootstrap must be at least 1, got {n_bootstrap}")
    labels = np.asarray(labels).astype(int)
    smaller = int(np.bincount(labels, minlength=2).min())
    if smaller < 2:
        raise ValueError(f"a class has {smaller} subject(s): too few for a cross-validated accuracy")
    folds = min(folds, smaller)
    results = {name: linear_reference(images.reshape(len(images), -1), labels, folds=folds, repeats=repeats,
                                      seed=seed, n_bootstrap=0)
               for name, images in (("template", template_images), ("own", own_images))}
    # each subject's share of repeats in which it was classified correctly: its mean is the repeats' mean accuracy
    correct = {name: ((result.repeat_probability > 0.5) == labels).mean(axis=0) for name, result in results.items()}
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, len(labels), (n_bootstrap, len(labels)))
    differences = 100 * (correct["own"][rows].mean(axis=1) - correct["template"][rows].mean(axis=1))
    template, own = results["template"].summary, results["own"].summary
    return {"subjects": len(labels), "folds": folds, "repeats": repeats,
            "majority class (%)": 100 * template["majority_class"],
            "template map accuracy (%)": 100 * template["accuracy"], "own maps accuracy (%)": 100 * own["accuracy"],
            "difference (points)": 100 * (own["accuracy"] - template["accuracy"]),
            "difference 95% CI": f"{np.quantile(differences, 0.025):.1f} to {np.quantile(differences, 0.975):.1f}",
            "template map AUC": template["auc"], "own maps AUC": own["auc"]}


def image_agreement(stage: StageContext, cohorts: Mapping[str, Cohort], *, folds: int = 5,
                    repeats: int = 2) -> ImageAgreement:
    """Per-subject cohorts: images through each subject's own map against images through the template map (per
    subject, summarised per cohort, hemisphere and metric), and the linear reference's accuracy on each
    (:func:`map_accuracy`)."""
    params = stage.params
    agreement = ImageAgreement()
    rows, accuracy = [], []
    for name in per_subject_cohorts(params):
        if name not in cohorts:
            continue
        cohort = cohorts[name]
        flats = {h: FlatMap.load(stage.layout.flat_map(cohort.template, h)) for h in cohort.hemispheres}
        subjects = cohort.subjects["subject"].astype(str).to_numpy()
        labels = cohort.subjects["label"].to_numpy()
        for hemisphere, metric, reference, images in paired_images(cohort, flats, stage.layout.subject_flat_map,
                                                                   params.raster.image_size,
                                                                   method=params.raster.method):
            where = {"cohort": name, "hemisphere": hemisphere, "metric": metric}
            rows.append(image_differences(reference, images, subjects).assign(**where))
            try:
                accuracy.append({**where, **map_accuracy(reference, images, labels, folds=folds, repeats=repeats,
                                                         seed=params.seed)})
            except ValueError as error:
                agreement.notes.append(f"{name} {hemisphere} {metric}: no accuracy comparison ({error})")
    if not rows:
        return agreement
    table = pd.concat(rows, ignore_index=True)
    agreement.per_subject = table[["cohort", "hemisphere", "metric", "subject", "correlation",
                                   "mean |difference| (SD)"]]
    agreement.summary = (table.groupby(["cohort", "hemisphere", "metric"], sort=False)
                         .agg(subjects=("subject", "size"), correlation_median=("correlation", "median"),
                              correlation_min=("correlation", "min"),
                              difference_median=("mean |difference| (SD)", "median"))
                         .reset_index()
                         .rename(columns={"correlation_median": "pixel correlation, median",
                                          "correlation_min": "pixel correlation, min",
                                          "difference_median": "mean |difference| (SD), median"}))
    agreement.accuracy = pd.DataFrame(accuracy)
    if len(agreement.accuracy):  # beside the ceiling any classifier can reach (simulated cohorts; else NaN)
        ceilings = bayes_ceilings(stage.layout, set(agreement.accuracy["cohort"]))
        agreement.accuracy["Bayes-optimal accuracy (%)"] = 100 * agreement.accuracy["cohort"].map(ceilings)
    if len(agreement.accuracy):
        folds_used = "/".join(str(k) for k in sorted(agreement.accuracy["folds"].unique()))
        agreement.notes.append(
            f"One arm, the linear reference, on both kinds of image in the same splits ({folds_used}-fold, "
            f"{repeats} repeats, {int(agreement.accuracy['subjects'].max())} subjects at most); the difference's 95% "
            "CI is a paired bootstrap over subjects. For the comparison at scale, set flatten.cohorts to a larger "
            "cohort.")
    return agreement

