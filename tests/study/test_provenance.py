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


def test_a_gpu_check_recorded_with_the_project_is_shown_when_this_checkout_ran_none(tmp_path):
    import json

    import pandas as pd

    from studylib.study.provenance import gpu_check_markdown

    local, recorded = tmp_path / "results", tmp_path / "records"
    for folder, device, card in ((local, "cpu", "CPU (no GPU)"), (recorded, "cuda", "NVIDIA H200")):
        folder.mkdir()
        (folder / "provenance.json").write_text(json.dumps({"started": "2026-12-05T10:00:00+00:00",
                                                            "git": {"commit": "4a3f92e"}, "tiny": False}))
        pd.DataFrame([{"device": device, "card": card}]).to_csv(folder / "device.csv", index=False)
    pd.DataFrame({"gpus": [1, 4, 8], "hours": [61.0, 15.3, 7.7], "card": "NVIDIA H200", "models": 3284,
                  "training_images": 600_000_000, "backbones": "densenet121 + resnet50"}).to_csv(
        recorded / "projection.csv", index=False)
    pd.DataFrame([{"test": "resume", "status": "failed", "pytest": "1 failed in 9.1s"}]).to_csv(
        recorded / "resume.csv", index=False)
    pd.DataFrame([{"backbone": "resnet50", "image_size": 224, "occluded_images_per_s": 9000.0, "task": task,
                   "paper_copies": 1, "hours_on_one_device": hours, "status": "measured"}
                  for task, hours in (("sex", 1.25), ("autism", 2.5))]).to_csv(recorded / "occlusion.csv",
                                                                               index=False)
    pd.DataFrame([{"section": "device", "seconds": 1.0, "budget_seconds": 5.0, "within_budget": True, "error": None},
                  {"section": "baselines", "seconds": 2.0, "budget_seconds": 40.0, "within_budget": True,
                   "error": "OutOfMemoryError: CUDA out of memory"},
                  {"section": "occlusion", "seconds": 60.0, "budget_seconds": 40.0, "within_budget": False,
                   "error": None}]).to_csv(recorded / "sections.csv", index=False)

    assert "| 1 | not measured |" in gpu_check_markdown(local)  # a CPU run of the check is no GPU measurement
    page = gpu_check_markdown(local, recorded)
    assert "recorded with the project" in page and "NVIDIA H200" in page and "`4a3f92e`" in page
    assert "| 4 | 15.3 h |" in page
    assert "GPU resume test" in page and "**failed** (1 failed in 9.1s)" in page
    assert "| resnet50 | 9000 | 1.25 | 2.50 |" in page
    assert "has not run on a GPU" in page  # no study.csv: the gpu-check study's accuracies are not measured
    assert "baselines (OutOfMemoryError: CUDA out of memory)" in page
    assert "occlusion (over its budget: 60 s of 40 s)" in page and "device (" not in page
    assert "this checkout's results" in gpu_check_markdown(recorded, local)  # a checkout's own GPU run comes first
