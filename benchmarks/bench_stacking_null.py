"""How far the stacking chain drifts from chance when there is nothing to find (issue 14).

Runs :func:`studylib.evaluate.leakage.permutation_runs` on the sex cohort's images of a finished study (notebook 03's
image store; linear base models per image, folds drawn on each permutation's labels) with more seeds than ``06_stack``
affords, and prints, per stacking, the mean AUC over the permutations, its standard error over the runs and its
z against 1/2: the primary meta-learner in the usual scheme, the same in the nested scheme, and the mean of the
images. Takes about 40 s per seed on 2 cores for the default's sex cohort (200 subjects, 8 images). Also prints the
spread of the AUCs against the independent-score null's SE and their line on each permutation's chance correlation
|r| with the real labels (:func:`studylib.evaluate.leakage.permutation_summary`).

``--mean-only`` stacks by the mean of the images alone (about 10 s per seed). The 06 page's figures come from
``--mean-only --seeds 16 --first-seed 20221117`` on the default run's images.

Usage: ``python benchmarks/bench_stacking_null.py [--params params/default.yaml] [--results results] [--seeds 10]
[--first-seed 1000] [--mean-only]``
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from scipy import stats

from studylib.evaluate.leakage import permutation_runs, permutation_summary
from studylib.images import open_stores
from studylib.study.config import load_params, params_name
from studylib.study.layout import ResultsLayout

PROJECT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=PROJECT / "params" / "default.yaml")
    parser.add_argument("--results", type=Path, default=PROJECT / "results")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--first-seed", type=int, default=1000)
    parser.add_argument("--mean-only", action="store_true", help="stack by the mean of the images only")
    args = parser.parse_args()
    params = load_params(args.params)
    layout = ResultsLayout.for_params(params_name(args.params), args.results)
    cohort = params.stacking.checks_cohort or params.transfer.sex_cohort
    stores, missing = open_stores({cohort: layout.image_store(cohort)})
    if missing:
        print(f"bench_stacking_null: no image store of cohort {cohort!r} under {layout.root}; run notebooks 01-03 "
              "first (or pass --results)")
        return
    store = stores[cohort]
    n = len(store.subjects)
    features = [np.asarray(store.images(h, m), dtype=np.float64).reshape(n, -1)
                for h in store.meta["hemispheres"] for m in store.meta["metrics"]]
    primary = params.stacking.methods[0]
    started = time.perf_counter()
    runs = permutation_runs(features, store.subjects["label"].to_numpy(), params.train.folds,
                            range(args.first_seed, args.first_seed + args.seeds),
                            methods=["mean"] if args.mean_only else [primary, "mean"],
                            nested=[] if args.mean_only else [primary], grid=params.stacking.grid, inner_folds=params.stacking.inner_folds,
                            progress=True)
    seconds = time.perf_counter() - started
    print(f"cohort {cohort!r}: {n} subjects, {len(features)} images, {params.train.folds} folds, {args.seeds} "
          f"permutations in {seconds:.0f} s")
    for method, group in runs.groupby("method", sort=False):
        auc = group["auc"].to_numpy()
        se = auc.std(ddof=1) / np.sqrt(len(auc))
        print(f"  {method:<22} mean AUC {auc.mean():.3f} (SE {se:.3f}, z {(auc.mean() - 0.5) / se:+.1f}); "
              f"intervals covering 0.5: {int(group['covers 0.5'].sum())} of {len(group)}")
    summary = permutation_summary(runs)
    for method, group in runs.groupby("method", sort=False):
        row = summary.loc[method]
        test = stats.pearsonr(group["|r| with the real labels"], group["auc"]) if len(group) >= 3 else None
        print(f"  {method:<22} AUC SD {group['auc'].std(ddof=1):.3f} (independent-score null {row['null SE of one AUC']:.3f})"
              + (f"; with |r|: correlation {test.statistic:.2f} (p {test.pvalue:.2f}), line at r = 0 "
                 f"{row['AUC at r = 0']:.3f}" if test is not None else ""))


if __name__ == "__main__":
    main()
