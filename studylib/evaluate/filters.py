"""Filter variation: how far fine-tuning moves each convolution layer from where it started.

The paper's discussion compares direct transfer (ImageNet -> ABIDE) with the second stage of the 2-stage
transfer (HCP sex -> ABIDE): the second stage changes both low- and high-level filters less, which it reads
as stage 1 having already adapted them to brain images. Here the variation of a layer is the relative
Frobenius norm ``||W_tuned - W_start|| / ||W_start||`` of its convolution weights, for every convolution in
network order (depth 0 is the first layer).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..train.jobs import Job
from ..train.models import build_model

__all__ = ["experiment_filter_variation", "filter_variation", "variation_by_level"]


def filter_variation(start: dict[str, torch.Tensor], tuned: dict[str, torch.Tensor]) -> pd.DataFrame:
    """Relative change of every convolution weight (4-D tensors) of ``start`` in ``tuned``.

    Parameters
    ----------
    start, tuned : dict
        State dicts with the same keys for the convolutions (e.g. a backbone before and after fine-tuning).

    Returns
    -------
    DataFrame
        ``layer`` (state key), ``depth`` (0, 1, ... in network order), ``relative_depth`` (0..1),
        ``variation``.
    """
    layers = [key for key, value in start.items() if value.ndim == 4]
    if not layers:
        raise ValueError("no convolution weights (4-D tensors) in the starting state")
    missing = [key for key in layers if key not in tuned]
    if missing:
        raise KeyError(f"the tuned state lacks {missing[:3]}")
    rows = []
    for depth, key in enumerate(layers):
        before, after = start[key].double(), tuned[key].double()
        norm = float(torch.linalg.vector_norm(before))
        rows.append({"layer": key, "depth": depth, "relative_depth": depth / max(len(layers) - 1, 1),
                     "variation": float(torch.linalg.vector_norm(after - before)) / norm if norm else np.nan})
    return pd.DataFrame(rows)


def experiment_filter_variation(jobs: Iterable[Job], root: str | Path) -> pd.DataFrame:
    """Filter variation of every finished job in ``jobs`` (folders under ``root``) from its own start.

    The start is rebuilt from the job's ``init`` (ImageNet weights, the stage-1 model behind a ``checkpoint``,
    or, for ``scratch``, the random weights drawn from the job's seed as the job drew them); only the backbone's
    convolutions are compared (the new head has no start).
    """
    root = Path(root)
    starts: dict[tuple, dict[str, torch.Tensor]] = {}
    parts = []
    for job in jobs:
        model = root / job.name / "model.pt"
        if not (root / job.name / "done.json").is_file():
            continue
        start = (job.backbone, job.init) + ((job.seed,) if job.init.kind == "scratch" else ())
        if start not in starts:
            torch.manual_seed(job.seed)  # as run_job seeds before building
            starts[start] = build_model(job.backbone, job.init).state_dict()
        tuned = torch.load(model, map_location="cpu", weights_only=True)
        table = filter_variation(starts[start],
                                 {key.removeprefix("backbone."): value for key, value in tuned.items()})
        for field in ("cohort", "arm", "scheme", "backbone", "hemisphere", "metric", "fold"):
            table[field] = getattr(job, field)
        parts.append(table)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def variation_by_level(variation: pd.DataFrame) -> pd.DataFrame:
    """Mean variation of the low, middle and high thirds of the network (by relative depth), per cohort,
    backbone and arm (columns)."""
    level = pd.cut(variation["relative_depth"], [-0.01, 1 / 3, 2 / 3, 1.0], labels=["low", "middle", "high"])
    return variation.assign(level=level).pivot_table(index=["cohort", "backbone", "level"], columns="arm",
                                                     values="variation", observed=True)
