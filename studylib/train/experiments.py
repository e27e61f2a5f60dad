"""The paper's transfer-learning experiments as lists of jobs, and their results as tables.

Sex (the cohort playing HCP): ``scratch`` vs ``imagenet`` (direct transfer). Autism (cohorts playing ABIDE):
``scratch``, ``imagenet``, ``hcp-only`` (scratch -> HCP sex -> ABIDE) and ``2-stage`` (ImageNet -> HCP sex ->
ABIDE). The stage-1 models of the last two are trained on every subject of the HCP-like cohort (disjoint
from the autism cohorts), one per (backbone, hemisphere, metric); an autism metric the HCP-like cohort lacks
(area and volume of the semi-real ABIDE I cohort) starts from the stage-1 model of the metric that
``transfer.stage1_metrics`` names. Every (arm, backbone, hemisphere, metric) gets one model per fold of the
cohort's stratified k-fold split (one split per cohort, shared by all its arms and images, so predictions
can be stacked per subject), and, for ``transfer.site_out_arms``, one per site left out.

``imagenet`` means torchvision's ImageNet weights for ResNet/DenseNet and the packaged ImageNet weights of
EfficientNet-Lite0 (``imagenet-lite0``), so that CPU parameter sets transfer real ImageNet features offline.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import numpy as np
import pandas as pd

from ..images import ImageStore
from ..params import HCP_ONLY, IMAGENET, SCRATCH, TWO_STAGE, ExecutorParams, TrainParams, TransferParams
from .cv import ALL_SUBJECTS, INNER, KFOLD, SITE_OUT, inner_folds, inner_scheme, is_inner, site_folds, stratified_folds
from .engine import resolve_device
from .executors import Executor, JobTask, make_executor
from .jobs import Job, is_done, job_key
from .models import Init

__all__ = [
    "PREDICTION_COLUMNS",
    "STAGE1_INIT",
    "Experiment",
    "cohort_folds",
    "imagenet_init",
    "plan_autism",
    "plan_nested",
    "plan_sex",
    "stage1_metric",
]

#: Columns of :meth:`Experiment.predictions`.
PREDICTION_COLUMNS = ["subject", "label", "fold", "probability", "cohort", "arm", "scheme", "backbone", "init",
                      "hemisphere", "metric", "seed"]

#: The direct arm (its initialisation) of the stage-1 (HCP sex) model behind each staged arm.
STAGE1_INIT = {HCP_ONLY: SCRATCH, TWO_STAGE: IMAGENET}


def imagenet_init(backbone: str) -> Init:
    """The initialisation that loads ImageNet weights for ``backbone`` offline-first."""
    return Init("imagenet-lite0" if backbone == "efficientnet_lite0" else "imagenet")


def _direct_init(arm: str, backbone: str) -> Init:
    return Init("scratch") if arm == SCRATCH else imagenet_init(backbone)


def stage1_metric(metric: str, source_metrics: list[str], mapping: dict[str, str]) -> str:
    """The HCP-like cohort's metric whose stage-1 model starts an autism model of ``metric``: the mapping's
    choice, else the metric of the same name."""
    chosen = mapping.get(metric, metric)
    if chosen not in source_metrics:
        raise ValueError(f"no stage-1 metric for {metric!r}: the sex cohort has {source_metrics}; set "
                         f"transfer.stage1_metrics.{metric}")
    return chosen


def cohort_folds(store: ImageStore, scheme: str, n_folds: int, seed: int) -> tuple[np.ndarray, list[str]]:
    """Fold per subject (``kfold``: stratified and shuffled; ``site-out``: one fold per site) and fold names."""
    subjects = store.subjects
    if scheme == KFOLD:
        return stratified_folds(subjects["label"].to_numpy(), n_folds, seed), [str(k) for k in range(n_folds)]
    if scheme == SITE_OUT:
        if "site" not in subjects or subjects["site"].isna().any():
            raise ValueError(f"{store.path}: leave-one-site-out needs a site for every subject")
        return site_folds(subjects["site"].astype(str).to_numpy())
    raise ValueError(f"unknown scheme {scheme!r}")


class Experiment:
    """Jobs under one root folder, run in order with one progress bar, and their predictions.

    Parameters
    ----------
    root : path
        Jobs live in ``root/<job.name>``.
    stores : dict
        ``{cohort: ImageStore}``.
    train : TrainParams
    seed : int
    device : str
        ``auto``, ``cpu`` or ``cuda``.
    executor : ExecutorParams, optional
        How the jobs run (default: serially in this process); results do not depend on it.
    """

    def __init__(self, root: str | Path, stores: dict[str, ImageStore], train: TrainParams, seed: int,
                 device: str = "auto", executor: ExecutorParams | None = None):
        self.root = Path(root)
        self.stores = stores
        self.train = train
        self.seed = seed
        self.device = resolve_device(device)
        self.executor: Executor = make_executor(executor or ExecutorParams(), train.threads, self.device)
        self.epochs_trained = 0
        self.jobs: list[Job] = []
        self._planned: set[Job] = set()
        self._folds: dict[tuple[str, str], tuple[np.ndarray, list[str]]] = {}

    def folds(self, cohort: str, scheme: str) -> np.ndarray:
        """Fold per subject of ``cohort`` under ``scheme`` (``all``: every subject trains, fold -1; ``inner<k>``:
        the inner folds of k-fold's outer fold k, its own subjects excluded)."""
        if scheme == ALL_SUBJECTS:
            return np.zeros(len(self.stores[cohort].subjects), dtype=np.int64)
        if is_inner(scheme):
            labels = self.stores[cohort].subjects["label"].to_numpy()
            return inner_folds(labels, self.folds(cohort, KFOLD), int(scheme[len(INNER):]))
        if (cohort, scheme) not in self._folds:
            self._folds[cohort, scheme] = cohort_folds(self.stores[cohort], scheme, self.train.folds, self.seed)
        return self._folds[cohort, scheme][0]

    def add(self, cohort: str, arm: str, scheme: str, backbone: str, init: Init, hemisphere: str,
            metric: str) -> list[Job]:
        """Add one job per fold of ``cohort`` under ``scheme`` (one job for ``all``) and return them."""
        folds = self.folds(cohort, scheme)
        numbers = [-1] if scheme == ALL_SUBJECTS else sorted(int(k) for k in np.unique(folds[folds >= 0]))
        jobs = [Job(cohort, arm, scheme, backbone, init, hemisphere, metric, fold, self.seed + max(fold, 0))
                for fold in numbers]
        for job in jobs:
            if job not in self._planned:
                self._planned.add(job)
                self.jobs.append(job)
        return jobs

    def model_path(self, job: Job) -> Path:
        return self.root / job.name / "model.pt"

    def key(self, job: Job) -> str:
        store = self.stores[job.cohort]
        return job_key(job, self.train, store.identity(job.hemisphere, job.metric), self.folds(job.cohort, job.scheme))

    def unfinished(self) -> list[Job]:
        """Planned jobs without a finished result for the current parameters, code and inputs."""
        return [job for job in self.jobs if not is_done(self.root / job.name, self.key(job))]

    def tasks(self) -> list[JobTask]:
        """One picklable task per planned job, in plan order."""
        return [JobTask(job, self.stores[job.cohort].path, self.folds(job.cohort, job.scheme), self.train,
                        self.root / job.name, self.device) for job in self.jobs]

    def run(self, *, progress: bool = True) -> int:
        """Run every job not yet done through the executor (stage-1 models before the models that start from
        them); return how many trained. Progress: one bar over all jobs, fed as jobs finish."""
        from ..progress import progress_bar

        tasks = self.tasks()
        trained = 0
        bar = progress_bar(total=len(tasks), unit="model", disable=not progress, mininterval=15.0,
                   desc=f"{len(tasks)} models ({self.executor.describe()['executor']})")

        def done(index: int, epochs: int) -> None:
            nonlocal trained
            trained += epochs > 0
            self.epochs_trained += epochs
            bar.set_postfix_str(tasks[index].job.name, refresh=False)
            bar.update(1)

        with bar:
            self.executor.run(tasks, done)
        return trained

    def run_summary(self, trained: int) -> str:
        """What :meth:`run` did, for a notebook's notes: models trained and reused, and the Ray nodes that ran them."""
        nodes = self.executor.describe().get("nodes")
        return (f"trained {trained}, reused {len(self.jobs) - trained}"
                + (f"; the jobs ran on {nodes} Ray node(s)" if nodes else ""))

    _FIELDS = tuple(f.name for f in fields(Job))

    def _field(self, job: Job, name: str):
        """A job's field as a table shows it: the init as its label, stage-1 models named relative to the root."""
        return job.init.relative_to(self.root) if name == "init" else getattr(job, name)

    def _require_finished(self) -> None:
        unfinished = self.unfinished()
        if unfinished:
            raise RuntimeError(f"{len(unfinished)} of {len(self.jobs)} planned models are not trained for the "
                               f"current parameters, code and images (first: {unfinished[0].name}); call run()")

    def predictions(self, *, inner: bool = False) -> pd.DataFrame:
        """Out-of-fold predictions of every evaluation job, with the job's fields, one row per (job, test
        subject); ``inner``: those of the nested stacking scheme's inner models instead (:func:`plan_nested`).
        Raises when a planned job is not finished (no stale or partial results are mixed in)."""
        self._require_finished()
        parts = []
        for job in self.jobs:
            if job.scheme == ALL_SUBJECTS or is_inner(job.scheme) != inner:
                continue
            path = self.root / job.name / "predictions.csv"
            table = pd.read_csv(path, dtype={"subject": str})
            for field in self._FIELDS:
                if field != "fold":
                    table[field] = self._field(job, field)
            parts.append(table)
        if not parts:
            return pd.DataFrame(columns=PREDICTION_COLUMNS)
        return pd.concat(parts, ignore_index=True)

    def histories(self) -> pd.DataFrame:
        """Per-epoch training history of every job, with the job's fields (raises when one is unfinished)."""
        self._require_finished()
        parts = []
        for job in self.jobs:
            table = pd.read_csv(self.root / job.name / "history.csv")
            for field in self._FIELDS:
                table[field] = self._field(job, field)
            parts.append(table)
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def plan_sex(experiment: Experiment, transfer: TransferParams) -> list[Job]:
    """The sex arms on the HCP-like cohort (k-fold), every backbone of the experiment's training parameters,
    every hemisphere and metric."""
    cohort = transfer.sex_cohort
    if cohort is None:
        return []
    store = experiment.stores[cohort]
    jobs = []
    for arm in transfer.sex_arms:
        for backbone in experiment.train.backbones:
            for hemisphere in store.meta["hemispheres"]:
                for metric in store.meta["metrics"]:
                    jobs += experiment.add(cohort, arm, KFOLD, backbone, _direct_init(arm, backbone), hemisphere,
                                           metric)
    return jobs


def plan_autism(experiment: Experiment, transfer: TransferParams, cohorts: list[str]) -> list[Job]:
    """Stage-1 models (HCP-like cohort, all subjects) first, then the autism arms of ``cohorts``."""
    source = experiment.stores[transfer.sex_cohort].meta["metrics"] if transfer.sex_cohort in experiment.stores else []
    jobs = []
    for cohort in cohorts:
        meta = experiment.stores[cohort].meta
        schemes = [(KFOLD, arm) for arm in transfer.arms_for(cohort)]
        if transfer.site_out_cohorts is None or cohort in transfer.site_out_cohorts:
            schemes += [(SITE_OUT, arm) for arm in transfer.site_out_arms]
        for scheme, arm in schemes:
            for backbone in experiment.train.backbones:
                for hemisphere in meta["hemispheres"]:
                    for metric in meta["metrics"]:
                        if arm in STAGE1_INIT:
                            first = experiment.add(transfer.sex_cohort, f"stage1-{STAGE1_INIT[arm]}", ALL_SUBJECTS,
                                                   backbone, _direct_init(STAGE1_INIT[arm], backbone), hemisphere,
                                                   stage1_metric(metric, source, transfer.stage1_metrics))[0]
                            init = Init("checkpoint", experiment.model_path(first))
                        else:
                            init = _direct_init(arm, backbone)
                        jobs += experiment.add(cohort, arm, scheme, backbone, init, hemisphere, metric)
    # stage-1 jobs must run before the jobs that start from them
    experiment.jobs.sort(key=lambda job: job.scheme != ALL_SUBJECTS)
    return jobs


def plan_nested(experiment: Experiment) -> list[Job]:
    """The nested stacking scheme's inner models: for every planned k-fold job's (cohort, arm, backbone, init,
    image set) and outer fold k, one model per inner fold of k's training subjects (scheme ``inner<k>``,
    :func:`studylib.train.cv.inner_folds`): k (k - 1) more fits per image set (2 x 2 with two outer folds)."""
    added = []
    for job in [job for job in experiment.jobs if job.scheme == KFOLD]:
        added += experiment.add(job.cohort, job.arm, inner_scheme(job.fold), job.backbone, job.init, job.hemisphere,
                                job.metric)
    return added
