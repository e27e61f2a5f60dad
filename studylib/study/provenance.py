"""``provenance.json``: what produced a run's results, and its page in the book.

Records the resolved parameters, the versions of ``studylib``'s dependencies,
the git commit (and whether the tree had uncommitted changes), the platform,
the compute device and the per-notebook timings.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..params import StudyParams, resolve_data_dir
from .config import params_name
from .layout import ResultsLayout, project_root
from .stages import RunReport

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = ["cohorts_markdown", "collect_environment", "gpu_check_markdown", "render_markdown", "write_provenance"]


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=project_root(), capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def package_versions() -> dict[str, str]:
    """Installed versions of ``studylib`` and of every dependency it declares."""
    versions = {"studylib": metadata.version("studylib")}
    for requirement in metadata.requires("studylib") or []:
        if "extra ==" in requirement:
            continue
        name = re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0]
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def describe_device() -> dict[str, Any]:
    """The accelerator torch sees (or the CPU), with thread count."""
    info: dict[str, Any] = {"cpu_count": os.cpu_count()}
    try:
        import torch
    except ImportError:
        info["torch"] = "not installed"
        return info
    info["torch_threads"] = torch.get_num_threads()
    if torch.cuda.is_available():
        info["accelerator"] = "cuda"
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        info["cuda"] = torch.version.cuda
    else:
        info["accelerator"] = "cpu"
    return info


def collect_environment() -> dict[str, Any]:
    """Versions, commit, platform and device of the current process."""
    status = _git("status", "--porcelain")
    return {
        "packages": package_versions(),
        "git": {"commit": _git("rev-parse", "HEAD"), "uncommitted_changes": bool(status) if status is not None else None},
        "platform": {
            "python": platform.python_version(),
            "system": platform.platform(),
            "machine": platform.machine(),
            "processor": platform.processor() or None,
        },
        "device": describe_device(),
    }


def write_provenance(
    layout: ResultsLayout,
    params: StudyParams,
    params_file: Path,
    report: RunReport,
    started: datetime,
    argv: list[str] | None = None,
) -> Path:
    """Write ``provenance.json`` for a run (also after a failure) and return its path."""
    finished = datetime.now(timezone.utc)
    record = {
        "params_name": params_name(params_file),
        "params_file": str(params_file),
        "params": params.model_dump(mode="json"),
        "data_dir": str(resolve_data_dir(params)),
        "command": " ".join(argv or []),
        "started": started.isoformat(timespec="seconds"),
        "finished": finished.isoformat(timespec="seconds"),
        "wall_seconds": round((finished - started).total_seconds(), 3),
        "stages": [
            {
                "name": r.name,
                "status": r.status,
                "seconds": None if r.seconds is None else round(r.seconds, 3),
                "executed_at": r.executed_at,
                "fingerprint": r.fingerprint,
                "reason": r.reason,
            }
            for r in report.results
        ],
        **collect_environment(),
    }
    layout.root.mkdir(parents=True, exist_ok=True)
    layout.provenance.write_text(json.dumps(record, indent=2) + "\n")
    return layout.provenance


def _table(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join("" if v is None else str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def gpu_check_markdown(folder: Path | None) -> str:
    """The paper-scale projection from ``benchmarks/gpu_check.py``'s tables in ``folder``, with the card named and
    its throughput; "not measured" when the check has not run on a GPU (toy CPU runs do not count)."""
    import pandas as pd

    projection = folder / "projection.csv" if folder is not None else None
    record = folder / "provenance.json" if folder is not None else None
    if projection is None or not projection.is_file() or not record.is_file() or json.loads(
            record.read_text()).get("tiny", True):
        rows = [(k, "not measured") for k in (1, 4, 8)]
        return (_table(("GPUs", "projected training time of the `paper` parameter set"), rows) + "\n\n"
                "No GPU check has run for this book: `benchmarks/gpu_check.py` measures throughput and writes this "
                "projection on a GPU machine (into `results/gpu-check/`).")
    table = pd.read_csv(projection)
    checked = json.loads(record.read_text())
    rows = [(int(r.gpus), f"{r.hours:.1f} h") for r in table.itertuples()]
    text = _table(("GPUs", f"projected training time of the `paper` parameter set ({table['card'].iloc[0]})"), rows)
    text += (f"\n\nMeasured by `benchmarks/gpu_check.py` on {checked['started']} (commit "
             f"`{checked['git']['commit']}`): {int(table['models'].iloc[0])} models, "
             f"{int(table['training_images'].iloc[0]):,} training images ({table['backbones'].iloc[0]}), counted from "
             "the study's plan (every arm, fold, stage-1 model and site-out fold), at the measured rate of the "
             "engine with images resident on the GPU; prediction, occlusion and baselines not included.")
    throughput = folder / "throughput.csv"
    if throughput.is_file():
        rates = pd.read_csv(throughput)
        text += "\n\n" + _table(
            ("backbone", "images/s (engine)", "engine / bare loop", "AMP speed-up", "GPU utilisation %"),
            [(r.backbone, f"{r.engine_resident:.0f}", f"{r.engine_vs_bare:.2f}",
              "" if pd.isna(r.amp_speedup) else f"{r.amp_speedup:.2f}", r.gpu_utilisation_percent)
             for r in rates.itertuples()])
    return text


def _notebook_times(record: dict[str, Any], book_seconds: float | None) -> str:
    """The notebooks' last execution, with the parameter set's time budget beside each when it has one."""
    import pandas as pd

    from ..params import BudgetParams
    from .budget import budget_table

    budget = BudgetParams(**record["params"].get("budget", {}))
    executed = {s["name"]: s["executed_at"] for s in record["stages"]}
    if not budget.minutes:
        return _table(("notebook", "last status", "seconds", "executed at (UTC)"),
                      [(s["name"], s["status"], s["seconds"], s["executed_at"]) for s in record["stages"]])
    table = budget_table(budget, record["stages"], book_seconds)

    def shown(value) -> str:
        return "" if value is None or pd.isna(value) else str(value)

    text = (f"Time budget of this parameter set ({budget.machine or 'its machine'}): each part's minutes beside "
            "its budget; a notebook's budget may hold a share for work a later issue adds to it.\n\n")
    return text + _table(
        ("part", "last status", "minutes", "budget (min)", "ratio", "within budget", "executed at (UTC)"),
        [(r["part"], r["status"], shown(r["measured minutes"]), shown(r["budget minutes"]), shown(r["ratio"]),
          {True: "yes", False: "**no**", None: ""}[r["within budget"]], executed.get(r["part"], ""))
         for r in table.to_dict("records")])


def cohorts_markdown(record: dict[str, Any], built: pd.DataFrame | None) -> str:
    """Every cohort of the run's parameters, built (subjects, QC exclusions: ``01_preprocess``'s cohorts table) or
    skipped, and why."""
    rows = []
    table = None if built is None or built.empty else built.set_index("cohort")
    for name, spec in record["params"].get("cohorts", {}).items():
        if table is not None and name in table.index:
            row = table.loc[name]
            status = f"built: {row['subjects']} subjects, {row['QC exclusions']} QC exclusion(s)"
        elif spec.get("required", True):
            status = "not built (01_preprocess has not run, or failed)"
        else:
            status = (f"skipped: optional (`required: false`), and the data directory `{record.get('data_dir')}` "
                      "lacks its files (01_preprocess names them; `studylib fetch` gets them online)")
        rows.append((name, spec.get("source", "?"), spec.get("task", "?"), status))
    return _table(("cohort", "source", "task", "status"), rows)


def render_markdown(record: dict[str, Any], gpu_check: Path | None = None, book_seconds: float | None = None,
                    cohorts: pd.DataFrame | None = None) -> str:
    """The book's reproducibility page for one ``provenance.json`` record (and the GPU check's folder, if any;
    ``book_seconds``: the last book build's time, for the time budget; ``cohorts``: ``01_preprocess``'s cohorts
    table, to say which cohorts were built and which skipped)."""
    import yaml

    git = record["git"]
    commit = git["commit"] or "unknown (not a git checkout)"
    if git.get("uncommitted_changes"):
        commit += " (with uncommitted changes)"
    device = record["device"]
    device_text = ", ".join(f"{k}: {v}" for k, v in device.items())
    stages = _notebook_times(record, book_seconds)
    packages = _table(("package", "version"), sorted(record["packages"].items()))
    params_yaml = yaml.safe_dump(record["params"], sort_keys=False).rstrip()
    executor = {"kind": "serial", "workers": None, "retries": 0, **record["params"].get("executor", {})}
    return f"""# Reproducibility

