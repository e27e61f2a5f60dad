"""How much training a parameter set asks for, counted from the study's own plan, and how long it takes on N devices.

:func:`planned_workload` plans the sex and autism experiments exactly as notebooks 04 and 05 do
(:func:`~studylib.train.experiments.plan_sex`, :func:`~studylib.train.experiments.plan_autism`) on
stand-in cohorts of the right size, label balance and number of sites, without building anything, and lists
every model with the subjects it trains on: every arm, backbone, image, k-fold and site-out fold of every
autism cohort, and the stage-1 models. :func:`projected_hours` turns a measured training rate into wall
time on 1, 4, 8 ... devices by scheduling those jobs as the executors do (in plan order, a stage-2 job only
after its stage-1 model, one job per device at a time).

Leave-one-site-out folds train on every subject but one site's, so their total depends only on the number
of sites: a cohort's site sizes do not change the count.
"""

from __future__ import annotations

import heapq
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..params import ExecutorParams, StudyParams
from .experiments import Experiment, plan_autism, plan_nested, plan_sex

__all__ = ["ABIDE1_FREESURFER", "CohortShape", "cohort_shapes", "planned_workload", "projected_hours"]

#: Subjects and sites of the ABIDE I FreeSurfer 6 tables (the semi-real cohort at full size).
ABIDE1_FREESURFER = (1035, 20)


@dataclass(frozen=True)
class CohortShape:
    """What the plan needs to know of a cohort: its size, number of sites, images and label balance."""

    n_subjects: int
    n_sites: int
    metrics: tuple[str, ...]
    hemispheres: tuple[str, ...] = ("left", "right")
    prevalence: float = 0.5


class _StandIn:
    """An image store's plan-relevant face: subjects (label, site) and meta (hemispheres, metrics)."""

    def __init__(self, name: str, shape: CohortShape) -> None:
        n = shape.n_subjects
        labels = (np.arange(n) < round(shape.prevalence * n)).astype(int)
        self.path = Path(f"<{name}>")
        self.subjects = pd.DataFrame({"subject": [f"s{i}" for i in range(n)], "label": labels,
                                      "site": [f"site{i % shape.n_sites:02d}" for i in range(n)]})
        self.meta = {"hemispheres": list(shape.hemispheres), "metrics": list(shape.metrics)}


def cohort_shapes(params: StudyParams, overrides: dict[str, CohortShape] | None = None) -> dict[str, CohortShape]:
    """The shape of each cohort of ``params``: simulated cohorts from their parameters, the semi-real cohort from
    ``n_subjects`` (all: :data:`ABIDE1_FREESURFER`); real HCP or FreeSurfer cohorts must be given in
    ``overrides`` (their size is known only once their folders are read)."""
    overrides = overrides or {}
    shapes = {}
    for name, cohort in params.cohorts.items():
        if name in overrides:
            shapes[name] = overrides[name]
        elif cohort.source == "simulated":
            shapes[name] = CohortShape(cohort.n_subjects, cohort.n_sites, tuple(cohort.metrics))
        elif cohort.source == "semi-real":
            n, sites = ABIDE1_FREESURFER
            shapes[name] = CohortShape(cohort.n_subjects or n, sites, tuple(cohort.metrics))
        else:
            raise ValueError(f"cohort {name!r} ({cohort.source}): give its size and number of sites in overrides")
    return shapes


def planned_workload(params: StudyParams, shapes: dict[str, CohortShape] | None = None) -> pd.DataFrame:
    """Every model that notebooks 04 and 05 would train for ``params``, one row each.

    Columns: ``job`` (its folder name), ``cohort``, ``arm``, ``scheme``, ``backbone``, ``train_subjects``,
    ``epochs``, ``training_images`` (subjects x epochs) and ``after`` (the job it waits for, or empty).
    """
    shapes = shapes or cohort_shapes(params)
    transfer = params.transfer
    with tempfile.TemporaryDirectory() as root:
        experiment = Experiment(root, {name: _StandIn(name, shape) for name, shape in shapes.items()},
                                params.train, params.seed, device="cpu", executor=ExecutorParams())
        plan_sex(experiment, transfer)
        plan_autism(experiment, transfer, [c for c in transfer.autism_cohorts if c in shapes])
        if params.stacking.nested:
            plan_nested(experiment)
        rows = []
        for job in experiment.jobs:
            folds = experiment.folds(job.cohort, job.scheme)
            train_subjects = len(folds) if job.fold < 0 else int(((folds != job.fold) & (folds >= -1)).sum())
            after = ""
            if job.init.kind == "checkpoint":
                after = str(Path(job.init.path).parent.relative_to(root))
            rows.append({"job": job.name, "cohort": job.cohort, "arm": job.arm, "scheme": job.scheme,
                         "backbone": job.backbone, "train_subjects": train_subjects, "epochs": params.train.epochs,
                         "training_images": train_subjects * params.train.epochs, "after": after})
    return pd.DataFrame(rows)


def projected_hours(workload: pd.DataFrame, images_per_second: dict[str, float], devices: int) -> float:
    """Wall hours to train ``workload`` on ``devices`` devices, each training one job at a time at the measured
    ``images_per_second`` of the job's backbone: jobs start in plan order as devices free up, a job waiting
    for its stage-1 model starts once that model is done (list scheduling, as the executors run them)."""
    if devices < 1:
        raise ValueError("devices must be at least 1")
    missing = sorted(set(workload["backbone"]) - set(images_per_second))
    if missing:
        raise ValueError(f"no measured training rate for backbone(s) {missing}")
    duration = {row.job: row.training_images / images_per_second[row.backbone] for row in workload.itertuples()}
    finished: dict[str, float] = {}
    free = [0.0] * devices  # when each device is next free
    heapq.heapify(free)
    for row in workload.itertuples():  # stage-1 jobs come first in the plan
        start = max(heapq.heappop(free), finished.get(row.after, 0.0) if row.after else 0.0)
        finished[row.job] = start + duration[row.job]
        heapq.heappush(free, finished[row.job])
    return max(finished.values(), default=0.0) / 3600
