"""fMRIPrep / sMRIPrep derivatives (BIDS) as a cohort (``source: bids``), found with pybids rather than by globbing.

Per subject (the first session when there are several; a QC note says so), for each metric, in this order:

1. **fsLR 91k CIFTI** (``--cifti-output``), read directly onto fs_LR 32k (template ``fs_LR_32k``)::

       sub-<label>/anat/sub-<label>[_ses-<label>]_space-fsLR_den-91k_{thickness,sulc,curv}.dscalar.nii

2. **fsnative GIFTI** with the registration sphere sMRIPrep writes, resampled through the sphere as the FreeSurfer
   reader does (template ``fsaverage5``: nilearn's sphere; ``fs_LR_32k``: ``registration_sphere``)::

       sub-<label>/anat/sub-<label>_hemi-{L,R}_{thickness,sulc,curv}.shape.gii
       sub-<label>/anat/sub-<label>_hemi-{L,R}_space-fsaverage_desc-reg_sphere.surf.gii

   (with ``sub-<label>_hemi-{L,R}_midthickness.surf.gii``, the surface per-subject flat maps flatten:
   :func:`bids_midthickness`). BIDS derivatives carry no cortex label: on fsnative the medial wall is where FreeSurfer's thickness is 0, so with
   a thickness file the other metrics are masked there too (without one, every vertex counts as cortex and the
   template's cortex mask is applied after resampling).

Labels, age, sex and site come from ``participants.tsv`` (``phenotypes``; ``participant_id`` with or without the
``sub-`` prefix; ``label_column`` with its ``positive``/``negative`` values; ``age``, ``sex``, ``site_column``);
intracranial volume from FreeSurfer's ``sourcedata/freesurfer/sub-<label>/stats/aseg.stats`` when the derivatives
keep it. Every subject or file that cannot be used is a QC row naming it. FastSurfer subjects have the FreeSurfer
layout: read them with ``source: freesurfer``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from ..geometry.mesh import fill_missing
from ..params import BidsCohortParams
from .cohort import Cohort
from .readers import (InputProblem, SphereResampler, _inside_cortex, _read_cifti_hemisphere, _read_gifti,
                      freesurfer_tiv, seeded_subset, template_sphere, write_subjects)
from .templates import HEMISPHERES, load_template

__all__ = ["BIDS_SUFFIX", "bids_layout", "bids_midthickness", "input_files", "read_bids_cohort"]

#: BIDS suffix of each metric (FreeSurfer's file names, as sMRIPrep keeps them).
BIDS_SUFFIX = {"thickness": "thickness", "sulc": "sulc", "curvature": "curv"}
_HEMI = {"left": "L", "right": "R"}


def bids_layout(spec: BidsCohortParams):
    """A pybids layout of the derivatives folder (not validated: derivatives need not pass the raw-data validator)."""
    return _new_layout(str(spec.path))


def _new_layout(path: str):
    from bids import BIDSLayout

    if not (Path(path) / "dataset_description.json").is_file():
        raise FileNotFoundError(f"{path}: no dataset_description.json (not a BIDS derivatives folder)")
    return BIDSLayout(path, validate=False, config=["bids", "derivatives"])


def _first(layout, subject: str, **entities) -> tuple[Path | None, list[str]]:
    """The first matching file (sorted by session) and the sessions found."""
    found = sorted(layout.get(subject=subject, return_type="object", **entities), key=lambda f: f.path)
    sessions = sorted({f.entities.get("session") for f in found if f.entities.get("session")})
    return (Path(found[0].path) if found else None), sessions


def _cifti_file(layout, subject: str, metric: str):
    return _first(layout, subject, suffix=BIDS_SUFFIX[metric], space="fsLR", den="91k", extension=".dscalar.nii")


def _gifti_file(layout, subject: str, hemisphere: str, metric: str):
    return _first(layout, subject, suffix=BIDS_SUFFIX[metric], hemi=_HEMI[hemisphere], extension=".shape.gii",
                  space=None)


def _sphere_file(layout, subject: str, hemisphere: str):
    return _first(layout, subject, suffix="sphere", hemi=_HEMI[hemisphere], space="fsaverage", desc="reg",
                  extension=".surf.gii")


def input_files(spec: BidsCohortParams) -> dict[str, Path]:
    """Every file the reader of ``spec`` would open, by its path relative to the derivatives folder."""
    files = {"phenotypes": spec.phenotypes}
    if spec.registration_sphere is not None:
        for letter in _HEMI.values():
            path = spec.registration_sphere / f"fs_LR-deformed_to-fsaverage.{letter}.sphere.32k_fs_LR.surf.gii"
            if path.is_file():
                files[f"registration_sphere/{path.name}"] = path
    layout = bids_layout(spec)
    wanted = {BIDS_SUFFIX[m] for m in spec.metrics} | {"sphere", "midthickness"}  # surfaces: per-subject flat maps
    for item in layout.get(return_type="object"):
        if item.entities.get("suffix") in wanted:
            path = Path(item.path)
            files[path.relative_to(spec.path).as_posix()] = path
    return files


def _participants(spec: BidsCohortParams) -> tuple[pd.DataFrame, list[dict]]:
    """Subjects with a label, and QC rows for those without one."""
    table = pd.read_csv(spec.phenotypes, sep="\t", dtype=str, keep_default_na=False)
    missing = [c for c in ("participant_id", spec.label_column) if c not in table.columns]
    if missing:
        raise ValueError(f"{spec.phenotypes}: missing column(s) {', '.join(missing)} (participants.tsv)")
    label = table["participant_id"].str.removeprefix("sub-")
    duplicated = label[label.duplicated()].tolist()
    if duplicated:
        raise ValueError(f"{spec.phenotypes}: participant(s) listed more than once: {duplicated[:10]}")
    positive = {v.lower() for v in spec.positive}
    negative = {v.lower() for v in spec.negative}
    rows, qc = [], []
    for index, row in table.assign(subject=label).iterrows():
        value = str(row[spec.label_column]).strip()
        if value.lower() not in positive | negative:
            qc.append({"subject": row["subject"], "file": str(spec.phenotypes),
                       "reason": f"{spec.label_column} {value!r} is neither {spec.positive} nor {spec.negative}"})
            continue
        sex = str(row.get("sex", "")).strip().lower()
        rows.append({"subject": row["subject"], "label": int(value.lower() in positive),
                     "label_name": value, "sex": {"f": "female", "m": "male"}.get(sex[:1], sex or "unknown"),
                     "age": pd.to_numeric(row.get("age", ""), errors="coerce"),
                     "site": str(row[spec.site_column]) if spec.site_column and spec.site_column in table else "all"})
    return pd.DataFrame(rows), qc


def _template_sphere(template, hemisphere: str, spec: BidsCohortParams) -> np.ndarray:
    if template.name != "fsaverage5" and spec.registration_sphere is None:
        raise InputProblem(spec.path, "fsnative GIFTI onto fs_LR_32k needs registration_sphere (or CIFTI files)")
    return template_sphere(template, hemisphere, spec.registration_sphere)


def _subject_maps(layout, subject: str, spec: BidsCohortParams, template, notes: list[str]) -> dict:
    """One subject's maps on the template, ``{(hemisphere, metric): values}``; raises :class:`InputProblem`."""
    out = {}
    sessions_seen: set[str] = set()
    for metric in spec.metrics:
        cifti, sessions = _cifti_file(layout, subject, metric) if template.name == "fs_LR_32k" else (None, [])
        sessions_seen |= set(sessions)
        if cifti is not None:
            for hemisphere in HEMISPHERES:
                cortex = template.surfaces[hemisphere].cortex
                out[hemisphere, metric] = _inside_cortex(cifti, _read_cifti_hemisphere(cifti, hemisphere, len(cortex)),
                                                         cortex)
            continue
        for hemisphere in HEMISPHERES:
            path, sessions = _gifti_file(layout, subject, hemisphere, metric)
            sessions_seen |= set(sessions)
            if path is None:
                raise InputProblem(spec.path / f"sub-{subject}", f"no {BIDS_SUFFIX[metric]} map of hemisphere "
                                   f"{_HEMI[hemisphere]} (neither space-fsLR_den-91k CIFTI nor fsnative GIFTI)")
            out[hemisphere, metric] = _gifti_on_template(layout, subject, hemisphere, path, spec, template)
    if len(sessions_seen) > 1:
        notes.append(f"sub-{subject}: sessions {', '.join(sorted(sessions_seen))}; the first ({min(sessions_seen)}) was read")
    return out


