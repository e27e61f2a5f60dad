"""Accuracy, sensitivity, specificity and AUC, as the paper reports them (label 1 is the positive class)."""

from __future__ import annotations

import numpy as np

__all__ = ["classification_metrics"]


def classification_metrics(labels: np.ndarray, probability: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """``accuracy``, ``sensitivity`` (true-positive rate), ``specificity`` (true-negative rate) and ``auc``."""
    from sklearn.metrics import roc_auc_score

    labels = np.asarray(labels).astype(int)
    probability = np.asarray(probability, dtype=np.float64)
    if labels.shape != probability.shape:
        raise ValueError(f"{len(labels)} labels but {len(probability)} probabilities")
    predicted = probability >= threshold
    positive, negative = labels == 1, labels == 0
    return {
        "accuracy": float((predicted == positive).mean()),
        "sensitivity": float(predicted[positive].mean()) if positive.any() else float("nan"),
        "specificity": float((~predicted[negative]).mean()) if negative.any() else float("nan"),
        "auc": float(roc_auc_score(labels, probability)) if positive.any() and negative.any() else float("nan"),
        "n": int(len(labels)),
    }
