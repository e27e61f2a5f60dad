from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

PROJECT = Path(__file__).resolve().parents[1]
SHARED_DATA = (PROJECT.parent / "shared" / "data").resolve()


@pytest.fixture(autouse=True)
def _isolated_data_env(monkeypatch, tmp_path_factory):
    """Tests see ../shared/data as the data directory when it exists, never the user's ~/studylib_data."""
    if SHARED_DATA.is_dir():
        monkeypatch.setenv("STUDYLIB_DATA", str(SHARED_DATA))
    else:
        monkeypatch.setenv("STUDYLIB_DATA", str(tmp_path_factory.mktemp("empty_data")))
    monkeypatch.setenv("MPLBACKEND", "Agg")


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


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


@pytest.fixture
def write_params(tmp_path):
    """Write a dict (or YAML text) as ``<tmp>/params/<name>.yaml`` and return the path."""
    folder = tmp_path / "params"
    folder.mkdir(exist_ok=True)

    def write(content: dict | str, name: str = "trial") -> Path:
        path = folder / f"{name}.yaml"
        path.write_text(content if isinstance(content, str) else yaml.safe_dump(content, sort_keys=False))
        return path

    return write


def env_without_data() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("STUDYLIB_DATA", None)
    return env
