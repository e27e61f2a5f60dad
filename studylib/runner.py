"""Execute the numbered notebooks with papermill, skipping those whose inputs did not change.

A stage's *fingerprint* hashes everything its results depend on: the notebook's
source, the ``studylib`` package source, the parameter sections it reads, the
data directory's file listing (name, size, modification time) when it reads
data, and the fingerprints of its upstream stages. After a successful run the
fingerprint is stored in ``results/<name>/.stamps/<stage>.json``; the next run
skips the stage when the fingerprint is the same and says which input changed
otherwise.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .config import StudyParams, load_params, params_name, resolve_data_dir
from .layout import ResultsLayout, project_root
from .stages import STAGES, Stage, stage_names

__all__ = ["RunReport", "StageFailed", "StageResult", "fingerprint_components", "run_study"]

Echo = Callable[[str], None]


class StageFailed(RuntimeError):
    """A notebook raised; the message names the notebook, the cell and the error."""

    def __init__(self, stage: str, message: str, notebook: Path):
        super().__init__(message)
        self.stage = stage
        self.notebook = notebook


@dataclass
class StageResult:
    name: str
    status: str  # "ran", "skipped", "failed", "not selected"
    seconds: float | None = None
    executed_at: str | None = None
    fingerprint: str | None = None
    reason: str = ""


@dataclass
class RunReport:
    params_name: str
    results: list[StageResult] = field(default_factory=list)

    def by_status(self, status: str) -> list[str]:
        return [r.name for r in self.results if r.status == status]


def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _sha256_json(value: Any) -> str:
    return _sha256_bytes(json.dumps(value, sort_keys=True, default=str).encode())


def package_source_hash() -> str:
    """Hash of every ``.py`` file of the ``studylib`` package (path and content)."""
    package = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def data_dir_listing_hash(data_dir: Path) -> str:
    """Hash of the names, sizes and modification times of the files under ``data_dir``."""
    if not data_dir.is_dir():
        return "absent"
    entries = []
    for path in sorted(p for p in data_dir.rglob("*") if p.is_file()):
        stat = path.stat()
        entries.append((path.relative_to(data_dir).as_posix(), stat.st_size, stat.st_mtime_ns))
    return _sha256_json([str(data_dir), entries])


def fingerprint_components(
    stage: Stage,
    notebook: Path,
    params: StudyParams,
    layout: ResultsLayout,
    code_hash: str,
) -> dict[str, str]:
    """Hash of each input of ``stage``: notebook, code, each parameter key, data, upstream stages."""
    components = {"notebook": _sha256_bytes(notebook.read_bytes()), "studylib code": code_hash}
    for key in stage.params:
        components[f"params.{key}"] = _sha256_json(params.section(key))
    if stage.reads_data_dir:
        components["data directory"] = data_dir_listing_hash(resolve_data_dir(params))
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
            extra_arguments=["--IPKernelApp.log_level=ERROR"],
        )
    except PapermillExecutionError as error:
        raise StageFailed(source.stem, _format_failure(source.stem, error, target), target) from None


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
    from .provenance import write_provenance

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
    code_hash = package_source_hash()
    report = RunReport(name)
    started = datetime.now(timezone.utc)
    echo(f"study '{name}' ({params_file}) -> {layout.root}")

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
            components = fingerprint_components(stage, source, params, layout, code_hash)
            fingerprint = _sha256_json(components)
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
