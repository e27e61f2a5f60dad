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


def test_projection_shows_a_gpu_check_only_when_one_ran_on_a_gpu(tmp_path):
    import json

    import pandas as pd

    from studylib.study.provenance import gpu_check_markdown

    assert "| 1 | not measured |" in gpu_check_markdown(None)
    pd.DataFrame({"gpus": [1, 4, 8], "hours": [80.0, 20.5, 10.3], "card": "NVIDIA H200", "models": 3284,
                  "training_images": 600_000_000, "backbones": "densenet121 + resnet50"}).to_csv(
        tmp_path / "projection.csv", index=False)
    pd.DataFrame({"backbone": ["resnet50"], "engine_resident": [2500.0], "engine_vs_bare": [0.97],
                  "amp_speedup": [1.8], "gpu_utilisation_percent": [96.0]}).to_csv(tmp_path / "throughput.csv",
                                                                                  index=False)
    record = {"started": "2026-12-01T00:00:00+00:00", "git": {"commit": "abc"}, "tiny": True}
    (tmp_path / "provenance.json").write_text(json.dumps(record))
    assert "not measured" in gpu_check_markdown(tmp_path)  # a toy CPU run is not a projection
    (tmp_path / "provenance.json").write_text(json.dumps(record | {"tiny": False}))
    page = gpu_check_markdown(tmp_path)
    assert "NVIDIA H200" in page and "| 4 | 20.5 h |" in page and "| resnet50 | 2500 | 0.97 | 1.80 | 96.0 |" in page


def test_reproducibility_page_says_which_cohorts_were_built_and_which_skipped():
    import pandas as pd

    record = {
        "params_name": "default", "params_file": "/x/params/default.yaml", "data_dir": "/data",
        "params": {"cohorts": {"hcp": {"source": "simulated", "task": "sex"},
                               "abide1": {"source": "semi-real", "task": "autism", "required": False}}},
        "command": "studylib run", "started": "s", "finished": "f", "wall_seconds": 1.0, "stages": [],
        **collect_environment(),
    }
    built = pd.DataFrame([{"cohort": "hcp", "subjects": 200, "QC exclusions": 0}])
    page = render_markdown(record, cohorts=built)
    assert "| hcp | simulated | sex | built: 200 subjects, 0 QC exclusion(s) |" in page
    assert "| abide1 | semi-real | autism | skipped: optional (`required: false`), and the data directory `/data`" in page
