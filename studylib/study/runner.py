"""Execute the numbered notebooks with papermill, skipping those whose inputs did not change.

A stage's *fingerprint* hashes everything its results depend on: the notebook's
source, the source of the ``studylib`` modules it imports and of every module
those import in turn (:func:`studylib.hashing.code_digest`), the parameter
sections it declares (and may read: see :func:`studylib.study.notebook.start_stage`), the
content hashes of the data directory's reference files and of real cohorts' input files when it reads
data, and the fingerprints of its upstream stages. After a successful run the
fingerprint is stored in ``results/<name>/.stamps/<stage>.json``; the next run
skips the stage when the fingerprint is the same and says which input changed
otherwise.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..hashing import code_digest, sha256_bytes, sha256_json, source_imports
from ..params import REAL_SOURCES, StudyParams, resolve_data_dir
from ..progress import PROGRESS_ENV
from .config import absent_data_note, load_params, params_name
from .layout import ResultsLayout, project_root
from .provenance import write_provenance
from .stages import STAGES, RunReport, Stage, StageResult, stage_names

__all__ = ["StageFailed", "fingerprint_components", "notebook_imports", "run_study"]

Echo = Callable[[str], None]


class StageFailed(RuntimeError):
    """A notebook raised; the message names the notebook, the cell and the error."""

    def __init__(self, stage: str, message: str, notebook: Path):
        super().__init__(message)
        self.stage = stage
        self.notebook = notebook


def notebook_imports(notebook: Path) -> set[str]:
    """The ``studylib`` modules a notebook's code cells import (IPython magics and shell lines ignored)."""
    cells = json.loads(notebook.read_text())["cells"]
    found: set[str] = set()
    for cell in cells:
        if cell.get("cell_type") != "code":
            continue
        source = "".join(cell["source"])
        lines = [line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))]
        try:
            found |= source_imports("\n".join(lines))
        except SyntaxError as error:
            raise ValueError(f"{notebook}: a code cell is not valid Python ({error})") from None
    return found


def fingerprint_components(stage: Stage, notebook: Path, params: StudyParams, layout: ResultsLayout) -> dict[str, str]:
    """Hash of each input of ``stage``: notebook, the ``studylib`` code it imports (transitively), each parameter
    key, data, upstream stages."""
    components = {"notebook": sha256_bytes(notebook.read_bytes()),
                  "studylib code": code_digest(*sorted(notebook_imports(notebook)))}
    for key in stage.params:
        components[f"params.{key}"] = sha256_json(params.section(key))
    if stage.reads_data_dir:
        from ..data.build import cohort_inputs
        from ..data.files import reference_manifest

        data_dir = resolve_data_dir(params)
        components["data directory"] = sha256_json(reference_manifest(data_dir, layout.cohort_cache))
        for name, spec in params.cohorts.items():  # real data: the folders' contents, not only their paths
            if stage.reads_cohort_inputs and spec.source in REAL_SOURCES:
                manifest = cohort_inputs(name, spec, data_dir, layout.cohort_cache)["inputs"]
                components[f"inputs of cohort {name}"] = sha256_json(manifest)
    for upstream in stage.after:
        stamp = _read_stamp(layout.stamp(upstream))
        components[f"upstream {upstream}"] = stamp["fingerprint"] if stamp else "never ran"
    return components


