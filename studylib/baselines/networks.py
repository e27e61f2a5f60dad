"""The paper's three network baselines as training jobs of the main engine, in the main method's folds.

- ``slice``: one 2D network per ribbon slice (:func:`studylib.baselines.volumes.slice_positions`: axial, coronal, a
  left/right sagittal pair per position), ImageNet-initialised as the flat-map arms are (the paper fine-tunes
  pretrained models on its slices); the slices are stacked like the main method's image sets (the paper: "the results
  of the slices are finally ensembled with stacking").
- ``3d-volume``: a 3D DenseNet (MONAI) on the ribbon volume, from scratch.
- ``3d-mesh``: a 3D DenseNet on each metric's vertex values placed in a 3D grid, one per metric, stacked.

Every model is a :class:`~studylib.train.jobs.Job` of an :class:`~studylib.train.experiments.Experiment` over the
cohort's volume store, so it is idempotent, resumable, runs through the study's executor, trains with the main recipe
(the same epochs, learning rates and mix-up), and uses the cohort's k-fold split, which :func:`check_same_folds`
compares with the folds the networks were evaluated in.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..images import ImageStore
from ..train.cv import KFOLD
from ..train.experiments import Experiment, imagenet_init
from ..train.jobs import Job
from ..train.models import Init

__all__ = ["MESH_ARM", "NETWORK_BASELINES", "SLICE_ARM", "VOLUME_ARM", "check_same_folds", "plan_baselines",
           "planned_baselines"]

SLICE_ARM, VOLUME_ARM, MESH_ARM = "slice", "3d-volume", "3d-mesh"
NETWORK_BASELINES = (SLICE_ARM, VOLUME_ARM, MESH_ARM)


def plan_baselines(experiment: Experiment, cohort: str, store: ImageStore, arms: list[str], *, slice_backbone: str,
                   volume_backbone: str) -> list[Job]:
    """Add one job per (baseline arm in ``arms``, image set of the volume store, fold) and return them."""
    jobs = []
    for hemisphere, metric, arm in store.meta["sets"].values():
        if arm not in arms:
            continue
        if arm == SLICE_ARM:
            backbone, init = slice_backbone, imagenet_init(slice_backbone)
        else:
            backbone, init = volume_backbone, Init("scratch")
        jobs += experiment.add(cohort, arm, KFOLD, backbone, init, hemisphere, metric)
    return jobs


def check_same_folds(experiment: Experiment, cohort: str, folds: pd.Series) -> None:
    """Raise unless the experiment's k-fold split of ``cohort`` is ``folds`` (subject -> fold of the networks)."""
    subjects = experiment.stores[cohort].subjects["subject"].astype(str)
    ours = experiment.folds(cohort, KFOLD)
    missing = sorted(set(subjects) - set(folds.index))
    if missing:
        raise ValueError(f"cohort {cohort}: subjects {missing[:5]} have no fold in the networks' predictions")
    theirs = folds.loc[subjects].to_numpy()
    differ = np.flatnonzero(ours != theirs)
    if len(differ):
        raise ValueError(f"cohort {cohort}: the baselines' folds differ from the networks' for {len(differ)} subjects "
                         f"(first: {subjects.iloc[differ[0]]}, fold {ours[differ[0]]} vs {theirs[differ[0]]})")


def planned_baselines(params) -> pd.DataFrame:
    """What ``09_baselines`` would train for a parameter set, one row per (autism cohort, network baseline):
    ``backbone``, ``models`` (image sets x folds: the ribbon, one grid per metric, 4 slices per
    ``slices_per_direction``) and ``training_images`` (models x training subjects x epochs)."""
    from ..train.workload import cohort_shapes

    shapes = cohort_shapes(params)
    settings, train = params.baselines, params.train
    backbones = {SLICE_ARM: settings.slice_backbone or train.backbones[0], VOLUME_ARM: settings.volume_backbone,
                 MESH_ARM: settings.volume_backbone}
    rows = []
    for cohort in params.transfer.autism_cohorts:
        if cohort not in shapes:
            continue
        shape = shapes[cohort]
        train_subjects = shape.n_subjects - shape.n_subjects // train.folds
        sets = {SLICE_ARM: 4 * settings.slices_per_direction, VOLUME_ARM: 1, MESH_ARM: len(shape.metrics)}
        for arm, count in sets.items():
            if arm in settings.arms:
                models = count * train.folds
                rows.append({"cohort": cohort, "arm": arm, "backbone": backbones[arm], "models": models,
                             "training_images": models * train_subjects * train.epochs})
    return pd.DataFrame(rows, columns=["cohort", "arm", "backbone", "models", "training_images"])
