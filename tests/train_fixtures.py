"""Small image stores and parameters for the training tests, and a driver a test can kill."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from studylib.config import load_params
from studylib.images import ImageStore

PROJECT = Path(__file__).resolve().parents[1]


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
    settings = params.transfer.model_copy(update=transfer)
    return params.model_copy(update={"train": train, "transfer": settings})


def drive(root: str, stores: str) -> None:
    """Run the sex arms (scratch only) of ``stores/hcp`` into ``root`` (a test kills this process)."""
    from studylib.train.experiments import Experiment, plan_sex

    params = small_params(sex_arms=["scratch"])
    experiment = Experiment(root, {"hcp": ImageStore(Path(stores) / "hcp")}, params.train, params.seed, "cpu")
    plan_sex(experiment, params)
    experiment.run(progress=False)
    experiment.predictions().to_csv(Path(root) / "predictions.csv", index=False)
    print(f"epochs trained: {experiment.epochs_trained}")


if __name__ == "__main__":
    drive(sys.argv[1], sys.argv[2])
