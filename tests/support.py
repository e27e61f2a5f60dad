"""Helpers the tests share (one place; no test imports from another test file): small meshes, synthetic
templates, valid parameter sets, small image stores, and a training driver a test can kill.

Run as a script (``python tests/support.py ROOT STORES``) it trains the sex arms of a small store, so that a
test can interrupt it with SIGKILL and resume it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from studylib.data.templates import HemisphereSurface, Parcellation, Template
from studylib.images import ImageStore
from studylib.study.config import load_params

PROJECT = Path(__file__).resolve().parents[1]
SHARED_DATA = (PROJECT.parent / "shared" / "data").resolve()


# ---------------------------------------------------------------------------- meshes and templates

def grid(n: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """An n x n square grid of vertices triangulated into 2 (n-1)^2 faces: a disk."""
    x, y = np.meshgrid(np.arange(n, dtype=float), np.arange(n, dtype=float))
    vertices = np.c_[x.ravel(), y.ravel(), np.zeros(n * n)]
    index = np.arange(n * n).reshape(n, n)
    a, b, c, d = index[:-1, :-1].ravel(), index[:-1, 1:].ravel(), index[1:, :-1].ravel(), index[1:, 1:].ravel()
    faces = np.r_[np.c_[a, b, d], np.c_[a, d, c]]
    return vertices, faces


def union_jack(n: int) -> tuple[np.ndarray, np.ndarray]:
    """An n x n grid whose diagonals alternate, so that every corner vertex lies in two triangles (no ears)."""
    x, y = np.meshgrid(np.arange(n, dtype=float), np.arange(n, dtype=float))
    vertices = np.c_[x.ravel(), y.ravel(), np.zeros(n * n)]
    index = np.arange(n * n).reshape(n, n)
    a, b, c, d = (index[:-1, :-1], index[:-1, 1:], index[1:, :-1], index[1:, 1:])
    even = (np.add.outer(np.arange(n - 1), np.arange(n - 1)) % 2 == 0)
    faces = np.r_[np.c_[a[even], b[even], d[even]], np.c_[a[even], d[even], c[even]],
                  np.c_[a[~even], b[~even], c[~even]], np.c_[b[~even], d[~even], c[~even]]]
    return vertices, faces


def icosphere(subdivisions: int = 3) -> tuple[np.ndarray, np.ndarray]:
    t = (1 + 5**0.5) / 2
    vertices = [[-1, t, 0], [1, t, 0], [-1, -t, 0], [1, -t, 0], [0, -1, t], [0, 1, t], [0, -1, -t], [0, 1, -t],
                [t, 0, -1], [t, 0, 1], [-t, 0, -1], [-t, 0, 1]]
    faces = [[0, 11, 5], [0, 5, 1], [0, 1, 7], [0, 7, 10], [0, 10, 11], [1, 5, 9], [5, 11, 4], [11, 10, 2],
             [10, 7, 6], [7, 1, 8], [3, 9, 4], [3, 4, 2], [3, 2, 6], [3, 6, 8], [3, 8, 9], [4, 9, 5], [2, 4, 11],
             [6, 2, 10], [8, 6, 7], [9, 8, 1]]
    vertices = np.array(vertices, dtype=float)
    faces = np.array(faces)
    for _ in range(subdivisions):
        edges = np.sort(np.r_[faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]], axis=1)
        unique, inverse = np.unique(edges, axis=0, return_inverse=True)
        midpoints = len(vertices) + inverse.reshape(3, -1).T  # per face: (01, 12, 20)
        vertices = np.r_[vertices, (vertices[unique[:, 0]] + vertices[unique[:, 1]]) / 2]
        a, b, c = faces.T
        ab, bc, ca = midpoints.T
        faces = np.r_[np.c_[a, ab, ca], np.c_[b, bc, ab], np.c_[c, ca, bc], np.c_[ab, bc, ca]]
    vertices /= np.linalg.norm(vertices, axis=1, keepdims=True)
    return vertices * 50.0, faces


def synthetic_template(subdivisions: int = 3) -> tuple[Template, Parcellation]:
    """Template 'synthetic' (642 vertices per hemisphere at 3 subdivisions) with thickness and sulc maps, and a
    parcellation named like the Desikan–Killiany atlas (34 regions per hemisphere in longitude sectors of the
    cortex, corpus callosum absent), so that simulated cohorts can be drawn on it."""
    from studylib.data.templates import DK_REGIONS

    vertices, faces = icosphere(subdivisions)
    cortex = vertices[:, 2] > -40  # the cap below z = -40 plays the medial wall
    regions = [r for r in DK_REGIONS if r != "corpuscallosum"]
    surfaces, maps, labels = {}, {}, {}
    for offset, hemisphere in ((1, "left"), (36, "right")):
        surfaces[hemisphere] = HemisphereSurface("synthetic", hemisphere, "sphere", vertices, faces, cortex)
        x, y, z = (vertices / 50.0).T
        maps[(hemisphere, "thickness")] = np.where(cortex, 2.5 + 0.3 * x + 0.2 * y * z, np.nan)
        maps[(hemisphere, "sulc")] = np.where(cortex, np.sin(3 * x) + 0.5 * z, np.nan)
        # equal-count sectors of (longitude, height): every region gets cortex vertices
        order = np.lexsort((z, np.arctan2(y, x)))
        sector = np.empty(len(vertices), dtype=np.int64)
        cortical = order[cortex[order]]
        sector[cortical] = np.arange(len(cortical)) * len(regions) // len(cortical)
        label = np.array([offset + DK_REGIONS.index(regions[k]) for k in range(len(regions))])
        labels[hemisphere] = np.where(cortex, label[np.clip(sector, 0, len(regions) - 1)], 0)
    names = {i + 1: f"L_{r}" for i, r in enumerate(DK_REGIONS)} | {i + 36: f"R_{r}" for i, r in enumerate(DK_REGIONS)}
    return Template("synthetic", surfaces, maps), Parcellation("dk", "synthetic", labels, names)


# ---------------------------------------------------------------------------- parameters and environment

def minimal_params() -> dict:
    """A complete, valid parameter set (small values)."""
    cohort = {"source": "simulated", "task": "sex", "n_subjects": 8, "n_sites": 1, "template": "fs_LR_32k",
              "metrics": ["thickness"]}
    return {
        "seed": 1,
        "cohorts": {"hcp": dict(cohort), "abide": dict(cohort, task="autism", n_sites=2)},
        "raster": {"image_size": 32},
        "train": {"backbones": ["resnet18"], "epochs": 2, "mixup_epochs": 1, "batch_size": 4, "lr": 0.01,
                  "lr_step_epochs": 1, "finetune_lr": 1e-4, "momentum": 0.9, "folds": 2},
        "stacking": {"n_bootstrap": 10},
        "occlusion": {"patch": 8, "stride": 8},
        "baselines": {"pca_variance": 0.9},
    }


def build_params_cohorts(params, out: Path, **kwargs):
    """:func:`studylib.data.build.build_cohorts` for every cohort of a loaded parameter set, as ``01_preprocess``
    calls it."""
    from studylib.data.build import build_cohorts
    from studylib.params import resolve_data_dir

    return build_cohorts(params.cohorts, out, seed=params.seed, data_dir=resolve_data_dir(params),
                         cache=Path(out) / "_cache", **kwargs)


# ---------------------------------------------------------------------------- training

def make_store(folder: Path, name: str, metrics: list[str], n: int = 24, size: int = 32, sites: int = 1,
               seed: int = 0, effect: float = 1.5) -> ImageStore:
    """An image store whose label-1 images are brighter (learnable in a few epochs)."""
    rng = np.random.default_rng(seed)
    folder = Path(folder) / name
    (folder / "images").mkdir(parents=True, exist_ok=True)
    labels = np.arange(n) % 2
    subjects = pd.DataFrame({"subject": [f"{name}-{i:03d}" for i in range(n)], "label": labels,
                             "site": [f"site{i % sites}" for i in range(n)]})
    stats = {}
    for hemisphere in ("left",):
        for metric in metrics:
            images = rng.normal(0, 1, (n, size, size)).astype(np.float32) + effect * labels[:, None, None]
            np.save(folder / "images" / f"{hemisphere}_{metric}.npy", images)
            stats[f"{hemisphere}_{metric}"] = {"mean": float(images.mean()), "sd": float(images.std())}
    subjects.to_csv(folder / "subjects.csv", index=False)
    meta = {"cohort": name, "size": size, "hemispheres": ["left"], "metrics": metrics, "subjects": n,
            "stats": stats}
    (folder / "store.json").write_text(json.dumps(meta))
    return ImageStore(folder)


def small_params(**transfer):
    """Smoke parameters trimmed for tests: resnet18 from scratch unless an arm needs ImageNet."""
    params = load_params(PROJECT / "params" / "smoke.yaml")
    train = params.train.model_copy(update={"epochs": 3, "mixup_epochs": 1, "batch_size": 8, "folds": 2,
                                            "backbones": ["resnet18"]})
    settings = params.transfer.model_copy(update={"cohort_arms": {}, **transfer})  # every arm unless a test trims
    return params.model_copy(update={"train": train, "transfer": settings})


def drive(root: str, stores: str) -> None:
    """Run the sex arms (scratch only) of ``stores/hcp`` into ``root`` (a test kills this process)."""
    from studylib.train.experiments import Experiment, plan_sex

    params = small_params(sex_arms=["scratch"])
    experiment = Experiment(root, {"hcp": ImageStore(Path(stores) / "hcp")}, params.train, params.seed, "cpu")
    plan_sex(experiment, params.transfer)
    experiment.run(progress=False)
    experiment.predictions().to_csv(Path(root) / "predictions.csv", index=False)
    print(f"epochs trained: {experiment.epochs_trained}")


if __name__ == "__main__":
    drive(sys.argv[1], sys.argv[2])