def _read_stamp(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _changed(old: dict[str, str], new: dict[str, str]) -> str:
    changed = [key for key in new if old.get(key) != new[key]]
    return "changed: " + ", ".join(changed) if changed else "inputs changed"


def _format_failure(stage: str, error: Exception, notebook: Path) -> str:
    cell = getattr(error, "exec_count", None)
    index = getattr(error, "cell_index", None)
    source = (getattr(error, "source", "") or "").strip()
    ename = getattr(error, "ename", type(error).__name__)
    evalue = getattr(error, "evalue", str(error))
    where = f"cell {cell}" if cell is not None else "a cell"
    if index is not None:
        where += f" (cell index {index})"
    excerpt = "\n".join("    " + line for line in source.splitlines()[:12])
    return (
        f"notebook {stage} failed in {where}:\n{excerpt}\n{ename}: {evalue}\n"
        f"The partially executed notebook is kept for inspection: {notebook}"
    )


def _execute(source: Path, target: Path, parameters: dict[str, Any], cwd: Path, verbose: bool) -> None:
    import papermill
    from papermill.exceptions import PapermillExecutionError

    target.parent.mkdir(parents=True, exist_ok=True)
    # Progress bars go to this terminal, not into the page (studylib.progress): the kernel inherits the variable,
    # and with fd capture off its own stderr is this process's.
    previous = os.environ.get(PROGRESS_ENV)
    os.environ[PROGRESS_ENV] = "terminal"
    try:
        papermill.execute_notebook(
            str(source),
            str(target),
            parameters=parameters,
            cwd=str(cwd),
            progress_bar=False,
            log_output=verbose,
            kernel_name="python3",
            # The kernel talks to this process only; its warning about unencrypted local TCP is noise here.
            extra_arguments=["--IPKernelApp.log_level=ERROR", "--IPKernelApp.capture_fd_output=False"],
        )
    except PapermillExecutionError as error:
        raise StageFailed(source.stem, _format_failure(source.stem, error, target), target) from None
    finally:
        if previous is None:
            os.environ.pop(PROGRESS_ENV, None)
        else:
            os.environ[PROGRESS_ENV] = previous


def run_study(
    params_file: str | Path,
    *,
    results_root: str | Path = "results",
    only: Sequence[str] | None = None,
    force: bool = False,
    verbose: bool = False,
    notebooks_dir: str | Path | None = None,
    stages: Iterable[Stage] = STAGES,
    echo: Echo = print,
) -> RunReport:
    """Run the study's notebooks in order for one parameter set.

    Parameters
    ----------
    params_file : str or Path
        The parameter set (validated before anything runs).
    results_root : str or Path
        Results go to ``<results_root>/<params name>/``.
    only : sequence of str, optional
        Stage names to consider; the others are left as they are.
    force : bool
        Re-run selected stages even when nothing changed.
    verbose : bool
        Stream the notebooks' cell output to the log.
    notebooks_dir : str or Path, optional
        Folder of the source notebooks (default: the project's ``notebooks/``).
    stages : iterable of Stage
        The stage registry (tests pass their own).
    echo : callable
        Receives one progress line per stage.

    Raises
    ------
    ParamsError
        Invalid parameter file (before any notebook runs).
    StageFailed
        A notebook raised; later stages are not run. ``provenance.json`` records the failure.
    """
    stages = tuple(stages)
    params_file = Path(params_file).resolve()
    params = load_params(params_file)
    name = params_name(params_file)
    known = stage_names(stages)
    selected = set(known if not only else only)
    unknown = sorted(selected - set(known))
    if unknown:
        raise ValueError(f"unknown notebook(s) {', '.join(unknown)}; choose from {', '.join(known)}")

    root = project_root()
    notebooks_dir = Path(notebooks_dir).resolve() if notebooks_dir else root / "notebooks"
    layout = ResultsLayout.for_params(name, results_root)
    layout.stamps.mkdir(parents=True, exist_ok=True)
    report = RunReport(name)
    started = datetime.now(timezone.utc)
    echo(f"study '{name}' ({params_file}) -> {layout.root}")
    note = absent_data_note(params)
    if note:
        echo(note)

    try:
        for number, stage in enumerate(stages, start=1):
            prefix = f"[{number}/{len(stages)}] {stage.name:<22}"
            if stage.name not in selected:
                stamp = _read_stamp(layout.stamp(stage.name)) or {}
                report.results.append(StageResult(stage.name, "not selected", stamp.get("seconds"),
                                                  stamp.get("executed_at"), stamp.get("fingerprint")))
                echo(f"{prefix} not selected")
                continue
            source = notebooks_dir / f"{stage.name}.ipynb"
            if not source.is_file():
                raise FileNotFoundError(f"notebook for stage {stage.name} not found: {source}")
            components = fingerprint_components(stage, source, params, layout)
            fingerprint = sha256_json(components)
            stamp = _read_stamp(layout.stamp(stage.name))
            target = layout.executed_notebook(stage.name)
            if stamp and stamp["fingerprint"] == fingerprint and target.is_file() and not force:
                report.results.append(StageResult(stage.name, "skipped", stamp.get("seconds"),
                                                  stamp.get("executed_at"), fingerprint))
                echo(f"{prefix} skipped: unchanged since {stamp.get('executed_at', '?')}")
                continue
            reason = "forced" if force else ("first run" if not stamp else _changed(stamp["components"], components))
            layout.stamp(stage.name).unlink(missing_ok=True)
            tick = time.perf_counter()
            try:
                _execute(source, target, {"params_file": str(params_file), "results_dir": str(layout.root)},
                         root, verbose)
            except StageFailed:
                seconds = time.perf_counter() - tick
                report.results.append(StageResult(stage.name, "failed", seconds, None, fingerprint, reason))
                echo(f"{prefix} FAILED after {seconds:.1f} s")
                raise
            seconds = time.perf_counter() - tick
            executed_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
            layout.stamp(stage.name).write_text(json.dumps(
                {"fingerprint": fingerprint, "components": components, "seconds": round(seconds, 3),
                 "executed_at": executed_at}, indent=2))
            report.results.append(StageResult(stage.name, "ran", seconds, executed_at, fingerprint, reason))
            echo(f"{prefix} ran in {seconds:7.1f} s ({reason})")
    finally:
        write_provenance(layout, params, params_file, report, started, argv=sys.argv)
    return report
