"""Readers of real data in their usual layouts (nibabel): HCP S1200 folders and FreeSurfer subjects.

Every subject or file that cannot be used becomes a row of the cohort's QC table naming the subject, the
file and the reason; nothing is dropped silently. Problems with the whole input (no phenotype file, no
subject at all) raise an error naming the path.

HCP layout (``source: hcp``)::

    {path}/{subject}/MNINonLinear/fsaverage_LR32k/{subject}.{L,R}.{thickness,sulc,curvature}.32k_fs_LR.shape.gii
    {path}/{subject}/MNINonLinear/fsaverage_LR32k/{subject}.{L,R}.MyelinMap_BC.32k_fs_LR.func.gii

also with ``_MSMAll`` before ``.32k_fs_LR``, or as CIFTI ``{subject}.{name}[_MSMAll].32k_fs_LR.dscalar.nii``;
phenotypes: the HCP behavioural CSV (``Subject``, ``Gender``, ``Age``).

FreeSurfer layout (``source: freesurfer``): a ``SUBJECTS_DIR`` with ``{subject}/surf/{lh,rh}.{thickness,sulc,curv}``,
``surf/{lh,rh}.sphere.reg`` and ``label/{lh,rh}.cortex.label``, resampled to the template through the
registration sphere by barycentric interpolation; phenotypes: the ABIDE phenotypic CSV (``SUB_ID``,
``SITE_ID``, ``DX_GROUP``, ``SEX``, ``AGE_AT_SCAN``). Subject folders match ``SUB_ID`` by their trailing number
(``Caltech_0051456``, ``sub-0051456`` and ``51456`` are all subject 51456); template subjects (``fsaverage``,
``fsaverage5``, ``cvs_avg35``, ``bert``, ...) that FreeSurfer keeps in ``SUBJECTS_DIR`` are skipped with a note.

:func:`input_files` lists every file a reader would open, so that a cohort's cache key covers the folder's
contents and not only its path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from ..geometry.mesh import fill_missing
from ..params import FreeSurferCohortParams, HcpCohortParams
from ..progress import progress_bar
from .abide import read_abide_phenotypes
from .cohort import Cohort, CohortWriter
from .templates import HEMISPHERES, Template, load_template

__all__ = ["SphereResampler", "input_files", "read_hcp_maps", "read_real_cohort", "seeded_subset", "subject_folders",
           "write_subjects"]

_HCP_NAMES = {"thickness": "thickness", "sulc": "sulc", "curvature": "curvature", "myelin": "MyelinMap_BC"}
_HCP_HEMI = {"left": "L", "right": "R"}
_CIFTI_STRUCTURE = {"left": "CIFTI_STRUCTURE_CORTEX_LEFT", "right": "CIFTI_STRUCTURE_CORTEX_RIGHT"}
_FS_NAMES = {"thickness": "thickness", "sulc": "sulc", "curvature": "curv"}
_FS_HEMI = {"left": "lh", "right": "rh"}
#: The volumes 09's 3D baselines read from a FreeSurfer subject (studylib.baselines.volumes.freesurfer_ribbon).
_FS_VOLUMES = ("brain.mgz", "norm.mgz", "ribbon.mgz", "transforms/talairach.xfm")
#: Subjects that FreeSurfer's distribution keeps in SUBJECTS_DIR: templates and atlases, not study subjects.
_TEMPLATE_SUBJECT = re.compile(r"^(fsaverage\d*|fsaverage_sym|cvs_avg35(_inMNI152)?|[lr]h\.EC_average|V1_average|bert)$")

RealCohortParams = HcpCohortParams | FreeSurferCohortParams


def subject_folders(spec: RealCohortParams) -> tuple[dict[str, Path], list[str]]:
    """The subject folders under ``spec.path`` by name, and the FreeSurfer template subjects left out."""
    folders = {p.name: p for p in sorted(spec.path.iterdir()) if p.is_dir() and not p.name.startswith(".")}
    templates = [name for name in folders if spec.source == "freesurfer" and _TEMPLATE_SUBJECT.match(name)]
    return {name: folder for name, folder in folders.items() if name not in templates}, templates


def _subject_files(spec: RealCohortParams, folder: Path) -> list[Path]:
    if spec.source == "hcp":  # the midthickness surfaces: for per-subject flat maps (flatten.mode)
        maps = folder / "MNINonLinear" / "fsaverage_LR32k"
        return [path for h in HEMISPHERES for m in spec.metrics for path in _hcp_candidates(maps, folder.name, h, m)] + \
            [path for h in HEMISPHERES for path in hcp_surface_files(folder, folder.name, h)]
    return [folder / sub / f"{_FS_HEMI[h]}.{name}" for h in HEMISPHERES
            for sub, name in (("surf", "sphere.reg"), ("label", "cortex.label"), ("surf", "white"), ("surf", "pial"),
                              *(("surf", _FS_NAMES[m]) for m in spec.metrics))] + [folder / "stats" / "aseg.stats"] + \
        [folder / "mri" / name for name in _FS_VOLUMES]  # read by 09's volume baselines


def hcp_surface_files(folder: Path, subject: str, hemisphere: str) -> list[Path]:
    """Where an HCP subject's midthickness surface may be, in order of preference."""
    hemi = "L" if hemisphere == "left" else "R"
    maps = Path(folder) / "MNINonLinear" / "fsaverage_LR32k"
    return [maps / f"{subject}.{hemi}.midthickness{msm}.32k_fs_LR.surf.gii" for msm in ("", "_MSMAll")]