def _gifti_on_template(layout, subject: str, hemisphere: str, path: Path, spec: BidsCohortParams,
                       template) -> np.ndarray:
    sphere_path, _ = _sphere_file(layout, subject, hemisphere)
    if sphere_path is None:
        raise InputProblem(path, "fsnative map without its registration sphere "
                                 f"(sub-{subject}_hemi-{_HEMI[hemisphere]}_space-fsaverage_desc-reg_sphere.surf.gii)")
    import nibabel as nib

    try:
        sphere = nib.load(str(sphere_path))
        coordinates = np.asarray(sphere.darrays[0].data, np.float64)
        faces = np.asarray(sphere.darrays[1].data, np.int64)
    except Exception as error:
        raise InputProblem(sphere_path, f"unreadable surface ({type(error).__name__}: {error})") from None
    values = _read_gifti(path)
    if len(values) != len(coordinates):
        raise InputProblem(path, f"{len(values)} values for the {len(coordinates)} vertices of {sphere_path.name}")
    cortex = np.ones(len(values), dtype=bool)
    thickness, _ = _gifti_file(layout, subject, hemisphere, "thickness")
    if thickness is not None:  # FreeSurfer's thickness is 0 on the medial wall
        thick = _read_gifti(thickness)
        if len(thick) == len(values):
            cortex = thick > 0
    values = _inside_cortex(path, values, cortex)
    surface = template.surfaces[hemisphere]
    resampled = SphereResampler.build(coordinates, faces, _template_sphere(template, hemisphere, spec)).apply(values)
    resampled[~surface.cortex] = np.nan
    gaps = surface.cortex & ~np.isfinite(resampled)
    if gaps.any():
        resampled = fill_missing(resampled, surface.faces, gaps)
    return resampled


