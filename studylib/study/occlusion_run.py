"""What ``08_occlusion`` runs, as one call: occlusion maps of the chosen arms' k-fold models, on the flat images and
on the cortex, per region beside the paper's regions, and scored against the planted truth of simulated cohorts.

Each test subject is occluded through its own out-of-fold model (the fold's model never saw it), so no training
subject enters a map. Per image set (cohort, arm, backbone, hemisphere, metric) the per-subject maps of every fold
are saved under ``layout.occlusion_maps`` with the job keys of the models they came from and the occlusion settings:
a re-run reuses them while both are unchanged (and recomputes them otherwise).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy import stats

from .. import paper
from ..data.cohort import Cohort
from ..data.templates import load_parcellation
from ..explain.occlusion import occlusion
from ..explain.recovery import (mean_map, paper_overlap, recovery, recovery_intervals, region_importance,
                                regional_effects, t_maps,
                                to_template, with_intervals)
from ..flatmaps import SubjectRasterizers, load_subject_maps
from ..geometry.flatten import FlatMap
from ..hashing import sha256_json
from ..images import ImageStore, open_stores
from ..params import OcclusionParams
from ..raster import Rasterizer
from ..storage import atomic_path
from ..train.cv import KFOLD
from ..train.experiments import Experiment, plan_autism, plan_sex
from ..train.jobs import Job, is_done
from ..train.models import Init, MetricNet, build_model
from .notebook import StageContext

__all__ = ["OcclusionRun", "OcclusionTask", "occlude_arms", "occlude_image_set"]

IMAGE_SET = ["task", "cohort", "arm", "backbone", "hemisphere", "metric"]


@dataclass
class OcclusionRun:
    """What ``08_occlusion`` shows.

    Attributes
    ----------
    maps : dict
        ``(task, cohort, arm, backbone, hemisphere, metric) -> {"probability": (H, W), "accuracy": (H, W),
        "vertices": (V,)}``: the group maps (mean over subjects) and the probability map on the template's vertices.
    t_maps : dict
        Same keys: the mean |Welch t| per pixel over the folds' training subjects, and on vertices.
    recovery : DataFrame
        Simulated cohorts: per image set and explainer (occlusion, t-map), AUC for the planted vertices and Spearman
        correlation with |planted effect|, with bootstrap 95% intervals.
    regions : DataFrame
        Mean occlusion importance per D-K region and image set, ranked within it.
    overlap : DataFrame
        Per (task, cohort): our top regions (averaged over image sets and hemispheres) against the paper's.
    speed : DataFrame
        Occluded images per second of each image set (computed this run).
    real_regions : DataFrame
        Semi-real cohorts (real regional values): per image set, the Spearman correlation over regions of occlusion
        importance with |Cohen's d| of the real regional values between the labels (all the cohort's subjects).
    subjects : DataFrame
        Every occluded subject with the fold of the model that occluded it.
    outlines : dict
        ``cohort -> {hemisphere: (H, W) D-K label image}`` for drawing region borders on the flat images.
    templates : dict
        ``cohort -> template name``.
    notes : list of str
    """

    maps: dict = field(default_factory=dict)
    t_maps: dict = field(default_factory=dict)
    recovery: pd.DataFrame = field(default_factory=pd.DataFrame)
    regions: pd.DataFrame = field(default_factory=pd.DataFrame)
    overlap: pd.DataFrame = field(default_factory=pd.DataFrame)
    speed: pd.DataFrame = field(default_factory=pd.DataFrame)
    subjects: pd.DataFrame = field(default_factory=pd.DataFrame)
    real_regions: pd.DataFrame = field(default_factory=pd.DataFrame)
    outlines: dict = field(default_factory=dict)
    templates: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _experiment(stage: StageContext, task: str) -> tuple[Experiment | None, list[str]]:
    """The training experiment of ``task`` as 04/05 planned it (jobs only; nothing is trained here)."""
    params, layout = stage.params, stage.layout
    transfer = params.transfer
    names = ([transfer.sex_cohort] if transfer.sex_cohort else []) + (transfer.autism_cohorts if task == "autism" else [])
    stores, missing = open_stores({name: layout.image_store(name) for name in names})
    if task == "sex" and transfer.sex_cohort in missing or not stores:
        return None, [f"no images for the {task} task"]
    experiment = Experiment(layout.training_jobs(task), stores, params.train, params.seed, params.device,
                            executor=params.executor)
    if task == "sex":
        plan_sex(experiment, transfer)
    else:
        plan_autism(experiment, transfer, [name for name in transfer.autism_cohorts if name in stores])
    return experiment, []


def _load_model(path: Path, backbone: str, device: str) -> MetricNet:
    state = torch.load(path, map_location="cpu", weights_only=True)
    return MetricNet.from_state(build_model(backbone, Init("scratch")), state).to(device).eval()


def _load(experiment: Experiment, job: Job, device: str) -> MetricNet:
    return _load_model(experiment.root / job.name / "model.pt", job.backbone, device)


def _subset(labels: np.ndarray, limit: int | None, seed: int) -> np.ndarray:
    """A seeded subset of at most ``limit`` rows keeping the labels' shares (all rows when ``limit`` is None)."""
    if limit is None or limit >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    chosen = []
    for value in np.unique(labels):
        rows = np.flatnonzero(labels == value)
        take = max(1, round(limit * len(rows) / len(labels)))
        chosen.append(rng.choice(rows, min(take, len(rows)), replace=False))
    return np.sort(np.concatenate(chosen))


