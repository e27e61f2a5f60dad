"""Build every cohort a parameter set names, each into ``<out>/<name>/``, skipping unchanged ones."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..hashing import code_digest, file_manifest, manifest_changes, sha256_json
from ..storage import atomic_write_text
from ..params import REAL_SOURCES, CohortParams
from ..progress import progress_bar
from .cohort import Cohort, CohortWriter
from .templates import HEMISPHERES, load_template

__all__ = ["CohortBuild", "build_cohorts", "cohort_inputs", "simulate_cohort"]

#: Subjects generated at a time: bounds memory whatever the cohort size.
CHUNK = 64
_LABEL_NAMES = {"sex": ("male", "female"), "autism": ("control", "autism")}


@dataclass(frozen=True)
class CohortBuild:
    """Outcome for one cohort: built, reused (unchanged) or skipped (data absent, not required)."""

    name: str
    status: str
    cohort: Cohort | None
    note: str = ""


def cohort_inputs(name: str, spec: CohortParams, data_dir: str | Path,
                  cache: str | Path | None = None) -> dict[str, dict[str, dict]]:
    """The files a cohort's build reads, as :func:`studylib.hashing.file_manifest` results (sizes and content
    hashes): for simulated cohorts ``"calibration"`` (the calibration shipped with the package: they read nothing
    else), for the semi-real cohort ``"data directory"`` (the reference files of the data directory that are
    present), for real-data sources ``"inputs"`` (the phenotype file and every subject file the reader would open).
    ``cache`` keeps the content hashes between calls, so unchanged files are not read again."""
    from .calibration import calibration_file
    from .files import reference_manifest

    cache = Path(cache) if cache is not None else None
    found = {}
    if spec.source == "simulated":
        found["calibration"] = file_manifest({"abide1_calibration.json": calibration_file()}, None)
    if spec.source == "semi-real":
        found["data directory"] = reference_manifest(data_dir, cache)
    if spec.source in REAL_SOURCES:
        if spec.source == "bids":
            from .bids import input_files
        else:
            from .readers import input_files

        found["inputs"] = file_manifest(input_files(spec), cache / f"inputs_{name}_manifest.json" if cache else None)
    return found


def _components(spec: CohortParams, seed: int, inputs: dict[str, dict]) -> dict[str, str]:
    # the code that makes a cohort: this module and what it imports (not plotting, training, the runner...)
    return {"spec": sha256_json(spec.model_dump(mode="json")), "seed": str(seed), "code": code_digest(__name__),
            **{key: sha256_json(manifest) for key, manifest in inputs.items()}}


def _what_changed(folder: Path, components: dict[str, str], inputs: dict[str, dict]) -> str:
    """Why a cohort is rebuilt, in words: the components that changed and, for files, which ones."""
    try:
        old = Cohort(folder).meta.get("build_components", {})
        old_inputs = json.loads((folder / "inputs.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return "first build" if not (folder / "cohort.json").is_file() else "built by an earlier version"
    reasons = []
    for key, value in components.items():
        if old.get(key) != value:
            detail = f": {manifest_changes(old_inputs.get(key, {}), inputs[key])}" if key in inputs else ""
            reasons.append(f"{key}{detail}")
    return "changed " + "; ".join(reasons) if reasons else "forced"


def simulate_cohort(out: Path, name: str, spec: CohortParams, *, seed: int, cache: Path | None, meta: dict,
                    progress: bool = True) -> Cohort:
    """Sample a simulated cohort (see :mod:`studylib.data.simulate`) into ``out`` with its ground truth."""
    from .simulate import build_model, sample_covariates, sample_maps, save_truth

    template = load_template(spec.template)
    model = build_model(template, spec.task, spec.metrics, spec.n_sites, scenario=spec.scenario,
                        n_modes=spec.n_modes, cache=cache)
    rng = np.random.default_rng([seed, 1, *name.encode()])
    covariates = sample_covariates(model, spec.n_subjects, rng)  # the schema requires n_subjects here
    negative, positive = _LABEL_NAMES[spec.task]
    subjects = pd.DataFrame({
        "subject": [f"{name}-{i + 1:05d}" for i in range(len(covariates))],
        "label": covariates["label"],
        "label_name": np.where(covariates["label"] == 1, positive, negative),
        "sex": np.where(covariates["female"], "female", "male"),
        "age": covariates["age"],
        "site": [model.site_names[s] for s in covariates["site_index"]],
        "tiv": covariates["tiv"],
    })
    n_vertices = {h: template.n_vertices(h) for h in HEMISPHERES}
    writer = CohortWriter(out, subjects, template.name, n_vertices, spec.metrics,
                          {**meta, "notes": model.notes, "task": spec.task})
    chunks = range(0, len(subjects), CHUNK)
    for start in progress_bar(chunks, desc=f"simulating {name}", unit="chunk", disable=None if progress else True):
        rows = slice(start, min(start + CHUNK, len(subjects)))
        for metric in spec.metrics:
            maps = sample_maps(model, metric, covariates.iloc[rows], rng)
            first = 0
            for h in HEMISPHERES:
                index = model.vertex_index[h]
                full = np.full((maps.shape[0], n_vertices[h]), np.nan, dtype=np.float32)
                full[:, index] = maps[:, first: first + len(index)]
                writer.write(h, metric, rows, full)
                first += len(index)
    cohort = writer.close()
    save_truth(model, out / "truth", n_vertices)
    return cohort


def build_cohorts(cohorts: Mapping[str, CohortParams], out: str | Path, *, seed: int, data_dir: str | Path,
                  cache: str | Path | None = None, only: list[str] | None = None, force: bool = False,
                  progress: bool = True, echo: Callable[[str], None] = print) -> list[CohortBuild]:
    """Build ``cohorts`` (name -> specification) into ``out/<name>``.

    A cohort whose specification, seed, input files (:func:`cohort_inputs`: sizes and content hashes) and
    producing code (this module and the ``studylib`` modules it imports) are unchanged since it was built is reused;
    otherwise the build says what changed. A cohort whose data are
    absent fails with the file named, unless its ``required`` is false: then it is skipped with a note.

    Parameters
    ----------
    cohorts : mapping of str to CohortParams
        The parameter set's ``cohorts`` section.
    out : path
        Folder of the cohort folders.
    seed : int
        The parameter set's seed.
    data_dir : path
        The data directory (:func:`studylib.params.resolve_data_dir`).
    cache : path, optional
        Where builds keep the templates' eigenmodes and the input files' content hashes between runs.
    only : list of str, optional
        Build only these cohorts.
    force : bool
        Rebuild even unchanged cohorts.
    """
    from .fetchers import FetchError
    from .semireal import build_semireal_cohort

    out = Path(out)
    data_dir = Path(data_dir)
    cache = Path(cache) if cache is not None else None
    names = list(cohorts) if not only else only
    unknown = [n for n in names if n not in cohorts]
    if unknown:
        raise ValueError(f"unknown cohort(s) {', '.join(unknown)}; this parameter set names "
                         f"{', '.join(cohorts)}")
    results = []
    for name in names:
        spec = cohorts[name]
        folder = out / name
        inputs = cohort_inputs(name, spec, data_dir, cache)
        components = _components(spec, seed, inputs)
        key = sha256_json({"name": name, **components})
        if not force and (folder / "cohort.json").is_file() and Cohort(folder).meta.get("build_key") == key:
            results.append(CohortBuild(name, "reused", Cohort(folder)))
            echo(f"cohort {name}: unchanged, reused ({folder})")
            continue
        echo(f"cohort {name}: building ({'forced' if force else _what_changed(folder, components, inputs)})")
        if folder.exists():
            shutil.rmtree(folder)
        meta = {"name": name, "source": spec.source, "task": spec.task, "build_key": key,
                "build_components": components, "spec": spec.model_dump(mode="json"), "seed": seed,
                "data_dir": str(data_dir)}
        try:
            if spec.source == "simulated":
                cohort = simulate_cohort(folder, name, spec, seed=seed, cache=cache, meta=meta, progress=progress)
            elif spec.source == "semi-real":
                cohort = build_semireal_cohort(folder, load_template(spec.template), data_dir,
                                               list(spec.metrics), n_subjects=spec.n_subjects, seed=seed,
                                               meta=meta)
            elif spec.source == "bids":
                from .bids import read_bids_cohort

                cohort = read_bids_cohort(folder, spec, meta=meta, progress=progress)
            else:
                from .readers import read_real_cohort

                cohort = read_real_cohort(folder, spec, data_dir=data_dir, meta=meta, progress=progress)
        except (FileNotFoundError, FetchError) as missing:
            if folder.exists():
                shutil.rmtree(folder)
            if spec.required:
                raise
            results.append(CohortBuild(name, "skipped", None, f"data absent: {missing}"))
            echo(f"cohort {name}: skipped (not required) - data absent: {missing}")
            continue
        atomic_write_text(folder / "inputs.json", json.dumps(inputs, indent=1, sort_keys=True) + "\n")
        results.append(CohortBuild(name, "built", cohort))
        echo(f"cohort {name}: built {len(cohort)} subjects, {len(cohort.qc)} QC exclusion(s) ({folder})")
    return results
