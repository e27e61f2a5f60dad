"""Building the book from a run: every page present, warnings are errors, missing runs are explained."""

from __future__ import annotations

import nbformat
import pytest

from studylib.study.book import BookError, build_book
from studylib.study.runner import run_study
from studylib.study.stages import STAGES

from tests.support import minimal_params


def _tiny_notebooks(folder, extra_markdown=""):
    folder.mkdir()
    for stage in STAGES:
        parameters = nbformat.v4.new_code_cell('params_file = "unset"\nresults_dir = "unset"')
        parameters.metadata["tags"] = ["parameters"]
        cells = [nbformat.v4.new_markdown_cell(f"# {stage.title}\n\n{extra_markdown}"), parameters,
                 nbformat.v4.new_code_cell("print('hello from the kernel')")]
        nbformat.write(nbformat.v4.new_notebook(
            cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}),
            folder / f"{stage.name}.ipynb")


def test_book_without_a_run_says_what_to_do(tmp_path, write_params):
    params = write_params(minimal_params(), name="never_ran")
    with pytest.raises(BookError, match=r"no executed notebook for 01_preprocess.*studylib run --params"):
        build_book(params, results_root=tmp_path / "results", echo=lambda _: None)


@pytest.mark.slow
def test_book_has_every_page_and_fails_on_warnings(tmp_path, write_params):
    params = write_params(minimal_params(), name="tiny")
    results = tmp_path / "results"
    _tiny_notebooks(tmp_path / "notebooks")
    run_study(params, results_root=results, notebooks_dir=tmp_path / "notebooks", echo=lambda _: None)

    index = build_book(params, results_root=results, echo=lambda _: None)
    html = index.parent
    for stage in STAGES:
        page = (html / "notebooks" / f"{stage.name}.html").read_text()
        assert "hello from the kernel" in page  # the executed output, not a re-execution
    reproducibility = (html / "book" / "reproducibility.html").read_text()
    assert "tiny" in reproducibility and "papermill" in reproducibility
    assert "No claim could be judged" in (html / "book" / "claims.html").read_text()  # no 06-09 tables here

    # A broken cross-reference is a Sphinx warning; the book build must fail on it and show it.
    broken = tmp_path / "broken"
    _tiny_notebooks(broken, extra_markdown="See {ref}`a-label-that-does-not-exist`.")
    run_study(params, results_root=results, notebooks_dir=broken, force=True, echo=lambda _: None)
    with pytest.raises(BookError, match="a-label-that-does-not-exist"):
        build_book(params, results_root=results, echo=lambda _: None)
