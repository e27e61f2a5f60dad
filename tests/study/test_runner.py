"""The runner executes real notebooks through a Jupyter kernel; these tests use three tiny ones."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
import yaml

from studylib.study.runner import StageFailed, run_study
from studylib.study.stages import Stage

from tests.support import minimal_params

pytestmark = pytest.mark.slow

STAGES = (
    Stage("01_first", "first", ("seed",)),
    Stage("02_second", "second", ("raster",), after=("01_first",)),
    Stage("03_third", "third", ("occlusion",)),
)


def _notebook(path: Path, body: str) -> None:
    parameters = nbformat.v4.new_code_cell('params_file = "unset"\nresults_dir = "unset"')
    parameters.metadata["tags"] = ["parameters"]
    notebook = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_markdown_cell(f"# {path.stem}"), parameters, nbformat.v4.new_code_cell(body)],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    )
    nbformat.write(notebook, path)


WRITES_MARKER = """
from studylib.study.notebook import start_stage
from studylib.study.stages import Stage
stage = start_stage(Stage(STAGE, "test", PARAMS), params_file, results_dir)
(stage.tables_dir / "marker.txt").write_text(str(getattr(stage.params, PARAMS[0])))
"""


def _body(stage: Stage) -> str:
    return f"STAGE = {stage.name!r}\nPARAMS = {stage.params!r}\n" + WRITES_MARKER


@pytest.fixture
def study(tmp_path, write_params):
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    for stage in STAGES:
        _notebook(notebooks / f"{stage.name}.ipynb", _body(stage))
    params = write_params(minimal_params(), name="tiny")
    lines: list[str] = []

    def run(**kwargs):
        lines.clear()
        return run_study(params, results_root=tmp_path / "results", notebooks_dir=notebooks, stages=STAGES,
                         echo=lines.append, **kwargs)

    return run, params, notebooks, tmp_path / "results" / "tiny", lines


def _statuses(report):
    return {result.name: result.status for result in report.results}


def test_first_run_runs_all_then_second_skips_all_then_force(study):
    run, _, _, root, lines = study
    first = run()
    assert _statuses(first) == {"01_first": "ran", "02_second": "ran", "03_third": "ran"}
    assert (root / "notebooks" / "02_second.ipynb").is_file()
    assert (root / "tables" / "01_first" / "marker.txt").read_text() == "1"
    assert all("ran in" in line and "first run" in line for line in lines[1:])

    second = run()
    assert set(_statuses(second).values()) == {"skipped"}
    assert all("skipped: unchanged since" in line for line in lines[1:])

    forced = run(force=True)
    assert set(_statuses(forced).values()) == {"ran"}
    assert all("(forced)" in line for line in lines[1:])


def test_param_change_reruns_dependent_stages_only(study):
    run, params, _, _, lines = study
    run()
    data = yaml.safe_load(params.read_text())
    data["occlusion"]["stride"] = 4
    params.write_text(yaml.safe_dump(data))
    assert _statuses(run()) == {"01_first": "skipped", "02_second": "skipped", "03_third": "ran"}
    assert "changed: params.occlusion" in lines[3]

    data["seed"] = 7  # 01 reads seed; 02 runs after 01, so it re-runs too
    params.write_text(yaml.safe_dump(data))
    assert _statuses(run()) == {"01_first": "ran", "02_second": "ran", "03_third": "skipped"}
    assert "changed: upstream 01_first" in lines[2]


def test_notebook_edit_reruns_that_notebook(study):
    run, _, notebooks, _, _ = study
    run()
    notebook = nbformat.read(notebooks / "03_third.ipynb", as_version=4)
    notebook.cells.append(nbformat.v4.new_code_cell("1 + 1"))
    nbformat.write(notebook, notebooks / "03_third.ipynb")
    assert _statuses(run()) == {"01_first": "skipped", "02_second": "skipped", "03_third": "ran"}


def test_only_runs_the_named_notebooks(study):
    run, _, _, root, _ = study
    report = run(only=["03_third"])
    assert _statuses(report) == {"01_first": "not selected", "02_second": "not selected", "03_third": "ran"}
    assert not (root / "notebooks" / "01_first.ipynb").exists()
    with pytest.raises(ValueError, match="unknown notebook.*99_nothing"):
        run(only=["99_nothing"])


def test_failure_names_notebook_cell_and_error_and_keeps_partial_notebook(study):
    run, _, notebooks, root, _ = study
    run()
    _notebook(notebooks / "02_second.ipynb", "x = 1\nraise RuntimeError('planted failure')")
    with pytest.raises(StageFailed) as caught:
        run()
    message = str(caught.value)
    assert "notebook 02_second failed in cell" in message
    assert "raise RuntimeError('planted failure')" in message
    assert "RuntimeError: planted failure" in message
    partial = root / "notebooks" / "02_second.ipynb"
    assert str(partial) in message
    assert "planted failure" in partial.read_text()  # the error output is in the kept notebook
    assert not (root / ".stamps" / "02_second.json").exists()  # the old success no longer counts

    provenance = json.loads((root / "provenance.json").read_text())
    statuses = {s["name"]: s["status"] for s in provenance["stages"]}
    assert statuses == {"01_first": "skipped", "02_second": "failed"}  # the run stopped there

    # After the failure, the broken notebook runs again even though nothing changed.
    with pytest.raises(StageFailed):
        run()


def test_provenance_records_params_versions_commit_platform_device_timing(study):
    run, params, _, root, _ = study
    run()
    record = json.loads((root / "provenance.json").read_text())
    assert record["params_name"] == "tiny"
    assert record["params"]["seed"] == 1
    assert record["params"]["flatten"]["max_iterations"] == 100  # defaults resolved
    assert {"studylib", "torch", "papermill", "jupyter-book"} <= set(record["packages"])
    assert "commit" in record["git"]
    assert record["platform"]["python"].startswith("3.")
    assert record["device"]["accelerator"] in {"cpu", "cuda"}
    assert all(stage["seconds"] > 0 for stage in record["stages"])


def test_a_notebook_that_reads_an_undeclared_section_fails_naming_it(study):
    run, _, notebooks, _, _ = study
    _notebook(notebooks / "02_second.ipynb", _body(STAGES[1]) + "stage.params.train\n")
    with pytest.raises(StageFailed) as caught:
        run()
    message = str(caught.value)
    assert "UndeclaredParams" in message and "notebook 02_second reads params.train" in message
    assert "declared: raster" in message


def test_the_code_fingerprint_covers_what_the_notebook_imports(study, tmp_path):
    from studylib.study.runner import notebook_imports

    run, _, notebooks, _, _ = study
    _notebook(notebooks / "03_third.ipynb", _body(STAGES[2]) + "%matplotlib inline\nfrom studylib import plotting\n")
    assert notebook_imports(notebooks / "03_third.ipynb") == {"studylib.study.notebook", "studylib.study.stages",
                                                               "studylib.plotting"}
    assert notebook_imports(notebooks / "01_first.ipynb") == {"studylib.study.notebook", "studylib.study.stages"}
    run()
    stamps = {name: json.loads((tmp_path / "results" / "tiny" / ".stamps" / f"{name}.json").read_text())
              for name in ("01_first", "03_third")}
    assert stamps["01_first"]["components"]["studylib code"] != stamps["03_third"]["components"]["studylib code"]


def test_the_preprocess_fingerprint_covers_a_real_folder_s_contents(tmp_path, write_params):
    import os

    from studylib.study.config import load_params
    from studylib.study.layout import ResultsLayout
    from studylib.study.runner import fingerprint_components

    root = tmp_path / "HCP"
    maps = root / "100001" / "MNINonLinear" / "fsaverage_LR32k"
    maps.mkdir(parents=True)
    (maps / "100001.L.thickness.32k_fs_LR.shape.gii").write_bytes(b"left")
    (tmp_path / "behavioral.csv").write_text("Subject,Gender,Age\n100001,F,22-25\n")
    data = minimal_params()
    data["cohorts"]["hcp"] = {"source": "hcp", "path": str(root), "phenotypes": str(tmp_path / "behavioral.csv"),
                              "metrics": ["thickness"]}
    path = write_params(data)
    notebook = tmp_path / "01.ipynb"
    _notebook(notebook, "x = 1")
    stage = Stage("01_preprocess", "cohorts", ("seed", "cohorts"), reads_data_dir=True, reads_cohort_inputs=True)
    layout = ResultsLayout(tmp_path / "results")

    def inputs():
        return fingerprint_components(stage, notebook, load_params(path), layout)["inputs of cohort hcp"]

    first = inputs()
    os.utime(maps / "100001.L.thickness.32k_fs_LR.shape.gii", ns=(1, 1))
    assert inputs() == first  # only a modification time
    (maps / "100001.R.thickness.32k_fs_LR.shape.gii").write_bytes(b"right")
    second = inputs()
    assert second != first  # a file appeared
    (tmp_path / "behavioral.csv").write_text("Subject,Gender,Age\n100001,M,22-25\n")
    assert inputs() != second  # the phenotypes changed


def test_a_run_without_the_data_says_once_what_the_optional_cohort_needs(study, tmp_path, monkeypatch):
    run, params, _, _, lines = study
    (tmp_path / "no_data").mkdir()
    monkeypatch.setenv("STUDYLIB_DATA", str(tmp_path / "no_data"))
    data = yaml.safe_load(params.read_text())
    data["cohorts"]["abide1"] = {"source": "semi-real", "task": "autism", "metrics": ["thickness", "area"],
                                 "required": False}
    params.write_text(yaml.safe_dump(data))
    run(only=["01_first"])
    notes = [line for line in lines if "lacks files that optional cohorts need" in line]
    assert len(notes) == 1
    for needed in ("abide1/Phenotypic_V1_0b_preprocessed1.csv",
                   "abide1/freesurfer6/lh.aparc_table_area.tsv", "brainstats_abide_with_pial.txt",
                   "studylib fetch abide1 --data-dir"):
        assert needed in notes[0]


def test_notes_show_as_a_list_on_the_page_and_as_lines_in_plain_python(tmp_path, write_params, capsys):
    from tests.support import minimal_params

    from studylib.study.notebook import start_stage

    stage = start_stage("06_stack", str(write_params(minimal_params())), str(tmp_path / "results"))
    stage.show_notes(["first note", "second"])
    stage.show_notes([], empty="nothing to say")
    stage.show_notes([])
    assert capsys.readouterr().out == "first note\nsecond\nnothing to say\n"