This page is generated from `provenance.json` of the run `{record['params_name']}`.
To reproduce these pages, check out the commit below and run

```bash
make setup
.venv/bin/studylib run --params params/{record['params_name']}.yaml
.venv/bin/studylib book --params params/{record['params_name']}.yaml
```

| what | value |
|---|---|
| parameter set | `{record['params_file']}` |
| git commit | `{commit}` |
| command | `{record['command']}` |
| started / finished (UTC) | {record['started']} / {record['finished']} |
| wall time of the last run | {record['wall_seconds']} s |
| data directory | `{record['data_dir']}` |
| Python | {record['platform']['python']} on {record['platform']['system']} ({record['platform']['machine']}) |
| device | {device_text} |

## Re-running one notebook, and running on your own data

One notebook, through the runner (it records provenance and skips what is unchanged), or with papermill directly:

```bash
.venv/bin/studylib run --params params/{record['params_name']}.yaml --only 06_stack --force
.venv/bin/papermill notebooks/06_stack.ipynb out.ipynb -p params_file params/{record['params_name']}.yaml \\
    -p results_dir results/{record['params_name']}
```

Real data replaces a cohort's `source` in a parameter set (see the README, "Cohorts and real data"): `hcp` (HCP
S1200 subject folders and the behavioural CSV), `freesurfer` (a FreeSurfer or FastSurfer `SUBJECTS_DIR` and the
ABIDE phenotype file), `bids` (fMRIPrep/sMRIPrep derivatives and `participants.tsv`). `flatten.mode: per-subject`
flattens each subject's own surface from those folders.

## Cohorts

{cohorts_markdown(record, cohorts)}

## Execution

| what | value |
|---|---|
| executor | {executor['kind']} (workers: {executor['workers'] or 'auto: one per GPU, else CPUs / threads'}; retries: {executor['retries']}{'; address: ' + executor['address'] if executor.get('address') else ''}) |
| intra-op threads per model | {record['params'].get('train', {}).get('threads', 'n/a')} (fixed: CPU results depend on it, not on the executor) |
| device | {device_text} |

### Paper-scale projection

{gpu_check_markdown(gpu_check)}

## Notebooks

"Skipped" notebooks were unchanged since their last execution; their time is that of the execution shown.

{stages}

## Resolved parameters

```yaml
{params_yaml}
```

## Package versions

{packages}
"""