def input_files(spec: RealCohortParams) -> dict[str, Path]:
    """Every input the reader of ``spec`` would open, by a stable name: the phenotype file, the registration
    spheres, each subject folder and each subject file that exists (a file that appears later is an added input)."""
    files = {"phenotypes": spec.phenotypes}
    if spec.source == "freesurfer" and spec.registration_sphere is not None:
        for hemi in _HCP_HEMI.values():
            path = spec.registration_sphere / f"fs_LR-deformed_to-fsaverage.{hemi}.sphere.32k_fs_LR.surf.gii"
            if path.is_file():
                files[f"registration_sphere/{path.name}"] = path
    for name, folder in subject_folders(spec)[0].items():
        files[f"{name}/"] = folder
        for path in _subject_files(spec, folder):
            if path.is_file():
                files[path.relative_to(spec.path).as_posix()] = path
    return files


class InputProblem(ValueError):
    """One subject's file cannot be used; becomes a QC row."""

    def __init__(self, file: Path, reason: str):
        super().__init__(f"{file}: {reason}")
        self.file = file
        self.reason = reason


def _inside_cortex(path: Path, values: np.ndarray, cortex: np.ndarray) -> np.ndarray:
    """``values`` with NaN outside ``cortex``; NaN or inf inside it makes the file unusable."""
    bad = ~np.isfinite(values[cortex])
    if bad.any():
        raise InputProblem(path, f"{int(bad.sum())} NaN/inf values inside the cortex")
    values[~cortex] = np.nan
    return values


# --------------------------------------------------------------------------- HCP


def _hcp_candidates(folder: Path, subject: str, hemisphere: str, metric: str) -> list[Path]:
    name, hemi = _HCP_NAMES[metric], _HCP_HEMI[hemisphere]
    kind = "func" if metric == "myelin" else "shape"
    return [folder / f"{subject}.{hemi}.{name}{msm}.32k_fs_LR.{kind}.gii" for msm in ("", "_MSMAll")] + \
        [folder / f"{subject}.{name}{msm}.32k_fs_LR.dscalar.nii" for msm in ("", "_MSMAll")]


def _read_gifti(path: Path) -> np.ndarray:
    import nibabel as nib

    try:
        image = nib.load(str(path))
        return np.asarray(image.darrays[0].data, dtype=np.float64).ravel()
    except Exception as error:  # nibabel raises many types for corrupt files
        raise InputProblem(path, f"unreadable GIFTI ({type(error).__name__}: {error})") from None


