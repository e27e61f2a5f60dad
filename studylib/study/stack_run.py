"""What ``06_stack`` runs, as one call: stack the saved per-image predictions of 04/05, put intervals on every
metric, test the paper's claims pairwise (Holm across the run), and check the stacking chain itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .. import paper
from ..baselines.linear import REFERENCE_ARM
from ..evaluate.confounds import head_size_adjusted
from ..evaluate.leakage import permutation_runs, stacking_optimism
from ..evaluate.stacking import GROUP_KEYS, stack_predictions
from ..evaluate.subgroups import gain_by_age, per_site_accuracy
from ..evaluate.uncertainty import compare, holm_adjusted, metric_intervals
from ..images import open_stores
from ..params import IMAGENET, TWO_STAGE
from ..storage import atomic_path
from ..train.cv import KFOLD, SITE_OUT
from .notebook import StageContext
from .steps import bayes_ceilings

__all__ = ["TASKS", "StackingRun", "beside_yardsticks", "read_inner_predictions", "read_predictions", "stack_arms"]

#: The tasks whose predictions 06 reads, in the order it shows them.
TASKS = ("sex", "autism")


@dataclass
class StackingRun:
    """What ``06_stack`` shows.

    Attributes
    ----------
    predictions : DataFrame
        Per-image out-of-fold predictions of both tasks (networks and the linear reference), column ``task`` added.
    stacked : DataFrame
        Stacked predictions, one row per (arm, method, subject), same long format.
    per_image, per_stack : DataFrame
        Accuracy, sensitivity, specificity and AUC with stratified bootstrap 95% intervals, per image and per
        stacked (arm, method).
    comparisons : DataFrame
        The paper's arm orderings (``paper.ARM_CLAIMS``) on the primary method's stacked predictions, and each arm's
        primary method against the mean probability (the stacking claim); exact McNemar, DeLong, minimal detectable
        effects, Holm across every row.
    optimism : dict or None
        Usual vs nested stacking with linear base models on the checks cohort (None when skipped).
    permutations : DataFrame
        The chain on permuted labels, one row per seed.
    per_site : DataFrame
        Leave-one-site-out predictions' accuracy per site (primary method).
    age : DataFrame
        The 2-stage gain over direct transfer inside and outside ``stacking.age_range``, and their interaction.
    head_size, head_size_tests : DataFrame
        Sex classifiers (k-fold, primary method) against intracranial volume: residualised and TIV-matched
        (:func:`studylib.evaluate.confounds.head_size_adjusted`), per (cohort, arm, backbone).
    notes : list of str
    """

    predictions: pd.DataFrame
    stacked: pd.DataFrame
    per_image: pd.DataFrame
    per_stack: pd.DataFrame
    comparisons: pd.DataFrame
    optimism: dict | None
    permutations: pd.DataFrame
    primary: str
    per_site: pd.DataFrame = field(default_factory=pd.DataFrame)
    age: pd.DataFrame = field(default_factory=pd.DataFrame)
    head_size: pd.DataFrame = field(default_factory=pd.DataFrame)
    head_size_tests: pd.DataFrame = field(default_factory=pd.DataFrame)
    notes: list[str] = field(default_factory=list)


def read_predictions(layout) -> tuple[pd.DataFrame, list[str]]:
    """Both tasks' per-image predictions and linear-reference predictions (what exists), with a ``task`` column, and
    notes on what is missing."""
    parts, notes = [], []
    for task in TASKS:
        for path in (layout.predictions(task), layout.reference_predictions(task)):
            if path.is_file():
                table = pd.read_csv(path, dtype={"subject": str})
                if not table.empty:
                    parts.append(table.assign(task=task))
            else:
                notes.append(f"no {path.name} for the {task} task (its training notebook trained nothing)")
    return (pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()), notes


def read_inner_predictions(layout) -> dict[str, pd.DataFrame]:
    """The nested stacking scheme's inner-model predictions per task (what 04/05 wrote)."""
    found = {}
    for task in TASKS:
        path = layout.inner_predictions(task)
        if path.is_file():
            found[task] = pd.read_csv(path, dtype={"subject": str})
    return found