@dataclass(frozen=True, eq=False)
class OcclusionTask:
    """One image set's occlusion through its fold models: small and picklable (paths, not arrays), so that the
    study's executor can run it in a worker process or as a Ray task (:func:`occlude_image_set`)."""

    name: str
    path: Path                   # the maps' file (``layout.occlusion_maps``)
    key: str                     # digest of the models' job keys, the occlusion settings and the seed
    models: tuple[Path, ...]     # one fold model each
    model_folds: tuple[int, ...]
    backbone: str
    store: Path
    hemisphere: str
    metric: str
    folds: np.ndarray
    settings: OcclusionParams
    seed: int
    device: str
    threads: int

    @property
    def folder(self) -> Path:
        return self.path.parent


def _occlusion_task(stage: StageContext, experiment: Experiment, jobs: list[Job], store: ImageStore, device: str,
                    keys: list[str] | None = None) -> OcclusionTask:
    settings = stage.params.occlusion
    job = jobs[0]
    identity = {"jobs": keys or [experiment.key(j) for j in jobs],
                "occlusion": settings.model_dump(mode="json", exclude={"n_bootstrap", "planted_fraction", "arms"}),
                "seed": stage.params.seed}
    return OcclusionTask(
        name=f"occlusion {job.cohort} {job.arm} {job.backbone} {job.image_set}",
        path=stage.layout.occlusion_maps / f"{job.cohort}_{job.arm}_{job.backbone}_{job.image_set}.npz",
        key=sha256_json(identity), models=tuple(experiment.root / j.name / "model.pt" for j in jobs),
        model_folds=tuple(j.fold for j in jobs), backbone=job.backbone, store=Path(store.path),
        hemisphere=job.hemisphere, metric=job.metric, folds=experiment.folds(job.cohort, job.scheme),
        settings=settings, seed=stage.params.seed, device=device, threads=stage.params.train.threads)


def _is_saved(task: OcclusionTask) -> bool:
    """Whether the task's maps are saved for its key (reads the key only)."""
    if not task.path.is_file():
        return False
    with np.load(task.path) as stored:
        return str(stored["key"]) == task.key


def _saved_maps(task: OcclusionTask) -> dict | None:
    """The maps saved for this task's key, or None."""
    if not _is_saved(task):
        return None
    with np.load(task.path) as stored:
        return {name: stored[name] for name in stored.files if name != "key"}


