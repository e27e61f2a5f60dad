"""The committed notebooks: all nine, thin, parameterised, outputs stripped, all in the book."""

from __future__ import annotations

import nbformat
import pytest

from studylib.study.book import CLAIMS_PAGE, REPRODUCIBILITY_PAGE, book_pages
from studylib.study.report import PAGES as REPORT_PAGES
from studylib.study.stages import STAGES, stage_names

from tests.support import PROJECT

NOTEBOOKS = PROJECT / "notebooks"


def test_one_notebook_per_stage():
    assert sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb")) == stage_names()
    assert stage_names() == [
        "01_preprocess", "02_flatten", "03_rasterize", "04_train_sex", "05_train_asd_2stage",
        "06_stack", "07_ablation", "08_occlusion", "09_baselines",
    ]


def test_stage_dependencies_point_backwards():
    seen: set[str] = set()
    for stage in STAGES:
        assert set(stage.after) <= seen, f"{stage.name} runs after a stage that comes later"
        seen.add(stage.name)


@pytest.mark.parametrize("name", stage_names())
def test_notebook_is_parameterised_and_stripped(name):
    notebook = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    nbformat.validate(notebook)
    first = notebook.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# "), "first cell must be the page title"
    tagged = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    assert "params_file =" in tagged[0].source and "results_dir =" in tagged[0].source
    assert any(f'start_stage("{name}"' in c.source for c in notebook.cells if c.cell_type == "code")
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{name}: strip outputs before committing"
    assert notebook.metadata["kernelspec"]["name"] == "python3"


def test_toc_lists_every_notebook_and_existing_pages():
    pages = book_pages(PROJECT / "_toc.yml")
    assert [p.removeprefix("notebooks/") for p in pages if p.startswith("notebooks/")] == stage_names()
    generated = {REPRODUCIBILITY_PAGE, CLAIMS_PAGE, *REPORT_PAGES}  # written from the run when the book is built
    for page in pages:
        if page.startswith("book/") and page not in generated:
            assert (PROJECT / f"{page}.md").is_file(), page
    assert generated <= set(pages)


@pytest.mark.parametrize("name", stage_names())
def test_notebook_names_no_file_that_passes_between_notebooks(name):
    """Cohorts, flat maps, image stores, jobs and predictions are named by ``stage.layout`` only."""
    notebook = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    forbidden = ("artifacts", ".npz", ".csv", ".npy", ".json", '/ "', '/ f"', "Path(")
    for cell in notebook.cells:
        if cell.cell_type == "code" and "parameters" not in cell.metadata.get("tags", []):
            found = [text for text in forbidden if text in cell.source]
            assert not found, f"{name}: a code cell names a path ({found}): ask stage.layout instead"