def _checks(stage: StageContext, predictions: pd.DataFrame, primary: str, progress: bool):
    """Usual vs nested stacking and permutation runs with linear base models on the checks cohort."""
    stacking = stage.params.stacking
    cohort = stage.params.transfer.sex_cohort if stacking.checks_cohort is None else stacking.checks_cohort
    if not cohort:
        return None, pd.DataFrame(), ["stacking checks skipped (stacking.checks_cohort is empty)"]
    kfold = predictions[(predictions["cohort"] == cohort) & (predictions["scheme"] == KFOLD)]
    if kfold.empty:
        return None, pd.DataFrame(), [f"stacking checks skipped: no k-fold predictions of cohort {cohort!r}"]
    stores, missing = open_stores({cohort: stage.layout.image_store(cohort)})
    if missing:
        return None, pd.DataFrame(), [f"stacking checks skipped: no image store of cohort {cohort!r}"]
    store = stores[cohort]
    subjects = store.subjects["subject"].astype(str).to_numpy()
    fold_of = kfold.drop_duplicates("subject").set_index("subject")["fold"]
    absent = sorted(set(subjects) - set(fold_of.index))
    if absent:
        raise ValueError(f"cohort {cohort!r}: subjects of the image store without a k-fold prediction: {absent[:5]}")
    folds = fold_of.loc[subjects].to_numpy()
    labels = store.subjects["label"].to_numpy().astype(int)
    features = [np.asarray(store.images(h, m), dtype=np.float64).reshape(len(subjects), -1)
                for h in store.meta["hemispheres"] for m in store.meta["metrics"]]
    optimism = stacking_optimism(features, labels, folds, method=primary, grid=stacking.grid,
                                 inner_folds=stacking.inner_folds, seed=stage.params.seed,
                                 n_resamples=max(stacking.n_bootstrap, 1))
    optimism["cohort"] = cohort
    seeds = [stage.params.seed + 1 + number for number in range(stacking.permutations)]
    methods = [primary] + (["mean"] if primary != "mean" else [])
    permuted = permutation_runs(features, labels, len(np.unique(folds)), seeds, methods=methods,
                                nested=[primary] if primary not in ("mean", "vote") else [], grid=stacking.grid,
                                inner_folds=stacking.inner_folds, progress=progress).assign(cohort=cohort)
    return optimism, permuted, []


