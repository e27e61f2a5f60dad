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


def _gpu_run(folder: Path | None) -> dict[str, Any] | None:
    """The provenance of ``benchmarks/gpu_check.py``'s run in ``folder`` if it ran on a GPU at full size (toy and
    CPU runs exercise the code; they measure nothing of the paper's scale), else None."""
    import pandas as pd

    record = folder / "provenance.json" if folder is not None else None
    if record is None or not record.is_file():
        return None
    checked = json.loads(record.read_text())
    device = folder / "device.csv"
    if checked.get("tiny", True) or (device.is_file() and pd.read_csv(device)["device"].iloc[0] != "cuda"):
        return None
    return checked


def gpu_check_markdown(folder: Path | None, recorded: Path | None = None) -> str:
    """``benchmarks/gpu_check.py``'s figures: the paper-scale projection with the card named, the engine's
    throughput, the GPU resume test, occlusion and 3D-baseline rates and the ``gpu-check`` study's arms; from this
    checkout's run in ``folder`` if it ran on a GPU, else from the run ``recorded`` with the project, else "not
    measured"."""
    import pandas as pd

    source = "this checkout's results (`results/gpu-check/`)"
    checked = _gpu_run(folder)
    if checked is None:
        folder, checked = recorded, _gpu_run(recorded)
        source = "the run recorded with the project (`benchmarks/records/gpu-check/`)"
    if checked is None:
        rows = [(k, "not measured") for k in (1, 4, 8)]
        return (_table(("GPUs", "projected training time of the `paper` parameter set"), rows) + "\n\n"
                "No GPU check has run for this book: `benchmarks/gpu_check.py` measures throughput, the GPU resume "
                "test, occlusion and 3D-baseline rates and writes this projection on a GPU machine (into "
                "`results/gpu-check/`, or `benchmarks/records/gpu-check/` to record it with the project).")

    def read(name: str) -> pd.DataFrame | None:
        path = folder / f"{name}.csv"
        return pd.read_csv(path) if path.is_file() else None

    def shown(value, form: str = "{}") -> str:
        return "" if value is None or pd.isna(value) else form.format(value)

    card = read("device")
    card = card["card"].iloc[0] if card is not None else "the GPU"
    text = (f"Measured by `benchmarks/gpu_check.py` on {card}, {checked['started']} (commit "
            f"`{checked['git']['commit']}`), from {source}.")
    projection = read("projection")
    if projection is None:
        text += "\n\n" + _table(("GPUs", "projected training time of the `paper` parameter set"),
                                 [(k, "not measured") for k in (1, 4, 8)])
    else:
        rows = [(int(r.gpus), f"{r.hours:.1f} h") for r in projection.itertuples()]
        text += "\n\n" + _table(("GPUs", "projected training time of the `paper` parameter set "
                                          f"({projection['card'].iloc[0]})"), rows)
        text += (f"\n\n{int(projection['models'].iloc[0])} models, {int(projection['training_images'].iloc[0]):,} "
                 f"training images ({projection['backbones'].iloc[0]}), counted from the study's plan (every arm, "
                 "fold, stage-1 model and site-out fold), at the measured rate of the engine with images resident "
                 "on the GPU; prediction, occlusion and baselines not included.")
    throughput = read("throughput")
    if throughput is not None:
        text += "\n\n" + _table(
            ("backbone", "images/s (engine)", "engine / bare loop", "AMP speed-up", "GPU utilisation %"),
            [(r.backbone, f"{r.engine_resident:.0f}", f"{r.engine_vs_bare:.2f}", shown(r.amp_speedup, "{:.2f}"),
              shown(r.gpu_utilisation_percent)) for r in throughput.itertuples()])
    resume = read("resume")
    if resume is not None:
        text += (f"\n\nGPU resume test (an interrupted GPU fit resumed from its checkpoint in a new model object "
                 f"predicts what an uninterrupted fit predicts): **{resume['status'].iloc[0]}** "
                 f"({resume['pytest'].iloc[0]}).")
    occlusion = read("occlusion")
    if occlusion is not None and "occluded_images_per_s" in occlusion:
        measured = occlusion.dropna(subset=["occluded_images_per_s"])
        hours = measured.pivot_table(index=["backbone", "occluded_images_per_s"], columns="task",
                                     values="hours_on_one_device").reset_index()
        tasks = [t for t in ("sex", "autism") if t in hours]
        size = int(measured["image_size"].iloc[0]) if len(measured) else 224
        text += (f"\n\nOcclusion at {size} px (the paper's 30 px square scaled to the image), and the paper's "
                 "occlusion workload (2,401 positions per test image) on one such GPU:\n\n")
        text += _table(("backbone", "occluded images/s", *(f"{t}: hours" for t in tasks)),
                       [(r["backbone"], f"{r['occluded_images_per_s']:.0f}", *(f"{r[t]:.2f}" for t in tasks))
                        for r in hours.to_dict("records")])
    baselines = read("baselines")
    if baselines is not None:
        rates = baselines[(baselines["kind"] == "rate") & (baselines["status"] == "measured")]
        plan = baselines[baselines["kind"] == "paper plan"]
        if len(rates):
            text += "\n\n3D baselines through the engine: " + "; ".join(
                f"{r.backbone} {r.volumes_per_s:.1f} volumes/s ({r.grid})" for r in rates.itertuples())
            hours = pd.to_numeric(plan["hours_on_one_device"], errors="coerce")
            if len(plan) and hours.notna().all():
                text += f"; the `paper` set's network baselines: {hours.sum():.1f} h on one such GPU."
    study = read("study")
    if study is not None:
        arms = study[study["kind"] == "arm"]
        if len(arms):
            text += "\n\nThe `gpu-check` study (224 px, every arm on the default's cohorts):\n\n" + _table(
                ("cohort, scheme, arm, backbone", "image-average accuracy", "linear reference"),
                [(r.name, shown(r.accuracy, "{:.3f}"), shown(r.linear_reference, "{:.3f}"))
                 for r in arms.itertuples()])
        else:
            text += f"\n\nThe `gpu-check` study (`params/gpu-check.yaml`): {study['status'].iloc[0]}."
    else:
        text += ("\n\nThe `gpu-check` study (`params/gpu-check.yaml`, the `study` section) has not run on a GPU: "
                 "its accuracies at 224 px are not measured.")
    sections = read("sections")
    if sections is not None:
        trouble = []
        for r in sections.to_dict("records"):
            error = r.get("error")  # NaN when the section ran without one; absent in checks older than the column
            if isinstance(error, str):
                trouble.append(f"{r['section']} ({error})")
            elif not r["within_budget"]:
                trouble.append(f"{r['section']} (over its budget: {r['seconds']:.0f} s of {r['budget_seconds']:.0f} s)")
        if trouble:
            text += "\n\nSections that failed or ran over their budget: " + "; ".join(trouble) + "."
    return text