#: One pybids layout per derivatives folder and process, for per-subject flat maps (a layout indexes the whole folder;
#: 02's worker processes are fresh each run, so files written since are seen; the cohort reader never caches).
_layout_of = lru_cache(maxsize=4)(_new_layout)


def bids_midthickness(path: Path, registration_sphere: Path | None, subject: str, hemisphere: str,
                      template) -> np.ndarray:
    """A subject's fsnative midthickness surface (``sub-<label>_hemi-{L,R}_midthickness.surf.gii``) resampled through
    its registration sphere onto the template's vertices: (n_template_vertices, 3).

    Raises
    ------
    FileNotFoundError
        Naming the missing file.
    ValueError
        When the surface and the sphere do not share a mesh.
    """
    import nibabel as nib

    layout = _layout_of(str(path))
    letter = _HEMI[hemisphere]
    surface_path, _ = _first(layout, subject, suffix="midthickness", hemi=letter, extension=".surf.gii", space=None)
    sphere_path, _ = _sphere_file(layout, subject, hemisphere)
    for found, name in ((surface_path, f"sub-{subject}_hemi-{letter}_midthickness.surf.gii"),
                        (sphere_path, f"sub-{subject}_hemi-{letter}_space-fsaverage_desc-reg_sphere.surf.gii")):
        if found is None:
            raise FileNotFoundError(f"{path}: no {name} (per-subject flat maps need the midthickness surface and the "
                                    "registration sphere)")
    surface, sphere = nib.load(str(surface_path)), nib.load(str(sphere_path))
    points = np.asarray(surface.agg_data("NIFTI_INTENT_POINTSET"), np.float64)
    faces = np.asarray(sphere.agg_data("NIFTI_INTENT_TRIANGLE"), np.int64)
    on_sphere = np.asarray(sphere.agg_data("NIFTI_INTENT_POINTSET"), np.float64)
    if points.shape != on_sphere.shape or not np.array_equal(
            np.asarray(surface.agg_data("NIFTI_INTENT_TRIANGLE"), np.int64), faces):
        raise ValueError(f"{surface_path}: {len(points)} vertices, not the mesh of {sphere_path.name} "
                         f"({len(on_sphere)} vertices)")
    resampler = SphereResampler.build(on_sphere, faces, template_sphere(template, hemisphere, registration_sphere))
    return resampler.apply_points(points)


def read_bids_cohort(out: Path, spec: BidsCohortParams, *, meta: dict, progress: bool = True) -> Cohort:
    """Read BIDS derivatives into a cohort at ``out`` (see the module docstring), a QC row for every exclusion.

    With ``spec.n_subjects`` a seeded random subset of the labelled subjects with maps is read (seed ``meta["seed"]``).
    """
    template = load_template(spec.template)
    layout = bids_layout(spec)
    participants, qc = _participants(spec)
    on_disk = set(layout.get_subjects())
    rows = []
    for row in participants.to_dict("records"):
        if row["subject"] not in on_disk:
            qc.append({"subject": row["subject"], "file": str(spec.path / f"sub-{row['subject']}"),
                       "reason": "no derivatives of this participant"})
        else:
            rows.append(row)
    for subject in sorted(on_disk - set(participants["subject"]) - {q["subject"] for q in qc}):
        qc.append({"subject": subject, "file": str(spec.path / f"sub-{subject}"),
                   "reason": "no row in participants.tsv (no label)"})
    notes = list(meta.get("notes", []))
    meta = {**meta, "notes": notes}
    for row in rows:
        row["folder"] = spec.path / f"sub-{row['subject']}"
    rows = seeded_subset(rows, spec.n_subjects, meta, qc)
    if not rows:
        reasons = "; ".join(f"{q['subject']}: {q['reason']}" for q in qc[:5])
        raise ValueError(f"no participant of {spec.phenotypes} has derivatives in {spec.path} ({reasons})")
    for row in rows:
        row["tiv"] = freesurfer_tiv(spec.path / "sourcedata" / "freesurfer" / f"sub-{row['subject']}")
    return write_subjects(out, rows, qc, template, spec.metrics, meta,
                          lambda row: _subject_maps(layout, row["subject"], spec, template, notes), spec.path,
                          progress=progress)
