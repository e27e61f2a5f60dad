"""What ``02_flatten`` and ``03_rasterize`` run for the flat-map mode (``flatten.mode``): each subject's own map of
the per-subject cohorts, its distortion per subject, the spread of the D-K regions' centroids across subjects beside
the template mode's zero, and how far images through the subjects' own maps differ from images through the
template's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pandas as pd

from ..data.cohort import Cohort, open_cohorts
from ..data.surfaces import SURFACE_SOURCES
from ..data.templates import load_parcellation
from ..flatmaps import centroid_spread, compare_images, flatten_subjects, load_subject_maps
from ..train.engine import available_cpus
from ..geometry.flatten import FlatMap
from .notebook import StageContext

__all__ = ["SubjectMapsRun", "flatten_per_subject", "image_agreement", "per_subject_cohorts", "store_flat_maps"]


def per_subject_cohorts(params) -> list[str]:
    """The cohorts whose subjects get their own flat maps (``flatten.mode: per-subject``), in cohort order."""
    if params.flatten.mode != "per-subject":
        return []
    chosen = params.flatten.cohorts
    return [name for name in params.cohorts if chosen is None or name in chosen]


def _workers(params) -> int:
    executor = params.executor
    if executor.kind == "serial":
        return 1
    return executor.workers or available_cpus()  # one single-threaded flattening per CPU


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
    for name, cohort in cohorts.items():
        atlas = load_parcellation("dk", cohort.template)
        flats = {h: template_maps[(cohort.template, h)] for h in cohort.hemispheres}
        runs.append(flatten_subjects(cohort, flats, layout.subject_flat_map, workers=_workers(params),
                                     labels=atlas.labels, progress=progress, tolerance=params.flatten.tolerance,
                                     max_iterations=params.flatten.max_iterations))
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


def image_agreement(stage: StageContext, cohorts: Mapping[str, Cohort]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-subject cohorts: images through each subject's own map against images through the template map (per
    subject, and summarised per cohort, hemisphere and metric)."""
    rows = []
    for name in per_subject_cohorts(stage.params):
        if name not in cohorts:
            continue
        cohort = cohorts[name]
        flats = {h: FlatMap.load(stage.layout.flat_map(cohort.template, h)) for h in cohort.hemispheres}
        rows.append(compare_images(cohort, flats, stage.layout.subject_flat_map, stage.params.raster.image_size,
                                   method=stage.params.raster.method).assign(cohort=name))
    if not rows:
        return pd.DataFrame(), pd.DataFrame()
    table = pd.concat(rows, ignore_index=True)
    summary = (table.groupby(["cohort", "hemisphere", "metric"], sort=False)
               .agg(subjects=("subject", "size"), correlation_median=("correlation", "median"),
                    correlation_min=("correlation", "min"),
                    difference_median=("mean |difference| (SD)", "median"))
               .reset_index()
               .rename(columns={"correlation_median": "pixel correlation, median",
                                "correlation_min": "pixel correlation, min",
                                "difference_median": "mean |difference| (SD), median"}))
    return table, summary

