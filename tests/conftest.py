"""Fixtures shared by every test; helpers live in :mod:`tests.support`."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from .support import SHARED_DATA


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
