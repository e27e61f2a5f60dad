"""The PCA + SVM baseline on all 1035 real ABIDE I subjects (issue 16's check, not part of the default run).

The same pipeline as ``09_baselines`` (:func:`studylib.baselines.pca_svm.pca_svm`) on the FreeSurfer 6 regional
thickness of the 68 Desikan–Killiany regions (what the semi-real cohort paints on the template: its vertex values are
these numbers, repeated), autism vs control, stratified 10-fold CV, repeated with three seeds. Target: AUC within
0.567 +- 0.03 (an independent PCA + SVM on the same regional data); accuracy beside the majority rate (51%).

Needs the data directory (``STUDYLIB_DATA`` or ``--data-dir``). Usage: ``python benchmarks/bench_pca_svm.py``.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from studylib.baselines.pca_svm import pca_svm
from studylib.data.abide import load_abide1_phenotypes, load_regional_table
from studylib.train.cv import stratified_folds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=os.environ.get("STUDYLIB_DATA"))
    args = parser.parse_args()
    if args.data_dir is None or not Path(args.data_dir).is_dir():
        print("no data directory (set STUDYLIB_DATA or --data-dir): skipped")
        return
    table = load_regional_table(args.data_dir, "thickness")
    phenotypes = load_abide1_phenotypes(args.data_dir).set_index("subject").reindex(table.index)
    labels = (phenotypes["diagnosis"] == "autism").to_numpy(int)
    features = table.to_numpy(np.float64)
    print(f"{len(labels)} subjects, {features.shape[1]} regional thickness values, majority rate "
          f"{max(labels.mean(), 1 - labels.mean()):.3f}; load average {os.getloadavg()[0]:.2f}")
    aucs, accuracies = [], []
    for seed in (0, 1, 2):
        started = time.perf_counter()
        probability = pca_svm(features, labels, stratified_folds(labels, 10, seed), variance=0.95, seed=seed)
        aucs.append(roc_auc_score(labels, probability))
        accuracies.append(((probability >= 0.5) == labels).mean())
        print(f"  seed {seed}: AUC {aucs[-1]:.3f}, accuracy {accuracies[-1]:.3f} ({time.perf_counter() - started:.1f} s)")
    auc = float(np.mean(aucs))
    print(f"mean AUC {auc:.3f} (target 0.567 +- 0.03: {'within' if abs(auc - 0.567) <= 0.03 else 'OUTSIDE'}), "
          f"mean accuracy {np.mean(accuracies):.3f}")


if __name__ == "__main__":
    main()