def _read_cifti_hemisphere(path: Path, hemisphere: str, n_vertices: int) -> np.ndarray:
    import nibabel as nib

    try:
        image = nib.load(str(path))
        data = np.asarray(image.get_fdata(), dtype=np.float64)[0]
        models = image.header.get_axis(1)
    except Exception as error:
        raise InputProblem(path, f"unreadable CIFTI ({type(error).__name__}: {error})") from None
    for structure, rows, model in models.iter_structures():
        if structure == _CIFTI_STRUCTURE[hemisphere]:
            if model.nvertices[structure] != n_vertices:
                raise InputProblem(path, f"{hemisphere} cortex has {model.nvertices[structure]} vertices in the "
                                         f"CIFTI header, the template {n_vertices}")
            values = np.full(n_vertices, np.nan)
            values[model.vertex] = data[rows]
            return values
    raise InputProblem(path, f"no {_CIFTI_STRUCTURE[hemisphere]} in the CIFTI file")


def read_hcp_maps(subject_dir: Path, subject: str, hemisphere: str, metric: str, cortex: np.ndarray) -> np.ndarray:
    """One HCP subject's map on fs_LR 32k (NaN outside ``cortex``); raises :class:`InputProblem`."""
    folder = subject_dir / "MNINonLinear" / "fsaverage_LR32k"
    candidates = _hcp_candidates(folder, subject, hemisphere, metric)
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        raise InputProblem(candidates[0], f"missing (also looked for {', '.join(p.name for p in candidates[1:])})")
    if path.name.endswith(".dscalar.nii"):
        values = _read_cifti_hemisphere(path, hemisphere, len(cortex))
    else:
        values = _read_gifti(path)
    if len(values) != len(cortex):
        raise InputProblem(path, f"{len(values)} vertices, the fs_LR 32k template has {len(cortex)}")
    return _inside_cortex(path, values, cortex)


def _hcp_phenotypes(path: Path) -> pd.DataFrame:
    raw = pd.read_csv(path)
    missing = [c for c in ("Subject", "Gender", "Age") if c not in raw.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)} (HCP behavioural CSV)")
    duplicated = raw.loc[raw["Subject"].astype(str).duplicated(), "Subject"].tolist()
    if duplicated:
        raise ValueError(f"{path}: subject id(s) listed more than once: {duplicated[:10]}")

    def age(value: object) -> float:  # the public file gives ranges such as "26-30" and "36+"
        numbers = [float(x) for x in re.findall(r"\d+(?:\.\d+)?", str(value))]
        return float(np.mean(numbers)) if numbers else np.nan

    # FreeSurfer's intracranial volume (mm^3) is in the unrestricted behavioural file of HCP S1200
    tiv = pd.to_numeric(raw["FS_IntraCranial_Vol"], errors="coerce") / 1000.0 if "FS_IntraCranial_Vol" in raw \
        else np.full(len(raw), np.nan)
    return pd.DataFrame({"subject": raw["Subject"].astype(str), "gender": raw["Gender"].astype(str).str.upper(),
                         "age": raw["Age"].map(age), "tiv": np.asarray(tiv, dtype=float)})


def freesurfer_tiv(folder: Path) -> float:
    """FreeSurfer's estimated total intracranial volume (ml) from ``stats/aseg.stats``; NaN when the file or the
    measure is absent (older FreeSurfer versions name it ``IntraCranialVol``)."""
    path = folder / "stats" / "aseg.stats"
    if not path.is_file():
        return np.nan
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("# Measure") and ("EstimatedTotalIntraCranialVol" in line or "IntraCranialVol," in line):
            try:
                return float(line.split(",")[3]) / 1000.0
            except (IndexError, ValueError):
                raise InputProblem(path, f"unreadable intracranial volume line: {line.strip()!r}") from None
    return np.nan


# --------------------------------------------------------------------------- FreeSurfer


