"""What ``07_ablation`` runs, as one call: the paper's Table 3, stacking x mix-up on one autism arm.

The arm's k-fold models of 05 (trained with mix-up) are retrained without mix-up -- same images, folds, seeds,
starting weights (for ``2-stage``, 05's stage-1 models, themselves trained with mix-up) and every other setting --
as idempotent jobs under ``layout.ablation_jobs``. Both sets are stacked by the primary method and by the mean
probability (the paper's "no stacking"), giving the four cells; each module's gain is tested pairwise on the same
subjects in both settings of the other module, Holm-adjusted across the page.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from ..evaluate.stacking import stack_predictions
from ..evaluate.uncertainty import compare, holm_adjusted, metric_intervals
from ..images import open_stores
from ..train.cv import KFOLD
from ..train.experiments import Experiment, plan_autism
from .notebook import StageContext

__all__ = ["AblationRun", "ablation_cohorts", "run_ablation"]


@dataclass
class AblationRun:
    """What ``07_ablation`` shows.

    Attributes
    ----------
    cells : DataFrame
        Accuracy, sensitivity, specificity and AUC with 95% intervals per (cohort, mix-up, stacking).
    gains : DataFrame
        Each module's gain in both settings of the other (paired tests, minimal detectable effects, Holm).
    stacked : DataFrame
        The stacked predictions behind the cells (column ``mixup``).
    trained : int
        Models trained in this call (the rest were finished before).
    notes : list of str
    """

    cells: pd.DataFrame
    gains: pd.DataFrame
    stacked: pd.DataFrame
    trained: int
    notes: list[str] = field(default_factory=list)


def ablation_cohorts(params) -> list[str]:
    """The autism cohorts of the ablation: ``ablation.cohorts``, or every autism cohort whose k-fold arms include
    ``ablation.arm``."""
    transfer = params.transfer
    if params.ablation.cohorts is not None:
        return list(params.ablation.cohorts)
    return [name for name in transfer.autism_cohorts if params.ablation.arm in transfer.arms_for(name)]


def run_ablation(stage: StageContext, *, progress: bool = True) -> AblationRun:
    """Train the ablation arm's no-mix-up models (or reuse them), stack both settings, and test each module's gain."""
    params, layout = stage.params, stage.layout
    arm, primary = params.ablation.arm, params.stacking.methods[0]
    notes: list[str] = []
    cohorts = ablation_cohorts(params)
    empty = pd.DataFrame()
    if params.train.mixup_epochs == 0:
        return AblationRun(empty, empty, empty, 0, ["train.mixup_epochs is 0: the study trains without mix-up, so "
                                                    "there is nothing to switch off"])
    names = [name for name in [params.transfer.sex_cohort, *cohorts] if name]
    stores, missing = open_stores({name: layout.image_store(name) for name in names})
    notes += [f"cohort {name!r} has no images: left out" for name in missing]
    cohorts = [name for name in cohorts if name in stores]
    if not cohorts:
        return AblationRun(empty, empty, empty, 0, notes + [f"no autism cohort with a {arm!r} k-fold arm to ablate"])
    # 05's plan names the models with mix-up (and the stage-1 models the arm starts from) ...
    with_mixup = Experiment(layout.training_jobs("autism"), stores, params.train, params.seed, params.device,
                            executor=params.executor)
    plan_autism(with_mixup, params.transfer, cohorts)
    chosen = [job for job in with_mixup.jobs if job.arm == arm and job.scheme == KFOLD and job.cohort in cohorts]
    unfinished = with_mixup.unfinished()
    if unfinished:
        raise RuntimeError(f"{len(unfinished)} models of 05_train_asd_2stage are not trained for the current "
                           f"parameters (first: {unfinished[0].name}); run 05 first")
    # ... and the same jobs without mix-up, starting from the same weights
    without = Experiment(layout.ablation_jobs, stores, params.train.model_copy(update={"mixup_epochs": 0}),
                         params.seed, params.device, executor=params.executor)
    for job in chosen:
        without.add(job.cohort, job.arm, job.scheme, job.backbone, job.init, job.hemisphere, job.metric)
    notes.append(f"{len(without.jobs)} models of the {arm!r} arm without mix-up on {', '.join(cohorts)}; "
                 + ", ".join(f"{k} {v}" for k, v in without.executor.describe().items()))
    trained = without.run(progress=progress)
    notes.append(without.run_summary(trained))
    selected = with_mixup.predictions()
    selected = selected[(selected["arm"] == arm) & (selected["scheme"] == KFOLD) & selected["cohort"].isin(cohorts)]
    predictions = pd.concat([selected.assign(mixup="on"), without.predictions().assign(mixup="off")],
                            ignore_index=True)
    methods = [primary] + (["mean"] if primary != "mean" else [])
    stacked = pd.concat([stack_predictions(group.drop(columns="mixup"), methods, grid=params.stacking.grid,
                                           inner_folds=params.stacking.inner_folds, seed=params.seed).assign(mixup=mixup)
                         for mixup, group in predictions.groupby("mixup", sort=False)], ignore_index=True)
    keys = ["cohort", "arm", "backbone"]
    cells = metric_intervals(stacked, [*keys, "mixup", "stacking"], n_resamples=params.stacking.n_bootstrap,
                             seed=params.seed)
    stacking_gain = compare(stacked, "stacking", [(primary, "mean")], [*keys, "mixup"]) if len(methods) > 1 \
        else pd.DataFrame()
    mixup_gain = compare(stacked, "mixup", [("on", "off")], [*keys, "stacking"])
    if not stacking_gain.empty:
        stacking_gain = stacking_gain.assign(module="stacking", setting="mix-up " + stacking_gain["mixup"])
    if not mixup_gain.empty:
        mixup_gain = mixup_gain.assign(module="mix-up", setting="stacking: " + mixup_gain["stacking"])
    gains = holm_adjusted(stacking_gain, mixup_gain)
    if not gains.empty:
        order = ["module", "setting", *keys, "first", "second"]
        gains = gains[order + [c for c in gains.columns if c not in order + ["mixup", "stacking"]]]
    for table, name in ((cells, "ablation_cells"), (gains, "ablation_gains")):
        if not table.empty:
            stage.save_table(table, name)
    return AblationRun(cells, gains, stacked, trained, notes)
