from __future__ import annotations

from studylib.study.provenance import collect_environment, package_versions, render_markdown


def test_package_versions_cover_the_declared_dependencies():
    versions = package_versions()
    for name in ("studylib", "torch", "torchvision", "nilearn", "papermill", "jupyter-book", "pydantic"):
        assert versions[name] != "not installed", name


def test_reproducibility_page_shows_commit_params_stages_and_versions():
    record = {
        "params_name": "smoke", "params_file": "/x/params/smoke.yaml", "params": {"seed": 5, "train": {"epochs": 2}},
        "data_dir": "/data", "command": "studylib run --params params/smoke.yaml",
        "started": "2026-01-01T00:00:00+00:00", "finished": "2026-01-01T00:01:00+00:00", "wall_seconds": 60.0,
        "stages": [{"name": "01_preprocess", "status": "ran", "seconds": 3.2, "executed_at": "2026-01-01T00:00:03"}],
        **collect_environment(),
    }
    record["git"] = {"commit": "abc123", "uncommitted_changes": True}
    page = render_markdown(record)
    assert page.startswith("# Reproducibility")
    assert "`abc123 (with uncommitted changes)`" in page
    assert "epochs: 2" in page and "seed: 5" in page
    assert "| 01_preprocess | ran | 3.2 |" in page
    assert "| torch |" in page
    assert "studylib run --params params/smoke.yaml" in page
    assert "| executor | serial (workers: auto" in page and "| 1 | not measured |" in page
    record["params"]["executor"] = {"kind": "ray", "workers": 4, "retries": 2, "address": "auto"}
    record["params"]["train"]["threads"] = 1
    page = render_markdown(record)
    assert "| executor | ray (workers: 4; retries: 2; address: auto) |" in page
    assert "| intra-op threads per model | 1 (fixed" in page
