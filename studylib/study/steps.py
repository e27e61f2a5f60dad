"""What the training notebooks share, as one call: open the image stores, plan and run the arms, save the
predictions for stacking, and summarise them.

``04_train_sex`` and ``05_train_asd_2stage`` differ only in the task they pass to :func:`train_arms`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pandas as pd

from ..baselines.linear import image_reference
from ..data.cohort import Cohort
from ..evaluate.summaries import against_references, learning_curves, summarise
from ..images import open_stores
from ..storage import atomic_path
from ..train.cv import ALL_SUBJECTS, EVALUATED_SCHEMES, is_inner
from ..train.experiments import Experiment, plan_autism, plan_nested, plan_sex
from .notebook import StageContext

__all__ = ["TrainingRun", "bayes_ceilings", "linear_references", "train_arms"]

#: Groups of the per-image table; adding ``fold`` gives one row per model.
IMAGE_KEYS = ("cohort", "scheme", "arm", "backbone", "hemisphere", "metric")


@dataclass
class TrainingRun:
    """The outcome of one task's training arms.

    Attributes
    ----------
    experiment : Experiment
        The planned jobs (for filter variation and other per-model views).
    predictions : DataFrame
        Out-of-fold probabilities, one row per (model, test subject).
    per_image, per_model : DataFrame
        Accuracy, sensitivity, specificity and AUC per image (pooled over folds) and per model.
    histories, curves : DataFrame
        Per-epoch training loss of every model, and its mean over folds.
    reference : DataFrame
        Out-of-fold predictions of the linear reference (standardised pixels + logistic regression) on every
        k-fold image set, same folds as the networks.
    comparison : DataFrame
        Every arm's image-average accuracy beside the linear reference's and the Bayes ceiling
        (:func:`studylib.evaluate.summaries.against_references`).
    trained : int
        Models trained in this call (the rest were finished before).
    notes : list of str
        What a reader should know (skipped cohorts, nothing to train).
    """

    experiment: Experiment
    predictions: pd.DataFrame
    per_image: pd.DataFrame
    per_model: pd.DataFrame
    histories: pd.DataFrame
    curves: pd.DataFrame
    reference: pd.DataFrame
    comparison: pd.DataFrame
    trained: int
    notes: list[str] = field(default_factory=list)


def train_arms(stage: StageContext, task: Literal["sex", "autism"], *, progress: bool = True) -> TrainingRun:
    """Train (or reuse) every model of ``task``'s arms and save what later notebooks read.

    Sex: the arms of ``transfer.sex_arms`` on ``transfer.sex_cohort``. Autism: the stage-1 models and the arms of
    ``transfer.autism_arms`` (or the cohort's ``cohort_arms``) and ``site_out_arms`` on ``transfer.autism_cohorts``.
    The predictions go to ``stage.layout.predictions(task)``; the per-model, per-image and learning-curve tables to
    the stage's tables.

    Raises
    ------
    RuntimeError
        When the sex cohort has no images (it was skipped in ``01_preprocess``).
    """
    if task not in ("sex", "autism"):
        raise ValueError(f"task must be 'sex' or 'autism', not {task!r}")
    params, layout = stage.params, stage.layout
    transfer = params.transfer
    sex = [transfer.sex_cohort] if transfer.sex_cohort else []
    autism = transfer.autism_cohorts if task == "autism" else []
    stores, missing = open_stores({name: layout.image_store(name) for name in sex + autism})
    if transfer.sex_cohort in missing:
        raise RuntimeError(f"no images of the sex cohort {transfer.sex_cohort!r}: it was skipped in 01_preprocess "
                           "(see its QC table)")
    notes = [f"cohort {name!r} has no images (an optional cohort skipped in 01_preprocess): not trained"
             for name in missing]
    experiment = Experiment(layout.training_jobs(task), stores, params.train, params.seed, params.device,
                            executor=params.executor)
    if task == "sex":
        plan_sex(experiment, transfer)
        if transfer.sex_cohort is None:
            notes.append("transfer.sex_cohort is null: this parameter set trains no sex models")
    else:
        plan_autism(experiment, transfer, [name for name in autism if name in stores])
    inner = plan_nested(experiment) if params.stacking.nested else []
    stage1 = sum(job.scheme == ALL_SUBJECTS for job in experiment.jobs)
    notes.append(f"{len(experiment.jobs)} models" + (f" ({stage1} stage-1 on {transfer.sex_cohort})" if stage1 else "")
                 + f"; backbones {', '.join(params.train.backbones)}; on {experiment.device}; "
                 + ", ".join(f"{k} {v}" for k, v in experiment.executor.describe().items()))
    if inner:
        notes.append(f"{len(inner)} of them are the nested stacking scheme's inner models (stacking.nested)")
    trained = experiment.run(progress=progress)
    notes.append(experiment.run_summary(trained))
    predictions = experiment.predictions()
    with atomic_path(layout.predictions(task)) as partial:
        predictions.to_csv(partial, index=False)
    layout.inner_predictions(task).unlink(missing_ok=True)  # never stale: 06 reads it only when this run wrote it
    if inner:
        with atomic_path(layout.inner_predictions(task)) as partial:
            experiment.predictions(inner=True).to_csv(partial, index=False)
    per_model = summarise(predictions, by=(*IMAGE_KEYS, "fold")) if not predictions.empty else pd.DataFrame()
    per_image = summarise(predictions, by=IMAGE_KEYS) if not predictions.empty else pd.DataFrame()
    histories = experiment.histories()
    if not histories.empty:  # the inner models' curves would repeat the k-fold arms'
        histories = histories[~histories["scheme"].map(is_inner)]
    curves = learning_curves(histories) if not histories.empty else pd.DataFrame()
    reference = linear_references(experiment, progress=progress)
    with atomic_path(layout.reference_predictions(task)) as partial:
        reference.to_csv(partial, index=False)
    comparison = (against_references(predictions, reference, bayes_ceilings(layout, set(predictions["cohort"])))
                  if not predictions.empty else pd.DataFrame())
    for table, name in ((per_model, "per_model_metrics"), (per_image, "per_image_metrics"), (curves, "learning_curves"),
                        (comparison, "arms_vs_references")):
        if not table.empty:
            stage.save_table(table, name)
    return TrainingRun(experiment, predictions, per_image, per_model, histories, curves, reference, comparison,
                       trained, notes)


def linear_references(experiment: Experiment, *, progress: bool = True) -> pd.DataFrame:
    """The linear reference on every image set of every cohort and scheme (k-fold, leave-one-site-out) the experiment
    evaluates, on the very folds of its networks (:func:`studylib.baselines.linear.image_reference`)."""
    from ..progress import progress_bar

    evaluated = sorted({(job.cohort, job.scheme) for job in experiment.jobs if job.scheme in EVALUATED_SCHEMES})
    sets = [(cohort, scheme, h, m) for cohort, scheme in evaluated
            for h in experiment.stores[cohort].meta["hemispheres"] for m in experiment.stores[cohort].meta["metrics"]]
    parts = [image_reference(experiment.stores[cohort], h, m, experiment.folds(cohort, scheme), cohort=cohort,
                             scheme=scheme, seed=experiment.seed)
             for cohort, scheme, h, m in progress_bar(sets, desc="linear reference", unit="image set",
                                                      disable=not progress)]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def bayes_ceilings(layout, cohorts: set[str]) -> dict[str, float]:
    """The Bayes-optimal accuracy of each simulated cohort among ``cohorts`` (from its ground truth)."""
    ceilings = {}
    for name in cohorts:
        folder = layout.cohort(name)
        if (folder / "cohort.json").is_file() and Cohort(folder).has_truth:
            table = Cohort(folder).truth_table("bayes_accuracy")
            ceilings[name] = float(table.loc[table["site"] == "all", "bayes_accuracy"].iloc[0])
    return ceilings
