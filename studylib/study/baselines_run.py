"""What ``09_baselines`` runs, as one call: the baselines on the autism cohorts in the networks' k-fold folds, stacked
like the networks, beside the paper's Table 2 rows, and tested against the 2-stage arm on the same subjects.

So far the PCA + SVM baseline (:mod:`studylib.baselines.pca_svm`); the slice, 3D-volume and 3D-mesh CNNs are the
rest of issue 16.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from .. import paper
from ..baselines.linear import REFERENCE_ARM
from ..baselines.pca_svm import PCA_SVM_ARM, pca_svm_predictions
from ..data.cohort import Cohort
from ..evaluate.stacking import GROUP_KEYS, stack_predictions
from ..evaluate.uncertainty import compare, holm_adjusted, metric_intervals
from ..storage import atomic_path
from .notebook import StageContext
from .stack_run import beside_yardsticks

__all__ = ["BaselinesRun", "run_baselines", "table2_baselines", "verdicts"]

#: The network arms each baseline is compared with (the paper's best, and direct transfer).
COMPARED_ARMS = ("2-stage", "imagenet")


@dataclass
class BaselinesRun:
    """What ``09_baselines`` shows.

    Attributes
    ----------
    predictions : DataFrame
        Per-image out-of-fold predictions of the baselines (networks' long format).
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


def _folds(layout, cohort: str) -> pd.Series | None:
    """Subject -> fold of the networks' k-fold predictions of an autism cohort (05), or None."""
    path = layout.predictions("autism")
    if not path.is_file():
        return None
    table = pd.read_csv(path, dtype={"subject": str})
    table = table[(table["cohort"] == cohort) & (table["scheme"] == "kfold")]
    if table.empty:
        return None
    folds = table.drop_duplicates("subject").set_index("subject")["fold"]
    disagree = table.groupby("subject")["fold"].nunique()
    if (disagree > 1).any():
        raise ValueError(f"cohort {cohort}: the networks' predictions give subjects two folds: "
                         f"{disagree[disagree > 1].index[:5].tolist()}")
    return folds


def run_baselines(stage: StageContext, *, progress: bool = True) -> BaselinesRun:
    """PCA + SVM on every autism cohort with k-fold network predictions, stacked, beside the network arms."""
    params, layout = stage.params, stage.layout
    settings, stacking = params.baselines, params.stacking
    primary = stacking.methods[0]
    parts, notes = [], []
    for cohort in params.transfer.autism_cohorts:
        folds = _folds(layout, cohort)
        folder = layout.cohort(cohort)
        if folds is None or not (folder / "cohort.json").is_file():
            notes.append(f"cohort {cohort!r}: no k-fold network predictions (05) or no cohort: no baseline")
            continue
        parts.append(pca_svm_predictions(Cohort(folder), folds, cohort_name=cohort, variance=settings.pca_variance,
                                         cs=settings.svm_c, inner_folds=settings.inner_folds, seed=params.seed))
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
        networks = networks[(networks["task"] == "autism") & (networks["scheme"] == "kfold")
                            & networks["arm"].isin([*COMPARED_ARMS, REFERENCE_ARM])
                            & networks["cohort"].isin(set(predictions["cohort"]))]
        stacked = pd.concat([stacked, networks], ignore_index=True)
    else:
        notes.append("no stacked network predictions (06): the baselines stand alone")
    keys = ["task", *GROUP_KEYS]
    per_stack = beside_yardsticks(stage, metric_intervals(stacked, [*keys, "stacking"],
                                                          n_resamples=stacking.n_bootstrap, seed=params.seed))
    primary_rows = stacked[stacked["stacking"] == primary]
    pairs = [(arm, PCA_SVM_ARM) for arm in COMPARED_ARMS if arm in set(primary_rows["arm"])]
    parts = []
    for backbone in sorted(set(primary_rows.loc[primary_rows["arm"] != PCA_SVM_ARM, "backbone"])):
        # each network backbone against the baseline: one key for both
        rows = primary_rows[(primary_rows["backbone"] == backbone) | (primary_rows["arm"] == PCA_SVM_ARM)]
        result = compare(rows.assign(backbone=backbone), "arm", pairs, ["task", "cohort", "scheme", "backbone",
                                                                       "stacking"])
        parts.append(result)
    comparisons = holm_adjusted(*parts) if parts else pd.DataFrame()
    for table, name in ((per_stack, "stacked_metrics"), (comparisons, "paired_comparisons")):
        if not table.empty:
            stage.save_table(table, name)
    return BaselinesRun(predictions, stacked, per_stack, comparisons, primary, notes)


def table2_baselines(per_stack: pd.DataFrame, method: str) -> pd.DataFrame:
    """Our stacked baselines and compared arms (``method``) beside the paper's Table 2 rows of the same models, the
    linear reference and the Bayes ceiling."""
    reported = paper.results_table("asd")
    names = {PCA_SVM_ARM: "PCA+SVM"}
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
