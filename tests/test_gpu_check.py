"""The prepared GPU check runs end to end (on a CPU at toy sizes), so it cannot rot between GPU loans."""

from __future__ import annotations

import importlib.util
import runpy

import pandas as pd

from tests.support import PROJECT


def test_gpu_check_runs_every_section_and_writes_its_tables(tmp_path):
    script = runpy.run_path(str(PROJECT / "benchmarks" / "gpu_check.py"))
    script["main"](["--device", "cpu", "--tiny", "--budget-scale", "0.2", "--out", str(tmp_path)])
    sections = pd.read_csv(tmp_path / "sections.csv")
    assert list(sections["section"]) == ["device", "throughput", "resume", "projection", "occlusion", "baselines",
                                         "study"]
    occlusion = pd.read_csv(tmp_path / "occlusion.csv")
    assert set(occlusion["task"]) == {"sex", "autism"} and (occlusion["hours_on_one_device"] > 0).all()
    throughput = pd.read_csv(tmp_path / "throughput.csv")
    assert (throughput[["engine_resident", "engine_streamed", "bare_loop"]] > 0).all().all()
    projection = pd.read_csv(tmp_path / "projection.csv")
    assert list(projection["gpus"]) == [1, 4, 8]
    hours = projection["hours"].to_numpy()
    assert hours[0] > 0 and hours[0] >= hours[1] >= hours[2]
    assert projection["card"].str.contains("not a projection").all()
    assert (tmp_path / "provenance.json").is_file()
    baselines = pd.read_csv(tmp_path / "baselines.csv")
    rate = baselines[baselines["kind"] == "rate"]
    assert list(rate["backbone"]) == ["densenet3d_small"] and (rate["volumes_per_s"] > 0).all()
    plan = baselines[baselines["kind"] == "paper plan"]
    assert set(plan["arm"]) == {"slice", "3d-volume", "3d-mesh"} and (plan["models"] > 0).all()
    study = pd.read_csv(tmp_path / "study.csv")
    assert study.loc[0, "status"] == "not run (no GPU)" and study.loc[0, "models"] > 100  # gpu-check.yaml's plan


def test_gpu_check_runs_only_the_sections_asked_for(tmp_path):
    script = runpy.run_path(str(PROJECT / "benchmarks" / "gpu_check.py"))
    script["main"](["--device", "cpu", "--tiny", "--sections", "study", "--out", str(tmp_path)])
    assert list(pd.read_csv(tmp_path / "sections.csv")["section"]) == ["device", "study"]
    assert not (tmp_path / "throughput.csv").exists()


def test_a_failing_section_is_recorded_and_the_others_still_run(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("gpu_check_under_test", PROJECT / "benchmarks" / "gpu_check.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)

    def broken(*args, **kwargs):
        raise RuntimeError("no kernel image is available for execution on the device")

    monkeypatch.setattr(script, "throughput_section", broken)
    script.main(["--device", "cpu", "--tiny", "--sections", "projection", "study", "--commit", "abc123",
                 "--out", str(tmp_path)])
    sections = pd.read_csv(tmp_path / "sections.csv").set_index("section")
    assert list(sections.index) == ["device", "throughput", "projection", "study"]
    assert "no kernel image" in sections.loc["throughput", "error"]
    assert "throughput section" in sections.loc["projection", "error"]  # projection needs a measured rate
    assert pd.isna(sections.loc["study", "error"]) and (tmp_path / "study.csv").is_file()
    assert not (tmp_path / "throughput.csv").exists()
