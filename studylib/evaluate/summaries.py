"""Tables of classification results: per image and per model, averaged over images, learning curves, and
each arm beside the paper's number.

They read the out-of-fold predictions of :meth:`studylib.train.experiments.Experiment.predictions` (one row per
model and test subject) and its training histories.
"""

from __future__ import annotations

import pandas as pd

from .. import paper
from ..train.cv import KFOLD, SITE_OUT
from .metrics import classification_metrics

__all__ = ["REFERENCE_VIEW", "against_references", "arms_vs_paper", "average_over_images", "learning_curves",
           "stacked_vs_paper", "summarise",
           "wilson_interval"]


def summarise(predictions: pd.DataFrame, by: tuple[str, ...] = ("cohort", "scheme", "arm", "backbone",
                                                                  "hemisphere", "metric")) -> pd.DataFrame:
    """Accuracy, sensitivity, specificity and AUC of the pooled out-of-fold predictions per group
    (``fold`` in ``by`` gives one row per model)."""
    rows = []
    for keys, group in predictions.groupby(list(by), sort=True):
        scores = classification_metrics(group["label"].to_numpy(), group["probability"].to_numpy())
        rows.append({**dict(zip(by, keys)), "subjects": len(group), **scores})
    return pd.DataFrame(rows)


def learning_curves(histories: pd.DataFrame) -> pd.DataFrame:
    """Mean and SD over folds of the training loss per epoch (with its mix-up flag and learning rate), per
    (cohort, scheme, arm, backbone, image)."""
    keys = ["cohort", "scheme", "arm", "backbone", "hemisphere", "metric", "epoch", "mixup", "lr"]
    curves = histories.groupby(keys)["loss"].agg(["mean", "std", "count"]).reset_index()
    return curves.rename(columns={"mean": "loss", "std": "loss_sd", "count": "models"})


def average_over_images(predictions: pd.DataFrame) -> pd.DataFrame:
    """Each subject's probability averaged over its image models (hemispheres x metrics), per (cohort, scheme,
    arm, backbone): an unweighted combination (the paper's XGBoost stacking is notebook 06's). ``images``
    counts the models averaged."""
    keys = ["cohort", "scheme", "arm", "backbone", "subject"]
    averaged = predictions.groupby(keys, sort=True).agg(label=("label", "first"), fold=("fold", "first"),
                                                        probability=("probability", "mean"),
                                                        images=("probability", "size"))
    return averaged.reset_index().assign(hemisphere="both", metric="mean of images")