def occlude_image_set(task: OcclusionTask) -> float | None:
    """Occlude one image set's test subjects, each through its own fold model, and save the per-subject maps under
    ``task.path`` (written whole or not at all); return the occluded images per second (None: already saved).

    Runs with ``task.threads`` intra-op threads (``train.threads``), restored afterwards, so that the maps do not
    depend on which executor ran them.
    """
    if _is_saved(task):
        return None
    settings = task.settings
    before = torch.get_num_threads()
    torch.set_num_threads(task.threads)
    try:
        store = ImageStore(task.store)
        images = store.images(task.hemisphere, task.metric)
        labels = store.subjects["label"].to_numpy().astype(int)
        parts: dict[str, list] = {"probability": [], "accuracy": [], "row": [], "fold": []}
        seconds, copies = 0.0, 0
        for model, fold in zip(task.models, task.model_folds):
            test = np.flatnonzero(task.folds == fold)
            test = test[_subset(labels[test], settings.max_subjects and -(-settings.max_subjects // len(task.models)),
                                task.seed + fold)]
            net = _load_model(model, task.backbone, task.device)
            train = np.flatnonzero(task.folds != fold)
            fill = float(np.min(images[train])) if settings.occluder == "minimum" else net.mean.cpu().numpy()
            started = time.perf_counter()
            result = occlusion(net, np.asarray(images[test]), labels[test], patch=settings.patch,
                               stride=settings.stride, fill=fill, batch_size=settings.batch_size, device=task.device)
            seconds += time.perf_counter() - started
            copies += len(test) * len(result["positions"])
            parts["probability"].append(result["probability"].astype(np.float32))
            parts["accuracy"].append(result["accuracy"].astype(np.float32))
            parts["row"].append(test)
            parts["fold"].append(np.full(len(test), fold))
    finally:
        torch.set_num_threads(before)
    out = {name: np.concatenate(values) for name, values in parts.items()}
    task.path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(task.path) as partial:
        with open(partial, "wb") as handle:
            np.savez(handle, key=task.key, **out)
    return copies / seconds if seconds else None


def _occlude_set(stage: StageContext, experiment: Experiment, jobs: list[Job], store: ImageStore, device: str,
                 keys: list[str] | None = None) -> tuple[dict, float | None]:
    """Per-subject occlusion maps of one image set from its fold models (cached by the jobs' keys and settings), here
    in this process; returns the maps and the occluded images per second (None when they were saved before)."""
    task = _occlusion_task(stage, experiment, jobs, store, device, keys)
    rate = occlude_image_set(task)
    return _saved_maps(task), rate


def _rasterizer(stage: StageContext, store: ImageStore, hemisphere: str, cache: dict) -> tuple[Rasterizer, FlatMap]:
    template = store.meta["template"]
    if (template, hemisphere) not in cache:
        flat = FlatMap.load(stage.layout.flat_map(template, hemisphere))
        cache[template, hemisphere] = (Rasterizer(flat.uv, flat.faces, store.meta["size"],
                                                  method=store.meta["method"]), flat)
    return cache[template, hemisphere]


def _label_image(raster: Rasterizer, flat: FlatMap, labels: np.ndarray) -> np.ndarray:
    """The D-K label of each pixel: that of the vertex with the largest barycentric weight in its triangle."""
    corner = flat.faces[raster.pixel_triangle, np.argmax(raster.pixel_barycentric, axis=1)]
    return np.asarray(labels)[flat.vertex_index][corner].reshape(raster.shape)


def _truth(stage: StageContext, cohort: str, hemisphere: str, metric: str) -> np.ndarray | None:
    try:
        return Cohort(stage.layout.cohort(cohort)).truth(f"{hemisphere}_{metric}_effect")
    except (KeyError, FileNotFoundError):
        return None


def _paper_regions(task: str) -> list[str]:
    return [name for name, _ in paper.OCCLUSION_REGIONS[task]]


def occlude_arms(stage: StageContext, *, progress: bool = True) -> OcclusionRun:
    """Occlude every image set of ``occlusion.arms`` (k-fold models of 04/05), map the group maps to the cortex, rank
    regions, and score occlusion and the t-map against the planted truth of simulated cohorts."""
    from ..progress import progress_bar

    params, layout = stage.params, stage.layout
    settings = params.occlusion
    device = "cuda" if params.device in ("auto", "cuda") and torch.cuda.is_available() else "cpu"
    run = OcclusionRun()
    rasterizers: dict = {}
    own_maps: dict[tuple[str, str], SubjectRasterizers] = {}  # per (cohort, hemisphere): built once for all metrics
    recovery_rows, region_rows, speed_rows, subject_rows, real_rows = [], [], [], [], []
    plans = []
    for task in ("sex", "autism"):
        arms = settings.arms.get(task, [])
        if not arms:
            continue
        experiment, notes = _experiment(stage, task)
        run.notes += notes
        if experiment is None:
            continue
        chosen = [job for job in experiment.jobs if job.scheme == KFOLD and job.arm in arms]
        trained_arms = {job.arm for job in experiment.jobs if job.scheme == KFOLD}
        run.notes += [f"{task}: arm {arm!r} of occlusion.arms has no k-fold models in this parameter set (transfer "
                      f"section): nothing to occlude" for arm in arms if arm not in trained_arms]
        keys = {job: experiment.key(job) for job in chosen}  # each key digests the training code: compute once
        unfinished = [job for job in chosen if not is_done(experiment.root / job.name, keys[job])]
        if unfinished:
            trainer = "04_train_sex" if task == "sex" else "05_train_asd_2stage"
            raise RuntimeError(f"{len(unfinished)} models to occlude are not trained for the current parameters "
                               f"(first: {unfinished[0].name}); run {trainer}")
        groups: dict[tuple, list[Job]] = {}
        for job in chosen:
            groups.setdefault((job.cohort, job.arm, job.backbone, job.hemisphere, job.metric), []).append(job)
        for group, jobs in groups.items():
            jobs = sorted(jobs, key=lambda j: j.fold)
            plans.append((task, experiment, group, _occlusion_task(stage, experiment, jobs,
                                                                   experiment.stores[group[0]], device,
                                                                   [keys[j] for j in jobs])))
    # the occlusion itself: every image set not yet saved, through the study's executor (one unit each)
    pending = [plan[3] for plan in plans if not _is_saved(plan[3])]
    rates: dict[str, float | None] = {}
    if pending:
        executor = plans[0][1].executor
        bar = progress_bar(total=len(pending), unit="image set", disable=not progress, mininterval=15.0,
                           desc=f"occluding {len(pending)} image sets ({executor.describe()['executor']})")

        def done(index: int, rate: float | None) -> None:
            rates[pending[index].name] = rate
            bar.update(1)

        with bar:
            executor.run(pending, done, work=occlude_image_set, cpus=params.train.threads, gpu=True)
        run.notes.append(f"{len(pending)} image sets were occluded by the study's executor ("
                         + ", ".join(f"{k} {v}" for k, v in executor.describe().items() if v not in ([], None))
                         + f"), {params.train.threads} thread(s) each; {len(plans) - len(pending)} were saved before.")
    for task, experiment, (cohort, arm, backbone, hemisphere, metric), occlusion_task in progress_bar(
            plans, desc="maps to the cortex, regions, recovery", unit="image set", disable=not progress):
        store = experiment.stores[cohort]
        result, rate = _saved_maps(occlusion_task), rates.get(occlusion_task.name)
        if result is None:
            raise RuntimeError(f"{occlusion_task.name}: the executor finished without saving its maps "
                               f"({occlusion_task.path})")
        key = (task, cohort, arm, backbone, hemisphere, metric)
        subjects = store.subjects
        rows = result["row"]
        labels = subjects["label"].to_numpy().astype(int)
        subject_rows.append(pd.DataFrame({"task": task, "cohort": cohort, "arm": arm, "backbone": backbone,
                                          "hemisphere": hemisphere, "metric": metric,
                                          "subject": subjects["subject"].astype(str).to_numpy()[rows],
                                          "fold": result["fold"]}))
        if rate is not None:
            speed_rows.append({**dict(zip(IMAGE_SET, key)), "occluded images per s": rate, "device": device,
                               "threads": params.train.threads})
        raster, flat = _rasterizer(stage, store, hemisphere, rasterizers)
        parcels = load_parcellation("dk", store.meta["template"])
        n_vertices = len(parcels.labels[hemisphere])
        run.templates[cohort] = store.meta["template"]
        run.outlines.setdefault(cohort, {})[hemisphere] = _label_image(raster, flat, parcels.labels[hemisphere])
        if store.meta.get("flatten_mode") == "per-subject":  # each subject's map back to the template's vertices
            if (cohort, hemisphere) not in own_maps:  # the occluded subjects' rasterizers, kept for every metric
                own_maps[cohort, hemisphere] = SubjectRasterizers(
                    load_subject_maps(Cohort(layout.cohort(cohort)), hemisphere, layout.subject_flat_map),
                    store.meta["size"], store.meta["method"], keep=max(len(rows), 1))
            per_subject = own_maps[cohort, hemisphere].to_template(rows, result["probability"], n_vertices)
            note = (f"{cohort}: images through each subject's own flat map; occlusion maps go back to the "
                    "template's vertices through each subject's map before averaging, the pixel-wise |t| map "
                    "through the template's map (pixels of different subjects line up only approximately)")
            if note not in run.notes:
                run.notes.append(note)
        else:
            per_subject = to_template(raster, flat.vertex_index, result["probability"], n_vertices)
        folds = experiment.folds(cohort, KFOLD)
        images = np.asarray(store.images(hemisphere, metric))
        t_pixels = t_maps(images, labels, folds)
        run.maps[key] = {"probability": result["probability"].mean(axis=0),
                         "accuracy": result["accuracy"].mean(axis=0),
                         "vertices": mean_map(per_subject)}
        run.t_maps[key] = {"pixels": t_pixels,
                           "vertices": to_template(raster, flat.vertex_index, t_pixels[None], n_vertices)[0]}
        cortical = {k: v for k, v in parcels.names.items() if not v.endswith("corpuscallosum")}  # medial wall
        ranked = region_importance(run.maps[key]["vertices"], np.asarray(parcels.labels[hemisphere]), cortical)
        region_rows.append(pd.DataFrame({**dict(zip(IMAGE_SET, key)), "region": ranked.index,
                                         "importance": ranked.to_numpy(), "rank": np.arange(1, len(ranked) + 1)}))
        effect = _truth(stage, cohort, hemisphere, metric)
        if effect is None:  # real values (semi-real, user data): rank regions against the real regional d's
            real = Cohort(layout.cohort(cohort))
            if real.meta.get("source") == "semi-real" and metric in real.metrics:
                row_of = {s: i for i, s in enumerate(real.subjects["subject"].astype(str))}
                in_store = [row_of[s] for s in subjects["subject"].astype(str)]
                d = regional_effects(np.asarray(real.maps(hemisphere, metric))[in_store],
                                     np.asarray(parcels.labels[hemisphere]), labels,
                                     {k: v for k, v in parcels.names.items() if v in ranked.index})
                both = pd.concat([ranked.rename("importance"), d.abs().rename("|d|")], axis=1).dropna()
                test = stats.spearmanr(both["importance"], both["|d|"])
                real_rows.append({**dict(zip(IMAGE_SET, key)), "regions": len(both),
                                  "spearman (importance, |real d|)": float(test.statistic), "p": float(test.pvalue),
                                  "largest |d|": float(both["|d|"].max())})
            continue
        if not np.nanmax(np.abs(effect)) > 0:
            continue
        occluded = recovery_intervals(per_subject, labels[rows], effect, fraction=settings.planted_fraction,
                                      n_resamples=settings.n_bootstrap, seed=params.seed)
        # the t-map's interval: its own stratified resamples of subjects (same folds), each scored
        resampled = t_maps(images, labels, folds, n_resamples=settings.n_bootstrap, seed=params.seed)
        draws = [recovery(v, effect, settings.planted_fraction)
                 for v in to_template(raster, flat.vertex_index, resampled, n_vertices)]
        point = with_intervals(recovery(run.t_maps[key]["vertices"], effect, settings.planted_fraction), draws)
        recovery_rows += [{**dict(zip(IMAGE_SET, key)), "explainer": "occlusion (probability drop)",
                           "subjects": len(rows), **occluded},
                          {**dict(zip(IMAGE_SET, key)), "explainer": "|t| map (training subjects of each fold)",
                           "subjects": len(labels), **point}]
    run.recovery = pd.DataFrame(recovery_rows)
    run.real_regions = pd.DataFrame(real_rows)
    run.regions = pd.concat(region_rows, ignore_index=True) if region_rows else pd.DataFrame()
    run.subjects = pd.concat(subject_rows, ignore_index=True) if subject_rows else pd.DataFrame()
    run.speed = pd.DataFrame(speed_rows)
    run.overlap = _overlap(run.regions)
    for table, name in ((run.recovery, "recovery"), (run.regions, "region_importance"), (run.overlap, "paper_overlap"),
                        (run.speed, "speed"), (run.real_regions, "real_regional_effects")):
        if not table.empty:
            stage.save_table(table, name)
    return run


def _overlap(regions: pd.DataFrame) -> pd.DataFrame:
    """Per (task, cohort, arm, backbone): regions ranked by importance averaged over image sets and hemispheres,
    the top ones against the paper's (hemisphere-free names; 34 D-K regions)."""
    if regions.empty:
        return pd.DataFrame()
    rows = []
    for (task, cohort, arm, backbone), group in regions.groupby(["task", "cohort", "arm", "backbone"]):
        names = group["region"].str.replace(r"^[LR]_", "", regex=True)
        # rank within each image set first, so that metrics with large drops do not dominate
        scaled = group["importance"] / group.groupby(["hemisphere", "metric"])["importance"].transform(
            lambda x: x.abs().max() or 1.0)
        ranked = scaled.groupby(names).mean().sort_values(ascending=False)
        named = _paper_regions(task)
        rows.append({"task": task, "cohort": cohort, "arm": arm, "backbone": backbone,
                     "our top regions": ", ".join(ranked.index[: len(named)]),
                     "paper's regions": ", ".join(named),
                     **paper_overlap(list(ranked.index), named, population=34)})
    return pd.DataFrame(rows)


#: The paper's occlusion workload for one arm and one backbone: positions of a 30 px square with stride 4 on 224 px
#: (49 x 49), times the test images (sex: 1113 HCP subjects x 4 metrics x 2 hemispheres; autism: 1994 ABIDE
#: subjects x 3 metrics x 2 hemispheres).
PAPER_COPIES = {"sex": 49 * 49 * 1113 * 8, "autism": 49 * 49 * 1994 * 6}


def paper_projection(speed: pd.DataFrame, image_size: int) -> pd.DataFrame:
    """Hours the paper's occlusion workload (:data:`PAPER_COPIES`, one arm and backbone per task) would take at the
    measured rate, scaled to 224 px by the pixel count (the networks' cost grows about with it)."""
    if speed.empty:
        return pd.DataFrame()
    rows = []
    for (device, backbone), group in speed.groupby(["device", "backbone"]):
        rate = float(group["occluded images per s"].median()) * (image_size / 224) ** 2
        for task, copies in PAPER_COPIES.items():
            rows.append({"device": device, "backbone": backbone, "task": task, "occluded copies": copies,
                         f"measured rate at {image_size} px (median, /s)": float(group["occluded images per s"].median()),
                         "projected rate at 224 px (/s)": rate, "projected hours": copies / rate / 3600})
    return pd.DataFrame(rows)


def metric_mean(run: OcclusionRun, task: str, cohort: str, arm: str, backbone: str) -> dict[str, np.ndarray]:
    """Per hemisphere, the vertex maps of every metric of an arm, each divided by its largest |value|, averaged."""
    out = {}
    for hemisphere in ("left", "right"):
        maps = [value["vertices"] / (np.nanmax(np.abs(value["vertices"])) or 1.0)
                for key, value in run.maps.items() if key[:4] == (task, cohort, arm, backbone) and key[4] == hemisphere]
        if maps:
            stacked = np.stack(maps)
            known = np.isfinite(stacked).any(axis=0)  # off the cortex: NaN, quietly
            out[hemisphere] = np.full(stacked.shape[1], np.nan)
            out[hemisphere][known] = np.nanmean(stacked[:, known], axis=0)
    return out


def recovery_verdict(recovery: pd.DataFrame) -> pd.DataFrame:
    """Per (task, cohort, arm, backbone): image sets where occlusion's recovery AUC is above the t-map's (and how
    many with disjoint 95% intervals either way), and both explainers' median AUC."""
    if recovery.empty:
        return pd.DataFrame()
    rows = []
    keys = ["task", "cohort", "arm", "backbone"]
    for group_keys, group in recovery.groupby(keys):
        occlusion_rows = group[group["explainer"].str.startswith("occlusion")].set_index(["hemisphere", "metric"])
        t_rows = group[group["explainer"].str.startswith("|t|")].set_index(["hemisphere", "metric"])
        both = occlusion_rows.merge(t_rows, left_index=True, right_index=True, suffixes=(" occlusion", " t-map"))
        rows.append({**dict(zip(keys, group_keys)), "image sets": len(both),
                     "occlusion AUC above t-map's": int((both["auc occlusion"] > both["auc t-map"]).sum()),
                     "occlusion clearly better (intervals apart)":
                         int((both["auc low occlusion"] > both["auc high t-map"]).sum()),
                     "t-map clearly better (intervals apart)":
                         int((both["auc low t-map"] > both["auc high occlusion"]).sum()),
                     "median AUC occlusion": float(both["auc occlusion"].median()),
                     "median AUC t-map": float(both["auc t-map"].median())})
    return pd.DataFrame(rows)