@dataclass(frozen=True)
class SphereResampler:
    """Barycentric interpolation from a subject's registration sphere to template sphere positions.

    Both spheres are normalised to the unit sphere. Each template vertex is located in the subject
    triangle that contains it (searching the triangles with the nearest centroids).
    """

    faces: np.ndarray  # (k, 3) subject vertex indices of the containing triangle per template vertex
    weights: np.ndarray  # (k, 3) barycentric weights

    @classmethod
    def build(cls, subject_sphere: np.ndarray, subject_faces: np.ndarray, template_sphere: np.ndarray,
              candidates: int = 12) -> SphereResampler:
        source = subject_sphere / np.linalg.norm(subject_sphere, axis=1, keepdims=True)
        target = template_sphere / np.linalg.norm(template_sphere, axis=1, keepdims=True)
        corners = source[subject_faces]
        centroids = corners.mean(axis=1)
        _, nearest = cKDTree(centroids).query(target, k=min(candidates, len(subject_faces)))
        nearest = nearest.reshape(len(target), -1)
        best_face = nearest[:, 0].copy()
        best_weights = np.full((len(target), 3), np.nan)
        best_score = np.full(len(target), -np.inf)
        for column in range(nearest.shape[1]):
            face = nearest[:, column]
            a, b, c = (corners[face, i] for i in range(3))
            normal = np.cross(b - a, c - a)
            # Project the target point along its ray onto the triangle's plane, then take barycentrics.
            scale = np.einsum("ij,ij->i", normal, a) / np.einsum("ij,ij->i", normal, target)
            point = target * scale[:, None]
            area = np.einsum("ij,ij->i", normal, normal)
            weights = np.stack([
                np.einsum("ij,ij->i", np.cross(c - b, point - b), normal),
                np.einsum("ij,ij->i", np.cross(a - c, point - c), normal),
                np.einsum("ij,ij->i", np.cross(b - a, point - a), normal),
            ], axis=1) / area[:, None]
            score = weights.min(axis=1)  # >= 0 inside the triangle
            better = score > best_score
            best_face[better], best_weights[better], best_score[better] = face[better], weights[better], score[better]
        weights = np.clip(best_weights, 0.0, None)
        weights /= weights.sum(axis=1, keepdims=True)
        return cls(subject_faces[best_face], weights)

    def apply_points(self, points: np.ndarray) -> np.ndarray:
        """Interpolate subject vertex positions ``(n, 3)`` (e.g. a midthickness surface) to the template's vertices."""
        return np.column_stack([self.apply(points[:, axis]) for axis in range(points.shape[1])])

    def apply(self, values: np.ndarray) -> np.ndarray:
        """Interpolate subject ``values``; NaN (outside the subject's cortex) corners are left out."""
        corner_values = values[self.faces]
        known = np.isfinite(corner_values)
        weights = np.where(known, self.weights, 0.0)
        total = weights.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out = (np.where(known, corner_values, 0.0) * weights).sum(axis=1) / total
        out[total <= 1e-12] = np.nan
        return out


def template_sphere(template: Template, hemisphere: str, registration_sphere: Path | None) -> np.ndarray:
    """The template's vertices on FreeSurfer's fsaverage sphere (fs_LR: the HCP sphere in ``registration_sphere``)."""
    if template.name == "fsaverage5":
        from nilearn.datasets import load_fsaverage

        return np.asarray(load_fsaverage("fsaverage5")["sphere"].parts[hemisphere].coordinates, dtype=np.float64)
    if registration_sphere is None:
        raise FileNotFoundError(f"{template.name}: the registration sphere folder is not set (registration_sphere)")
    path = Path(registration_sphere) / f"fs_LR-deformed_to-fsaverage.{_HCP_HEMI[hemisphere]}.sphere.32k_fs_LR.surf.gii"
    if not path.is_file():
        raise FileNotFoundError(f"registration sphere not found: {path}")
    import nibabel as nib

    return np.asarray(nib.load(str(path)).darrays[0].data, dtype=np.float64)