def arms_vs_paper(predictions: pd.DataFrame, task: str) -> pd.DataFrame:
    """Each (cohort, scheme, arm, backbone) of ``predictions`` beside the paper's accuracy for the same arm and
    scheme: the mean single-image accuracy and the image-average accuracy, sensitivity, specificity (%) and
    AUC. ``task`` is ``"sex"`` or ``"asd"``. Without predictions, the paper's numbers alone."""
    reported = paper.results_table(task)
    reported = reported[reported["arm"] != "baseline"].assign(
        scheme=lambda t: t["cv"].map({"10-fold": KFOLD, "leave-one-site-out": SITE_OUT}))
    reported = reported.pivot_table(index=["scheme", "arm"], columns="model", values="accuracy")
    reported.columns = [f"paper {model} (%)" for model in reported.columns]
    if predictions.empty:
        return reported.reset_index()
    keys = ["cohort", "scheme", "arm", "backbone"]
    single = (summarise(predictions).groupby(keys)["accuracy"].mean() * 100).rename("mean single-image accuracy (%)")
    averaged = summarise(average_over_images(predictions), by=tuple(keys)).set_index(keys)
    ours = pd.DataFrame({"image-average accuracy (%)": averaged["accuracy"] * 100,
                         "image-average sensitivity (%)": averaged["sensitivity"] * 100,
                         "image-average specificity (%)": averaged["specificity"] * 100,
                         "image-average AUC": averaged["auc"]})
    ours = single.to_frame().join(ours).reset_index()
    table = ours.merge(reported.reset_index(), on=["scheme", "arm"], how="left").round(3)
    # the paper's columns beside our image-average accuracy (a wide table scrolls: the comparison stays in view), and
    # only those with a number for one of our rows (the paper's site-out model is unspecified: no empty column)
    papers = [c for c in reported.columns if table[c].notna().any()]
    first = [*keys, "image-average accuracy (%)"]
    return table[first + papers + [c for c in table.columns if c not in first and c not in reported.columns]]


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion (accuracy over ``n`` subjects), by :func:`scipy.stats.binomtest`."""
    from scipy.stats import binomtest

    if n == 0:
        return float("nan"), float("nan")
    interval = binomtest(int(successes), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return float(interval.low), float(interval.high)


#: Columns of :func:`against_references` that the notebooks show, by (cohort, scheme, arm, backbone).
REFERENCE_VIEW = ["image-average accuracy", "accuracy 95% low", "accuracy 95% high", "above chance",
                  "image-average AUC", "mean single-image accuracy", "linear reference accuracy",
                  "fraction of linear reference", "Bayes-optimal accuracy", "fraction of Bayes ceiling"]


def against_references(predictions: pd.DataFrame, reference: pd.DataFrame,
                       ceilings: dict[str, float] | None = None) -> pd.DataFrame:
    """Every (cohort, scheme, arm, backbone) beside the linear reference of the same images and folds, and the
    cohort's Bayes-optimal accuracy where it is known (simulated cohorts).

    Columns: mean single-image accuracy; image-average accuracy (each subject's probability averaged over its
    image models, for networks and reference alike) with its 95% Wilson interval and whether the interval lies
    above chance (0.5); image-average AUC; the reference's image-average accuracy; the arm's accuracy as a fraction
    of it and of the Bayes ceiling. The reference's own rows are included (fraction 1).
    """
    ceilings = ceilings or {}
    both = pd.concat([predictions, reference], ignore_index=True)
    keys = ["cohort", "scheme", "arm", "backbone"]
    single = summarise(both).groupby(keys)["accuracy"].mean().rename("mean single-image accuracy")
    averaged = average_over_images(both)
    rows = []
    for group_keys, group in averaged.groupby(keys, sort=True):
        correct = int(((group["probability"] >= 0.5) == (group["label"] == 1)).sum())
        low, high = wilson_interval(correct, len(group))
        scores = classification_metrics(group["label"].to_numpy(), group["probability"].to_numpy())
        rows.append({**dict(zip(keys, group_keys)), "subjects": len(group), "images": int(group["images"].max()),
                     "image-average accuracy": scores["accuracy"], "accuracy 95% low": low,
                     "accuracy 95% high": high, "above chance": bool(low > 0.5), "image-average AUC": scores["auc"]})
    table = pd.DataFrame(rows).merge(single.reset_index(), on=keys, how="left")
    from_reference = table[table["arm"].isin(set(reference["arm"]))] if not reference.empty else table.iloc[:0]
    linear = from_reference.set_index(["cohort", "scheme"])["image-average accuracy"].rename("linear reference accuracy")
    table = table.merge(linear.reset_index(), on=["cohort", "scheme"], how="left")
    table["fraction of linear reference"] = table["image-average accuracy"] / table["linear reference accuracy"]
    table["Bayes-optimal accuracy"] = table["cohort"].map(ceilings)
    table["fraction of Bayes ceiling"] = table["image-average accuracy"] / table["Bayes-optimal accuracy"]
    return table.round(4)


def stacked_vs_paper(per_stack: pd.DataFrame, task: str, method: str) -> pd.DataFrame:
    """Stacked results of ``task`` (``"sex"`` or ``"autism"``) by ``method`` beside the paper's Table 1/2 rows.

    ``per_stack`` is :func:`studylib.evaluate.uncertainty.metric_intervals` of the stacked predictions (columns
    ``task``, ``cohort``, ``scheme``, ``arm``, ``backbone``, ``stacking``). Ours: accuracy, sensitivity and
    specificity (%) and AUC with their 95% intervals, and the cohort's Bayes-optimal accuracy (%) where
    ``per_stack`` has it (simulated cohorts); the paper's: the same four for each of its backbones, matched on
    (scheme, arm); the paper's stacking is XGBoost.
    """
    reported = paper.results_table("sex" if task == "sex" else "asd")
    reported = reported[reported["arm"] != "baseline"].assign(
        scheme=lambda t: t["cv"].map({"10-fold": KFOLD, "leave-one-site-out": SITE_OUT}))
    wide = reported.pivot_table(index=["scheme", "arm"], columns="model",
                                values=["accuracy", "sensitivity", "specificity", "auc"])
    wide.columns = [f"paper {model} {metric}" + (" (%)" if metric != "auc" else "") for metric, model in wide.columns]
    wide = wide[sorted(wide.columns)].reset_index()
    ours = per_stack[(per_stack["task"] == task) & (per_stack["stacking"] == method)]
    rows = []
    for _, row in ours.iterrows():
        entry = {key: row[key] for key in ("cohort", "scheme", "arm", "backbone", "stacking", "subjects")}
        for metric in ("accuracy", "sensitivity", "specificity", "auc"):
            scale = 1 if metric == "auc" else 100
            name = metric + (" (%)" if metric != "auc" else "")
            entry[name] = row[metric] * scale
            entry[f"{name} 95% CI"] = f"{row[f'{metric} low'] * scale:.{3 if metric == 'auc' else 1}f}–" \
                                      f"{row[f'{metric} high'] * scale:.{3 if metric == 'auc' else 1}f}"
        if "Bayes-optimal accuracy" in row:  # simulated cohorts: the ceiling any classifier can reach (else NaN)
            entry["Bayes-optimal accuracy (%)"] = row["Bayes-optimal accuracy"] * 100
        rows.append(entry)
    table = pd.DataFrame(rows)
    if table.empty:
        return wide
    return table.merge(wide, on=["scheme", "arm"], how="left").round(3)
