"""Build the Jupyter Book of one run from its executed notebooks.

The book's source is assembled in ``results/<name>/book/src/``: the top-level
``_config.yml`` and ``_toc.yml``, the pages in ``book/``, papermill's executed
notebooks in ``notebooks/`` (execution is off: the book shows exactly what ran),
and ``book/reproducibility.md`` rendered from ``provenance.json``. Jupyter Book
then builds HTML into ``results/<name>/book/_build/html`` with warnings as errors.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import yaml

from .budget import SPEED_NOTEBOOK, training_rate
from .config import load_params, params_name
from .layout import ResultsLayout, project_root, recorded_gpu_check
from .claims import claims_markdown
from .provenance import render_markdown
from .report import PAGES as REPORT_PAGES
from .report import page_markdown

__all__ = ["BookError", "book_pages", "build_book"]

REPRODUCIBILITY_PAGE = "book/reproducibility"
#: The page of the paper's claims checked against the run (generated from the run's tables).
CLAIMS_PAGE = "book/claims"
#: The paper's tables and figures as the run regenerated them (generated; no number typed by hand); the Data and
#: Method pages are generated the same way (:data:`studylib.study.report.PAGES`).
RESULTS_PAGE = "book/results"
#: Wall time of the last successful build (the reproducibility page shows the previous build's time).
LAST_BUILD = "last_build.json"


class BookError(RuntimeError):
    """The book cannot be built; the message says what is missing or which warning failed it."""


def book_pages(toc_file: Path) -> list[str]:
    """Every page named in a Jupyter Book ``_toc.yml`` (paths without suffix), in order."""
    toc = yaml.safe_load(toc_file.read_text())
    pages = [toc["root"]]

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if "file" in node:
                pages.append(node["file"])
            for key in ("parts", "chapters", "sections"):
                for child in node.get(key, []):
                    walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk(toc)
    return pages


def _assemble(source_root: Path, layout: ResultsLayout, src: Path) -> list[str]:
    pages = book_pages(source_root / "_toc.yml")
    notebooks = [p for p in pages if p.startswith("notebooks/")]
    missing = [p for p in notebooks if not layout.executed_notebook(Path(p).name).is_file()]
    if missing:
        raise BookError(
            f"no executed notebook for {', '.join(Path(p).name for p in missing)} in {layout.notebooks}; "
            f"run `studylib run --params <file>` first"
        )
    if not layout.provenance.is_file():
        raise BookError(f"{layout.provenance} not found; run `studylib run --params <file>` first")
    if src.exists():
        shutil.rmtree(src)
    (src / "notebooks").mkdir(parents=True)
    shutil.copy2(source_root / "_config.yml", src / "_config.yml")
    shutil.copy2(source_root / "_toc.yml", src / "_toc.yml")
    shutil.copytree(source_root / "book", src / "book")
    for page in notebooks:
        shutil.copy2(layout.executed_notebook(Path(page).name), src / f"{page}.ipynb")
    record = json.loads(layout.provenance.read_text())
    last_build = layout.book / LAST_BUILD
    book_seconds = json.loads(last_build.read_text())["seconds"] if last_build.is_file() else None
    cohorts_table = layout.tables("01_preprocess") / "cohorts.csv"
    cohorts = pd.read_csv(cohorts_table) if cohorts_table.is_file() else None
    stages = {stage["name"]: stage for stage in record["stages"]}
    speed = training_rate(layout.training_jobs("sex"), stages.get(SPEED_NOTEBOOK))
    reproducibility = render_markdown(record, layout.gpu_check, book_seconds, cohorts, recorded_gpu_check(), speed)
    (src / f"{REPRODUCIBILITY_PAGE}.md").write_text(reproducibility)
    (src / f"{CLAIMS_PAGE}.md").write_text(claims_markdown(layout))
    for page, (title, introduction, sections) in REPORT_PAGES.items():
        (src / f"{page}.md").write_text(page_markdown(layout, src, title, introduction, sections))
    return pages


def build_book(
    params_file: str | Path,
    *,
    results_root: str | Path = "results",
    source_root: str | Path | None = None,
    echo: Callable[[str], None] = print,
) -> Path:
    """Build the HTML book for a parameter set's run; return the path of ``index.html``.

    Raises
    ------
    ParamsError
        Invalid parameter file.
    BookError
        Notebooks not executed yet, or Jupyter Book reported a warning or error.
    """
    params_file = Path(params_file).resolve()
    load_params(params_file)
    layout = ResultsLayout.for_params(params_name(params_file), results_root)
    source_root = Path(source_root) if source_root else project_root()
    src = layout.book / "src"
    tick = time.perf_counter()
    pages = _assemble(source_root, layout, src)
    echo(f"building the book from {len(pages)} pages in {src}")
    command = [
        sys.executable, "-c", "from jupyter_book.cli.main import main; main()", "build", str(src),
        "--path-output", str(layout.book), "--builder", "html", "--warningiserror", "--keep-going", "--all",
    ]
    done = subprocess.run(command, capture_output=True, text=True)
    log = layout.book / "build.log"
    log.write_text(done.stdout + "\n" + done.stderr)
    html = layout.book / "_build" / "html"
    if done.returncode != 0:
        warnings = [line for line in (done.stdout + done.stderr).splitlines() if "WARNING" in line or "ERROR" in line]
        detail = "\n".join(warnings[:20]) or done.stderr[-3000:]
        raise BookError(f"jupyter-book build failed (full log: {log}):\n{detail}")
    absent = [page for page in pages if not (html / f"{page}.html").is_file()]
    if absent:
        raise BookError(f"the build finished but these pages are missing from {html}: {', '.join(absent)}")
    index = html / "index.html"
    (layout.book / LAST_BUILD).write_text(json.dumps({"seconds": round(time.perf_counter() - tick, 1)}) + "\n")
    echo(f"book: {index}")
    return index
