"""What ``09_baselines`` runs, as one call: the baselines on the autism cohorts in the networks' k-fold folds, stacked
like the networks, beside the paper's Table 2 rows, and tested against the 2-stage arm on the same subjects.

The baselines (``baselines.arms``): PCA + SVM (:mod:`studylib.baselines.pca_svm`), and the slice, 3D-volume and
3D-mesh networks (:mod:`studylib.baselines.networks`) on each cohort's volume store
(:func:`studylib.baselines.volumes.build_volume_store`), trained as jobs under ``layout.baseline_jobs`` through the
study's executor.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .. import paper
from ..baselines.linear import REFERENCE_ARM
from ..baselines.networks import MESH_ARM, NETWORK_BASELINES, SLICE_ARM, VOLUME_ARM, check_same_folds, plan_baselines
from ..baselines.pca_svm import PCA_SVM_ARM, pca_svm_predictions
from ..baselines.volumes import build_volume_store, freesurfer_ribbons
from ..data.cohort import Cohort
from ..params import IMAGENET, TWO_STAGE
from ..train.cv import KFOLD
from ..train.experiments import Experiment
from ..evaluate.stacking import GROUP_KEYS, stack_predictions
from ..evaluate.uncertainty import compare, holm_adjusted, metric_intervals
from ..storage import atomic_path
from .notebook import StageContext
from .stack_run import beside_yardsticks

__all__ = ["BASELINE_ARMS", "BaselinesRun", "input_panels", "run_baselines", "surface_distance_verdicts",
           "table2_baselines", "training_summary", "verdicts"]

#: The network arms each baseline is compared with (the paper's best, and direct transfer).
COMPARED_ARMS = (TWO_STAGE, IMAGENET)
#: Every baseline, in Table 2's order (the paper's name of each: ``paper.BASELINE_MODELS``).
BASELINE_ARMS = (PCA_SVM_ARM, SLICE_ARM, VOLUME_ARM, MESH_ARM)
#: The baselines that measure distance in 3D space (the paper's "Euclidean distance").
EUCLIDEAN_ARMS = (SLICE_ARM, VOLUME_ARM, MESH_ARM)


@dataclass
class BaselinesRun:
    """What ``09_baselines`` shows.

    Attributes
    ----------
    predictions : DataFrame
        Per-image out-of-fold predictions of the baselines (networks' long format).
    stores : dict
        ``{cohort: ImageStore}`` of the volume stores the network baselines trained on.
    histories : DataFrame
        Per-epoch training history of every network baseline's job.
    simulated : set of str
        The compared cohorts that are simulated (their surface-distance verdict is judged first on the 3D mesh).
    stacked : DataFrame
        The baselines stacked by every ``stacking.methods``, and the compared network arms' stacked predictions (06).
    per_stack : DataFrame
        Accuracy, sensitivity, specificity and AUC with bootstrap 95% intervals per (cohort, arm, stacking), beside
        the linear reference's accuracy and the Bayes ceiling (simulated cohorts).
    comparisons : DataFrame
        Each compared network arm against each baseline on the same subjects (primary stacking method): exact
        McNemar, DeLong, minimal detectable effects, Holm across the page.
    notes : list of str
    """

    predictions: pd.DataFrame
    stacked: pd.DataFrame
    per_stack: pd.DataFrame
    comparisons: pd.DataFrame
    primary: str
    notes: list[str] = field(default_factory=list)
    stores: dict = field(default_factory=dict)
    histories: pd.DataFrame = field(default_factory=pd.DataFrame)
    simulated: set = field(default_factory=set)


def _folds(layout, cohort: str) -> pd.Series | None:
    """Subject -> fold of the networks' k-fold predictions of an autism cohort (05), or None."""
    path = layout.predictions("autism")
    if not path.is_file():
        return None
    table = pd.read_csv(path, dtype={"subject": str})
    table = table[(table["cohort"] == cohort) & (table["scheme"] == KFOLD)]
    if table.empty:
        return None
    folds = table.drop_duplicates("subject").set_index("subject")["fold"]
    disagree = table.groupby("subject")["fold"].nunique()
    if (disagree > 1).any():
        raise ValueError(f"cohort {cohort}: the networks' predictions give subjects two folds: "
                         f"{disagree[disagree > 1].index[:5].tolist()}")
    return folds


def run_baselines(stage: StageContext, *, progress: bool = True) -> BaselinesRun:
    """Every baseline of ``baselines.arms`` on every autism cohort with k-fold network predictions, stacked, beside
    the network arms, with paired tests."""
    params, layout = stage.params, stage.layout
    settings, stacking = params.baselines, params.stacking
    primary = stacking.methods[0]
    networks = [arm for arm in settings.arms if arm in NETWORK_BASELINES]
    slice_backbone = settings.slice_backbone or params.train.backbones[0]
    parts, notes, stores, folds_of, simulated = [], [], {}, {}, set()
    for cohort in params.transfer.autism_cohorts:
        folds = _folds(layout, cohort)
        folder = layout.cohort(cohort)
        if folds is None or not (folder / "cohort.json").is_file():
            notes.append(f"cohort {cohort!r}: no k-fold network predictions (05) or no cohort: no baseline")
            continue
        data = Cohort(folder)
        if data.meta.get("source") == "simulated":
            simulated.add(cohort)
        if PCA_SVM_ARM in settings.arms:
            parts.append(pca_svm_predictions(data, folds, cohort_name=cohort, variance=settings.pca_variance,
                                             cs=settings.svm_c, inner_folds=settings.inner_folds, seed=params.seed))
        if networks:
            spec = params.cohorts.get(cohort)
            real = freesurfer_ribbons(spec, data.subjects["subject"], cache=layout.cohort_cache) \
                if spec is not None and spec.source == "freesurfer" else None
            stores[cohort] = build_volume_store(data, layout.baseline_store(cohort), voxel=settings.voxel_size,
                                                slices_per_direction=settings.slices_per_direction,
                                                image_size=params.raster.image_size, dtype=params.raster.dtype,
                                                progress=progress, real_ribbons=real)
            notes += [f"cohort {cohort!r}: {note}" for note in stores[cohort].meta["notes"]]
            folds_of[cohort] = folds
    histories = pd.DataFrame()
    if stores:
        experiment = Experiment(layout.baseline_jobs, stores, params.train, params.seed, params.device,
                                params.executor)
        for cohort, store in stores.items():
            check_same_folds(experiment, cohort, folds_of[cohort])
            plan_baselines(experiment, cohort, store, networks, slice_backbone=slice_backbone,
                           volume_backbone=settings.volume_backbone)
        notes.append("baseline networks: " + experiment.run_summary(experiment.run(progress=progress)))
        parts.append(experiment.predictions())
        histories = experiment.histories()
    empty = pd.DataFrame()
    if not parts:
        return BaselinesRun(empty, empty, empty, empty, primary, notes + ["nothing to compare"])
    predictions = pd.concat(parts, ignore_index=True)
    layout.baseline_predictions.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(layout.baseline_predictions) as partial:
        predictions.to_csv(partial, index=False)
    stacked = stack_predictions(predictions, stacking.methods, grid=stacking.grid, inner_folds=stacking.inner_folds,
                                seed=params.seed, progress=progress).assign(task="autism")
    if layout.stacked_predictions.is_file():
        networks = pd.read_csv(layout.stacked_predictions, dtype={"subject": str})
        networks = networks[(networks["task"] == "autism") & (networks["scheme"] == KFOLD)
                            & networks["arm"].isin([*COMPARED_ARMS, REFERENCE_ARM])
                            & networks["cohort"].isin(set(predictions["cohort"]))]
        stacked = pd.concat([stacked, networks], ignore_index=True)
    else:
        notes.append("no stacked network predictions (06): the baselines stand alone")
    keys = ["task", *GROUP_KEYS]
    per_stack = beside_yardsticks(stage, metric_intervals(stacked, [*keys, "stacking"],
                                                          n_resamples=stacking.n_bootstrap, seed=params.seed))
    primary_rows = stacked[stacked["stacking"] == primary]
    present = [arm for arm in BASELINE_ARMS if arm in set(primary_rows["arm"])]
    pairs = [(arm, baseline) for arm in COMPARED_ARMS if arm in set(primary_rows["arm"]) for baseline in present]
    is_baseline = primary_rows["arm"].isin(BASELINE_ARMS)
    parts = []
    for backbone in sorted(set(primary_rows.loc[~is_baseline & (primary_rows["arm"] != REFERENCE_ARM), "backbone"])):
        # each network backbone against every baseline (whatever the baseline's own model): one key for both
        rows = primary_rows[((primary_rows["backbone"] == backbone) & ~is_baseline) | is_baseline]
        result = compare(rows.assign(backbone=backbone), "arm", pairs, ["task", "cohort", "scheme", "backbone",
                                                                       "stacking"])
        parts.append(result)
    comparisons = holm_adjusted(*parts) if parts else pd.DataFrame()
    for table, name in ((per_stack, "stacked_metrics"), (comparisons, "paired_comparisons")):
        if not table.empty:
            stage.save_table(table, name)
    return BaselinesRun(predictions, stacked, per_stack, comparisons, primary, notes, stores, histories, simulated)


def table2_baselines(per_stack: pd.DataFrame, method: str) -> pd.DataFrame:
    """Our stacked baselines and compared arms (``method``) beside the paper's Table 2 rows of the same models, the
    linear reference and the Bayes ceiling."""
    reported = paper.results_table("asd")
    names = paper.BASELINE_MODELS
    ours = per_stack[per_stack["stacking"] == method]
    rows = []
    for _, row in ours.iterrows():
        entry = {"cohort": row["cohort"], "model": row["arm"], "backbone": row["backbone"], "subjects": row["subjects"]}
        for metric in ("accuracy", "sensitivity", "specificity", "auc"):
            scale = 1 if metric == "auc" else 100
            label = metric + ("" if metric == "auc" else " (%)")
            entry[label] = round(row[metric] * scale, 3)
            entry[f"{label} 95% CI"] = f"{row[f'{metric} low'] * scale:.{3 if metric == 'auc' else 1}f}–" \
                                       f"{row[f'{metric} high'] * scale:.{3 if metric == 'auc' else 1}f}"
        if row["arm"] in names:
            match = reported[reported["model"] == names[row["arm"]]]
        else:
            match = reported[(reported["arm"] == row["arm"]) & (reported["cv"] == "10-fold")
                             & reported["model"].isin(["DenseNet-121"])]
        for metric in ("accuracy", "sensitivity", "specificity", "auc"):
            label = metric + ("" if metric == "auc" else " (%)")
            entry[f"paper {label}"] = float(match[metric].iloc[0]) if len(match) else float("nan")
        for column in ("linear reference accuracy", "fraction of linear reference", "Bayes-optimal accuracy"):
            if column in row:
                entry[column] = row[column]
        rows.append(entry)
    return pd.DataFrame(rows)


def verdicts(comparisons: pd.DataFrame) -> list[str]:
    """One sentence per paired comparison of a network arm with a baseline (DeLong, Holm-adjusted, 5%)."""
    out = []
    for row in comparisons.to_dict("records"):
        significant = row["delong p (Holm)"] < 0.05
        verdict = ("not distinguishable" if not significant else
                   "better, significantly" if row["auc difference"] > 0 else "worse, significantly")
        out.append(f"{row['cohort']}: {row['first']} vs {row['second']}: AUC {row['auc difference']:+.3f} "
                   f"(MDE {row['auc MDE']:.3f}), {verdict} at n = {row['subjects']}")
    return out


def surface_distance_verdicts(comparisons: pd.DataFrame, simulated: set[str] = frozenset()) -> list[str]:
    """Whether the paper's core claim holds per cohort: the flat map's surface distance (the 2-stage arm) beats the
    baselines that measure Euclidean distance (slice, 3D volume, 3D mesh), by DeLong's test with Holm's adjustment.

    On ``simulated`` cohorts the 3D-mesh baseline is the first judge: it is the only Euclidean baseline that sees
    every metric (synthetic volumes share the template's folding, so they carry thickness and myelin only).
    """
    out = []
    if comparisons.empty:
        return out
    rows = comparisons[(comparisons["first"] == TWO_STAGE) & comparisons["second"].isin(EUCLIDEAN_ARMS)]
    for (cohort, backbone), group in rows.groupby(["cohort", "backbone"]):
        better = group[(group["delong p (Holm)"] < 0.05) & (group["auc difference"] > 0)]["second"].tolist()
        worse = group[(group["delong p (Holm)"] < 0.05) & (group["auc difference"] < 0)]["second"].tolist()
        tested = group["second"].tolist()
        if worse:
            verdict = f"contradicted: {', '.join(worse)} significantly better than the flat map"
        elif len(better) == len(tested):
            verdict = "holds: the flat map significantly better than every Euclidean baseline"
        elif better:
            verdict = (f"partly: significantly better than {', '.join(better)}; not distinguishable from "
                       f"{', '.join(sorted(set(tested) - set(better)))}")
        else:
            verdict = "not shown: no Euclidean baseline is distinguishable from the flat map at this n"
        if cohort in simulated and MESH_ARM in tested:
            mesh = group[group["second"] == MESH_ARM].iloc[0]
            verdict += (f"; against the 3D mesh (the judge on a simulated cohort): AUC {mesh['auc difference']:+.3f}, "
                        f"Holm p {mesh['delong p (Holm)']:.3g}")
        out.append(f"{cohort} ({backbone}, 2-stage vs {', '.join(tested)}): {verdict}")
    return out


def input_panels(store, row: int = 0) -> list[tuple[str, np.ndarray]]:
    """What the network baselines see for one subject (``row`` of a volume store): every slice, and the middle axial
    plane of the ribbon volume and of each metric grid (x to the right, front up)."""
    panels = []
    for hemisphere, metric, arm in store.meta["sets"].values():
        data = np.asarray(store.images(hemisphere, metric)[row], dtype=np.float32)
        if data.ndim == 3:
            panels.append((f"{arm}: {metric} (axial plane {data.shape[2] // 2})", data[:, :, data.shape[2] // 2].T[::-1]))
        else:
            panels.append((f"{arm}: {hemisphere}", data.T[::-1]))
    return panels


def training_summary(histories: pd.DataFrame) -> pd.DataFrame:
    """Per baseline arm and image set: the training loss of the first and last epochs (mean over folds), so that a
    reader sees whether a network fitted its training subjects at all."""
    if histories.empty:
        return pd.DataFrame()
    keys = ["cohort", "arm", "backbone", "hemisphere", "metric"]
    first = histories[histories["epoch"] == 0].groupby(keys)["loss"].mean().rename("first-epoch loss")
    last = histories[histories["epoch"] == histories["epoch"].max()].groupby(keys)["loss"].mean()
    seconds = histories.groupby(keys)["seconds"].sum() / histories.groupby(keys)["fold"].nunique()
    return pd.concat([first, last.rename("last-epoch loss"), seconds.rename("seconds per model")], axis=1).round(3)\
        .reset_index()
