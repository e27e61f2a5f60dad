"""environment.yml (conda) and pyproject.toml (pip) install the same packages."""

from __future__ import annotations

import tomllib

import yaml

from tests.support import PROJECT


def _pyproject() -> dict:
    return tomllib.loads((PROJECT / "pyproject.toml").read_text())


def test_environment_pip_list_matches_pyproject():
    project = _pyproject()["project"]
    declared = project["dependencies"] + project["optional-dependencies"]["test"]
    environment = yaml.safe_load((PROJECT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in environment["dependencies"] if isinstance(d, dict))
    assert "-e ." in pip_section, "environment.yml must install the studylib package itself"
    listed = [line for line in pip_section if line != "-e ."]
    assert sorted(listed) == sorted(declared)


def test_python_version_agrees():
    environment = yaml.safe_load((PROJECT / "environment.yml").read_text())
    python = next(d for d in environment["dependencies"] if isinstance(d, str) and d.startswith("python="))
    assert python == "python=3.11"
    assert _pyproject()["project"]["requires-python"] == ">=3.11,<3.12"


def test_pinned_torch_and_jupyter_book_1x():
    dependencies = _pyproject()["project"]["dependencies"]
    assert "torch==2.14.1" in dependencies and "torchvision==0.29.1" in dependencies
    assert any(d.startswith("jupyter-book") and "<2" in d for d in dependencies)


def test_console_command_is_declared():
    assert _pyproject()["project"]["scripts"]["studylib"] == "studylib.study.cli:main"
