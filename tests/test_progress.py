"""Progress bars go to the terminal when the runner executes a notebook, and into the cell otherwise."""

from __future__ import annotations

import io
import sys

import nbformat

from studylib.progress import PROGRESS_ENV, progress_bar


def test_bars_go_to_the_process_stderr_under_the_runner(monkeypatch, capsys):
    terminal = io.StringIO()
    monkeypatch.setattr(sys, "__stderr__", terminal)
    monkeypatch.setenv(PROGRESS_ENV, "terminal")
    for _ in progress_bar(range(3), desc="under the runner", mininterval=0):
        pass
    assert "under the runner" in terminal.getvalue() and capsys.readouterr().err == ""
    monkeypatch.delenv(PROGRESS_ENV)
    for _ in progress_bar(range(3), desc="interactive", mininterval=0):
        pass
    assert "interactive" in capsys.readouterr().err and "interactive" not in terminal.getvalue()


def test_an_executed_notebook_keeps_its_summary_but_not_its_bars(tmp_path):
    from studylib.study.runner import _execute

    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook.cells = [nbformat.v4.new_code_cell(
        "from studylib.progress import progress_bar\n"
        "done = sum(1 for _ in progress_bar(range(50), desc='a bar', mininterval=0))\n"
        "print(f'{done} items')")]
    source = tmp_path / "source.ipynb"
    nbformat.write(notebook, source)
    _execute(source, tmp_path / "out.ipynb", {}, tmp_path, verbose=False)
    outputs = nbformat.read(tmp_path / "out.ipynb", as_version=4).cells[0].outputs
    text = "".join(output.get("text", "") for output in outputs)
    assert text == "50 items\n"
