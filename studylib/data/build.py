"""Build every cohort a parameter set names, each into ``<out>/<name>/``, skipping unchanged ones."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from ..hashing import code_digest, folder_listing_digest, sha256_json
from ..params import CohortParams
from .cohort import Cohort, CohortWriter
from .templates import HEMISPHERES, load_template

__all__ = ["CohortBuild", "build_cohorts", "simulate_cohort"]

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


def _key(name: str, spec: CohortParams, seed: int, data_dir: Path) -> str:
    # the code that makes a cohort: this module and what it imports (not plotting, training, the runner...)
    return sha256_json({"name": name, "spec": spec.model_dump(mode="json"), "seed": seed,
                        "code": code_digest(__name__), "data": folder_listing_digest(data_dir)})


def simulate_cohort(out: Path, name: str, spec: CohortParams, *, seed: int, data_dir: Path | None,
                    cache: Path | None, meta: dict, progress: bool = True) -> Cohort:
    """Sample a simulated cohort (see :mod:`studylib.data.simulate`) into ``out`` with its ground truth."""
    from .simulate import build_model, sample_covariates, sample_maps, save_truth

    template = load_template(spec.template, data_dir)
    model = build_model(template, spec.task, spec.metrics, spec.n_sites, seed=seed, data_dir=data_dir,
                        n_modes=spec.n_modes, effect_regions=spec.effect_regions, cache=cache)
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
        "tiv": np.nan,
    })
    n_vertices = {h: template.n_vertices(h) for h in HEMISPHERES}
    writer = CohortWriter(out, subjects, template.name, n_vertices, spec.metrics,
                          {**meta, "notes": model.notes, "task": spec.task})
    chunks = range(0, len(subjects), CHUNK)
    for start in tqdm(chunks, desc=f"simulating {name}", unit="chunk", disable=None if progress else True):
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

    A cohort whose specification, seed, data directory listing and producing code (this module and the
    ``studylib`` modules it imports) are unchanged since it was built is reused. A cohort whose data are
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
        Where simulated cohorts keep the templates' eigenmodes between builds.
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
        key = _key(name, spec, seed, data_dir)
        if not force and (folder / "cohort.json").is_file() and Cohort(folder).meta.get("build_key") == key:
            results.append(CohortBuild(name, "reused", Cohort(folder)))
            echo(f"cohort {name}: unchanged, reused ({folder})")
            continue
        if folder.exists():
            shutil.rmtree(folder)
        meta = {"name": name, "source": spec.source, "task": spec.task, "build_key": key,
                "spec": spec.model_dump(mode="json"), "seed": seed, "data_dir": str(data_dir)}
        try:
            if spec.source == "simulated":
                cohort = simulate_cohort(folder, name, spec, seed=seed, data_dir=data_dir, cache=cache, meta=meta,
                                         progress=progress)
            elif spec.source == "semi-real":
                cohort = build_semireal_cohort(folder, load_template(spec.template, data_dir), data_dir,
                                               list(spec.metrics), n_subjects=spec.n_subjects, seed=seed,
                                               meta=meta)
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
        results.append(CohortBuild(name, "built", cohort))
        echo(f"cohort {name}: built {len(cohort)} subjects ({folder})")
    return results