def _notebook_times(record: dict[str, Any], book_seconds: float | None,
                    training_speed: dict[str, float] | None = None) -> str:
    """The notebooks' last execution, with the parameter set's time budget beside each when it has one, and the
    run's training speed beside the budget machine's."""
    import pandas as pd

    from ..params import BudgetParams
    from .budget import budget_table, speed_sentence

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
         for r in table.to_dict("records")]) + "\n\n" + speed_sentence(budget, training_speed)


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
                    cohorts: pd.DataFrame | None = None, recorded_gpu_check: Path | None = None,
                    training_speed: dict[str, float] | None = None) -> str:
    """The book's reproducibility page for one ``provenance.json`` record (and the GPU check's folder, if any;
    ``book_seconds``: the last book build's time, for the time budget; ``cohorts``: ``01_preprocess``'s cohorts
    table, to say which cohorts were built and which skipped; ``recorded_gpu_check``: a GPU check committed with
    the project, shown when ``gpu_check`` holds none; ``training_speed``: :func:`studylib.study.budget.training_rate`
    of the run, beside the budget)."""
    import yaml

    git = record["git"]
    commit = git["commit"] or "unknown (not a git checkout)"
    if git.get("uncommitted_changes"):
        commit += " (with uncommitted changes)"
    device = record["device"]
    device_text = ", ".join(f"{k}: {v}" for k, v in device.items())
    stages = _notebook_times(record, book_seconds, training_speed)
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

{gpu_check_markdown(gpu_check, recorded_gpu_check)}

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