def _subgroups(stage: StageContext, stacked: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-site accuracy of the leave-one-site-out predictions, and the age analysis of the 2-stage gain over direct
    transfer (autism, k-fold), from the subjects' sites and ages in the image stores."""
    autism = stacked[stacked["task"] == "autism"]
    if autism.empty:
        return pd.DataFrame(), pd.DataFrame()
    stores, _ = open_stores({name: stage.layout.image_store(name) for name in sorted(set(autism["cohort"]))})
    subjects = pd.concat([store.subjects.assign(subject=store.subjects["subject"].astype(str))
                          for store in stores.values()], ignore_index=True).set_index("subject")
    site_out = autism[autism["scheme"] == SITE_OUT]
    per_site = per_site_accuracy(site_out, subjects["site"]) if not site_out.empty else pd.DataFrame()
    parts = []
    settings = stage.params.stacking
    for (cohort, backbone), group in autism[autism["scheme"] == KFOLD].groupby(["cohort", "backbone"]):
        arms = {arm: rows.set_index("subject") for arm, rows in group.groupby("arm")}
        if not {TWO_STAGE, IMAGENET} <= set(arms):
            continue
        first, second = arms[TWO_STAGE], arms[IMAGENET].loc[arms[TWO_STAGE].index]
        parts.append(gain_by_age(first["label"].to_numpy(), first["probability"].to_numpy(),
                                 second["probability"].to_numpy(), subjects.loc[first.index, "age"].to_numpy(),
                                 settings.age_range, settings.equivalence_margin)
                     .assign(cohort=cohort, backbone=backbone, comparison=f"{TWO_STAGE} - {IMAGENET}"))
    return per_site, (pd.concat(parts, ignore_index=True) if parts else pd.DataFrame())


def _head_size(stage: StageContext, stacked: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """The sex classifiers' k-fold stacked predictions against the subjects' intracranial volumes."""
    sex = stacked[(stacked["task"] == "sex") & (stacked["scheme"] == KFOLD)]
    if sex.empty:
        return pd.DataFrame(), pd.DataFrame(), []
    stores, _ = open_stores({name: stage.layout.image_store(name) for name in sorted(set(sex["cohort"]))})
    rows, tests, notes = [], [], []
    settings = stage.params.stacking
    for (cohort, arm, backbone), group in sex.groupby(["cohort", "arm", "backbone"], sort=True):
        subjects = stores[cohort].subjects.set_index("subject").loc[group["subject"].astype(str)]
        if "tiv" not in subjects or subjects["tiv"].notna().sum() < 10:
            notes.append(f"head-size analysis skipped for cohort {cohort!r}: its subjects have no intracranial volume")
            continue
        result = head_size_adjusted(group["label"].to_numpy(), group["probability"].to_numpy(),
                                    group["fold"].to_numpy(), subjects["tiv"].to_numpy(float),
                                    (subjects["sex"] == "female").to_numpy(), n_resamples=settings.n_bootstrap,
                                    seed=stage.params.seed)
        keys = {"cohort": cohort, "arm": arm, "backbone": backbone}
        rows.append(result["rows"].assign(**keys))
        tests.append(result["tests"].assign(**keys))
    if not rows:
        return pd.DataFrame(), pd.DataFrame(), sorted(set(notes))
    order = ["cohort", "arm", "backbone"]
    head, test = pd.concat(rows, ignore_index=True), pd.concat(tests, ignore_index=True)
    return (head[order + [c for c in head.columns if c not in order]],
            test[order + [c for c in test.columns if c not in order]], sorted(set(notes)))


def beside_yardsticks(stage: StageContext, per_stack: pd.DataFrame) -> pd.DataFrame:
    """Each stacked accuracy beside the linear reference's (same task, cohort, scheme and method) and the cohort's
    Bayes-optimal accuracy (simulated cohorts), with the fractions of both."""
    if per_stack.empty:
        return per_stack
    keys = ["task", "cohort", "scheme", "stacking"]
    reference = (per_stack[per_stack["arm"] == REFERENCE_ARM].set_index(keys)["accuracy"]
                 .rename("linear reference accuracy").reset_index())
    table = per_stack.merge(reference, on=keys, how="left")
    table["fraction of linear reference"] = table["accuracy"] / table["linear reference accuracy"]
    table["Bayes-optimal accuracy"] = table["cohort"].map(bayes_ceilings(stage.layout, set(table["cohort"])))
    table["fraction of Bayes ceiling"] = table["accuracy"] / table["Bayes-optimal accuracy"]
    return table


def stack_arms(stage: StageContext, *, progress: bool = True) -> StackingRun:
    """Stack every (task, cohort, scheme, arm, backbone) of 04/05's predictions by each ``stacking.methods``, with
    intervals, paired claims and the chain's checks; saves the stacked predictions (``layout.stacked_predictions``)
    and every table."""
    params, layout = stage.params, stage.layout
    stacking = params.stacking
    primary = stacking.methods[0]
    predictions, notes = read_predictions(layout)
    empty = pd.DataFrame()
    if predictions.empty:
        return StackingRun(predictions, empty, empty, empty, empty, None, empty, primary,
                           notes=notes + ["nothing to stack"])
    inner = read_inner_predictions(layout) if stacking.nested else {}
    if stacking.nested:
        notes.append("nested stacking (stacking.nested): each outer fold's meta-learner is fitted on base models "
                     "refitted inside its training subjects" + ("" if inner else "; but 04/05 wrote no inner "
                                                                "predictions: usual scheme everywhere"))
    stacked = pd.concat([stack_predictions(group.drop(columns="task"), stacking.methods, grid=stacking.grid,
                                           inner_folds=stacking.inner_folds, seed=params.seed,
                                           progress=progress, inner=inner.get(task)).assign(task=task)
                         for task, group in predictions.groupby("task", sort=False)], ignore_index=True)
    with atomic_path(layout.stacked_predictions) as partial:
        stacked.to_csv(partial, index=False)
    keys = ["task", *GROUP_KEYS]
    per_image = metric_intervals(predictions, [*keys, "hemisphere", "metric"], n_resamples=stacking.n_bootstrap,
                                 seed=params.seed)
    per_stack = beside_yardsticks(stage, metric_intervals(stacked, [*keys, "stacking"],
                                                           n_resamples=stacking.n_bootstrap, seed=params.seed))
    primary_rows = stacked[stacked["stacking"] == primary]
    arm_claims = pd.concat([compare(primary_rows[primary_rows["task"] == task], "arm", pairs,
                                    ["task", "cohort", "scheme", "backbone", "stacking"])
                            for task, pairs in paper.ARM_CLAIMS.items()], ignore_index=True)
    stacking_claims = (compare(stacked[stacked["arm"] != REFERENCE_ARM], "stacking", [(primary, "mean")], keys)
                       if primary != "mean" and "mean" in stacking.methods else pd.DataFrame())
    if not arm_claims.empty:
        arm_claims = arm_claims.assign(claim="arm ordering", arm="-",
                                       comparison=arm_claims["first"] + " > " + arm_claims["second"])
    if not stacking_claims.empty:
        stacking_claims = stacking_claims.assign(claim="stacking gain", stacking="-",
                                                 comparison=stacking_claims["first"] + " > " + stacking_claims["second"])
    comparisons = holm_adjusted(arm_claims, stacking_claims)
    if not comparisons.empty:
        order = ["claim", "task", "cohort", "scheme", "backbone", "arm", "stacking", "comparison"]
        comparisons = comparisons[order + [c for c in comparisons.columns if c not in order]]
    optimism, permutations, check_notes = _checks(stage, predictions, primary, progress)
    notes += check_notes
    per_site, age = _subgroups(stage, primary_rows)
    head_size, head_size_tests, head_notes = _head_size(stage, primary_rows)
    notes += head_notes
    for table, name in ((per_image, "per_image_metrics"), (per_stack, "stacked_metrics"),
                        (comparisons, "paired_comparisons"), (permutations, "permutation_runs"),
                        (per_site, "site_out_per_site"), (age, "age_analysis"), (head_size, "head_size"),
                        (head_size_tests, "head_size_tests")):
        if not table.empty:
            stage.save_table(table, name)
    if optimism is not None:
        stage.save_table(pd.DataFrame([{k: v for k, v in optimism.items() if not k.endswith("_probability")}]),
                         "stacking_optimism")
    return StackingRun(predictions, stacked, per_image, per_stack, comparisons, optimism, permutations, primary,
                       per_site, age, head_size, head_size_tests, notes)