def _freesurfer_subject(folder: Path, hemisphere: str, metrics: list[str], template: Template,
                        sphere_on_template: np.ndarray) -> dict[str, np.ndarray]:
    import nibabel.freesurfer as fs

    hemi = _FS_HEMI[hemisphere]
    sphere_path = folder / "surf" / f"{hemi}.sphere.reg"
    label_path = folder / "label" / f"{hemi}.cortex.label"
    for path in (sphere_path, label_path):
        if not path.is_file():
            raise InputProblem(path, "missing")
    try:
        sphere, faces = fs.read_geometry(str(sphere_path))
    except Exception as error:
        raise InputProblem(sphere_path, f"unreadable surface ({type(error).__name__}: {error})") from None
    try:
        cortex_vertices = fs.read_label(str(label_path))
    except Exception as error:
        raise InputProblem(label_path, f"unreadable label ({type(error).__name__}: {error})") from None
    if cortex_vertices.size and cortex_vertices.max() >= len(sphere):
        raise InputProblem(label_path, f"vertex {cortex_vertices.max()} beyond the {len(sphere)} of {sphere_path.name}")
    cortex = np.zeros(len(sphere), dtype=bool)
    cortex[cortex_vertices] = True
    resampler = SphereResampler.build(np.asarray(sphere, np.float64), np.asarray(faces, np.int64),
                                      sphere_on_template)
    surface = template.surfaces[hemisphere]
    out = {}
    for metric in metrics:
        path = folder / "surf" / f"{hemi}.{_FS_NAMES[metric]}"
        if not path.is_file():
            raise InputProblem(path, "missing")
        try:
            values = np.asarray(fs.read_morph_data(str(path)), dtype=np.float64)
        except Exception as error:
            raise InputProblem(path, f"unreadable morphometry file ({type(error).__name__}: {error})") from None
        if len(values) == 0:  # nibabel returns no values for a header cut short
            raise InputProblem(path, f"unreadable morphometry file (no values: header truncated or empty, "
                                     f"{path.stat().st_size} bytes)")
        if len(values) != len(sphere):
            raise InputProblem(path, f"{len(values)} values for the {len(sphere)} vertices of {sphere_path.name}")
        values = _inside_cortex(path, values, cortex)
        resampled = resampler.apply(values)
        resampled[~surface.cortex] = np.nan
        gaps = surface.cortex & ~np.isfinite(resampled)
        if gaps.any():  # template cortex that lands on the subject's medial wall
            resampled = fill_missing(resampled, surface.faces, gaps)
        out[metric] = resampled
    return out


def freesurfer_subject_folder(root: Path, subject: str) -> Path:
    """The folder of ``subject`` under a FreeSurfer ``SUBJECTS_DIR``, by the reader's rule: the folder whose name ends
    with the subject's number (``Caltech_0051456`` for 51456), else the folder of that name."""
    root = Path(root)
    folders = [p for p in sorted(root.iterdir()) if p.is_dir() and not p.name.startswith(".")] if root.is_dir() else []
    if str(subject).isdigit():
        found = [p for p in folders if (m := re.search(r"(\d+)$", p.name)) and int(m.group(1)) == int(subject)]
    else:
        found = [p for p in folders if p.name == str(subject)]
    if len(found) != 1:
        raise FileNotFoundError(f"subject {subject}: {len(found)} matching folder(s) in {root}")
    return found[0]


def freesurfer_midthickness(folder: Path, hemisphere: str, template: Template,
                            registration_sphere: Path | None) -> np.ndarray:
    """A FreeSurfer subject's midthickness surface (mean of ``white`` and ``pial``) resampled through ``sphere.reg``
    onto the template's vertices: (n_template_vertices, 3), the subject's own geometry on the template mesh."""
    import nibabel.freesurfer as fs

    hemi = _FS_HEMI[hemisphere]
    surfaces = {}
    for name in ("sphere.reg", "white", "pial"):
        path = Path(folder) / "surf" / f"{hemi}.{name}"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing (per-subject flat maps need {hemi}.white, {hemi}.pial and "
                                    f"{hemi}.sphere.reg)")
        try:
            coordinates, faces = fs.read_geometry(str(path))
        except Exception as error:
            raise ValueError(f"{path}: unreadable surface ({type(error).__name__}: {error})") from None
        surfaces[name] = (np.asarray(coordinates, np.float64), np.asarray(faces, np.int64), path)
    sphere, faces, _ = surfaces["sphere.reg"]
    for name in ("white", "pial"):
        coordinates, other, path = surfaces[name]
        if coordinates.shape != sphere.shape or not np.array_equal(other, faces):
            raise ValueError(f"{path}: {len(coordinates)} vertices / {len(other)} triangles, not the mesh of "
                             f"{hemi}.sphere.reg ({len(sphere)} / {len(faces)})")
    middle = 0.5 * (surfaces["white"][0] + surfaces["pial"][0])
    resampler = SphereResampler.build(sphere, faces, template_sphere(template, hemisphere, registration_sphere))
    return resampler.apply_points(middle)


# --------------------------------------------------------------------------- cohort


def read_real_cohort(out: Path, spec: RealCohortParams, *, data_dir: Path | None, meta: dict,
                     progress: bool = True) -> Cohort:
    """Read an HCP or FreeSurfer folder into a cohort at ``out``, with a QC row for every exclusion.

    With ``spec.n_subjects`` a seeded random subset of the subjects that have both a folder and a label is read
    (seed ``meta["seed"]``); every subject left out of it is a QC row.
    """
    template = load_template(spec.template)
    root = spec.path
    qc: list[dict] = []
    rows: list[dict] = []
    folders, templates = subject_folders(spec)
    notes = list(meta.get("notes", []))
    if templates:
        notes.append(f"FreeSurfer template subject folder(s) {', '.join(templates)} in {root} skipped (not subjects)")
    meta = {**meta, "notes": notes}
    if spec.source == "hcp":
        phenotypes = _hcp_phenotypes(spec.phenotypes)
        for subject, gender, age, tiv in phenotypes.itertuples(index=False):
            if gender not in ("M", "F"):
                qc.append({"subject": subject, "file": str(spec.phenotypes), "reason": f"Gender {gender!r} is not M/F"})
            elif subject not in folders:
                qc.append({"subject": subject, "file": str(root / subject), "reason": "no subject folder"})
            else:
                rows.append({"subject": subject, "label": int(gender == "F"),
                             "label_name": "female" if gender == "F" else "male",
                             "sex": "female" if gender == "F" else "male", "age": age, "site": "HCP",
                             "tiv": tiv, "folder": folders[subject]})
        listed = set(phenotypes["subject"])
    else:
        phenotypes = read_abide_phenotypes(spec.phenotypes, strict=False)
        by_number = {}
        for name, folder in folders.items():
            match = re.search(r"(\d+)$", name)
            if match:
                by_number.setdefault(int(match.group(1)), []).append(folder)
        for sub_id, site, diagnosis, sex, age in phenotypes.itertuples(index=False):
            found = by_number.get(sub_id, [])
            if pd.isna(diagnosis) or pd.isna(sex):
                qc.append({"subject": str(sub_id), "file": str(spec.phenotypes),
                           "reason": "DX_GROUP or SEX is not 1 or 2"})
            elif not found:
                qc.append({"subject": str(sub_id), "file": str(root), "reason": "no subject folder"})
            elif len(found) > 1:
                qc.append({"subject": str(sub_id), "file": str(root),
                           "reason": f"several folders match: {', '.join(f.name for f in found)}"})
            else:
                label = int(diagnosis == "autism")
                rows.append({"subject": str(sub_id), "label": label, "label_name": diagnosis, "sex": sex,
                             "age": age, "site": site, "tiv": freesurfer_tiv(found[0]), "folder": found[0]})
        listed = {str(n) for n in phenotypes["subject"]}
        folders = {str(int(m.group(1))): f for f in folders.values() if (m := re.search(r"(\d+)$", f.name))} | \
            {name: f for name, f in folders.items() if not re.search(r"(\d+)$", name)}
    for name in sorted(set(folders) - listed):
        qc.append({"subject": name, "file": str(folders[name]), "reason": "no row in the phenotype file (no label)"})
    rows = seeded_subset(rows, spec.n_subjects, meta, qc)

    if not rows:
        reasons = "; ".join(f"{q['subject']}: {q['reason']}" for q in qc[:5])
        raise ValueError(f"no subject in {root} has both a folder and a label ({len(qc)} QC rows, e.g. {reasons})")
    spheres = ({h: template_sphere(template, h, spec.registration_sphere) for h in HEMISPHERES}
               if spec.source == "freesurfer" else {})
    def read(row: dict) -> dict:
        if spec.source == "hcp":
            return {(h, m): read_hcp_maps(row["folder"], row["subject"], h, m, template.surfaces[h].cortex)
                    for h in HEMISPHERES for m in spec.metrics}
        return {(h, m): values for h in HEMISPHERES for m, values in _freesurfer_subject(
            row["folder"], h, list(spec.metrics), template, spheres[h]).items()}

    return write_subjects(out, rows, qc, template, spec.metrics, meta, read, root, progress=progress)


def seeded_subset(rows: list[dict], n_subjects: int | None, meta: dict, qc: list[dict]) -> list[dict]:
    """A seeded random subset of ``n_subjects`` of ``rows`` (seed ``meta["seed"]``): every row left out becomes a QC
    row naming its ``folder``, and ``meta["notes"]`` says so; all rows when ``n_subjects`` is None or not smaller."""
    if n_subjects is None or n_subjects >= len(rows):
        return rows
    keep = np.sort(np.random.default_rng(int(meta.get("seed", 0))).choice(len(rows), n_subjects, replace=False))
    chosen = set(keep.tolist())
    qc += [{"subject": row["subject"], "file": str(row["folder"]),
            "reason": f"not in the seeded random subset (n_subjects: {n_subjects} of {len(rows)})"}
           for i, row in enumerate(rows) if i not in chosen]
    meta.setdefault("notes", []).append(f"a seeded random subset of {n_subjects} of the {len(rows)} subjects with "
                                        "data and a label (n_subjects); the others are QC rows")
    return [rows[i] for i in keep]


def write_subjects(out: Path, rows: list[dict], qc: list[dict], template: Template, metrics, meta: dict,
                   read, root: Path, *, progress: bool = True) -> Cohort:
    """Read every subject row with ``read(row) -> {(hemisphere, metric): values}`` into a cohort at ``out``; a
    subject whose ``read`` raises :class:`InputProblem` becomes a QC row and is dropped (rows carry a ``folder``,
    not written to the subjects table)."""
    candidates = pd.DataFrame(rows)
    n_vertices = {h: template.n_vertices(h) for h in HEMISPHERES}
    writer = CohortWriter(out, candidates.drop(columns="folder"), template.name, n_vertices, metrics, meta)
    keep = np.zeros(len(candidates), dtype=bool)
    for index, row in enumerate(progress_bar(rows, desc=f"reading {meta.get('name')}", unit="subject",
                                             disable=None if progress else True)):
        try:
            subject_maps = read(row)
        except InputProblem as problem:
            qc.append({"subject": row["subject"], "file": str(problem.file), "reason": problem.reason})
            continue
        for (h, m), values in subject_maps.items():
            writer.write(h, m, index, values.astype(np.float32))
        keep[index] = True
    if not keep.any():
        reasons = "; ".join(f"{q['subject']}: {q['reason']}" for q in qc[:5])
        raise ValueError(f"no usable subject in {root} ({len(qc)} QC exclusions, e.g. {reasons})")
    return writer.close(pd.DataFrame(qc, columns=["subject", "file", "reason"]), keep=keep)
