"""Each subject's own cortical surface on the template's mesh, for the per-subject flat maps (``flatten.mode``).

A subject's surface here has the template's vertices and triangles (the vertex correspondence every reader already
gives) and the subject's own geometry. HCP subjects bring theirs: ``{subject}.{L,R}.midthickness[_MSMAll].32k_fs_LR
.surf.gii`` in ``MNINonLinear/fsaverage_LR32k`` (the fs_LR 32k mesh itself). FreeSurfer subjects: the mean of
``surf/{lh,rh}.white`` and ``pial`` resampled through ``sphere.reg`` onto the template's vertices, as their metrics
are. BIDS (fMRIPrep/sMRIPrep) subjects: ``sub-<label>_hemi-{L,R}_midthickness.surf.gii`` resampled through their
``space-fsaverage_desc-reg_sphere``. Semi-real cohorts have no surfaces.

Simulated cohorts have no scanned surfaces, so each subject gets a smooth, seeded warp of the template:
a sum of random plane waves of displacement (wavelength ~ a lobe) scaled so that local area varies between subjects
by about :data:`AREA_SD` (log scale), the order of the between-subject SD of regional surface area in FreeSurfer
studies. The warp is a diffeomorphism of space (its Jacobian stays near the identity), so the warped surface keeps
the template's topology and has no folded triangles.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np

from ..geometry.mesh import triangle_areas
from .cohort import Cohort
from .templates import Template

__all__ = ["AREA_SD", "SURFACE_SOURCES", "subject_surface", "warp_surface"]

#: Target SD of log vertex-area ratios (warped / template) over the vertices of one warped hemisphere.
AREA_SD = 0.10

#: Cohort sources whose subjects have a surface here (the others raise in :func:`subject_surface`).
SURFACE_SOURCES = ("simulated", "hcp", "freesurfer", "bids")

_WAVELENGTH_MM = 80.0
_WAVES = 12


def warp_surface(vertices: np.ndarray, faces: np.ndarray, rng: np.random.Generator, *, area_sd: float = AREA_SD,
                 wavelength: float = _WAVELENGTH_MM, waves: int = _WAVES) -> np.ndarray:
    """A smooth random warp of ``vertices`` (n, 3) in mm: ``x + s * sum_k a_k sin(w_k . x + phi_k)``.

    Each wave has a random direction ``w_k`` (length ``2 pi / wavelength``), phase and displacement vector ``a_k``
    (standard normal); the scale ``s`` is set (two fixed-point steps) so that the SD over triangles of the log area
    ratio (warped / input) is ``area_sd``.
    """
    vertices = np.asarray(vertices, dtype=np.float64)
    if vertices.ndim != 2 or vertices.shape[1] != 3:
        raise ValueError(f"vertices must have shape (n, 3), got {vertices.shape}")
    if not 0 <= area_sd < 0.5:
        raise ValueError(f"area_sd must be in [0, 0.5), got {area_sd}")
    directions = rng.normal(size=(waves, 3))
    directions *= (2 * np.pi / wavelength) / np.linalg.norm(directions, axis=1, keepdims=True)
    phases = rng.uniform(0, 2 * np.pi, size=waves)
    displacement = np.sin(vertices @ directions.T + phases) @ rng.normal(size=(waves, 3))
    before = triangle_areas(vertices, faces)
    scale = 1.0
    for _ in range(2):  # the log area change is nearly linear in the scale at these strains
        spread = np.log(triangle_areas(vertices + scale * displacement, faces) / before).std()
        scale *= area_sd / spread if spread > 0 else 0.0
    return vertices + scale * displacement


def _subject_seed(cohort: Cohort, subject: str, hemisphere: str) -> list[int]:
    seed = int(cohort.meta.get("seed", 0))
    return [seed, zlib.crc32(cohort.name.encode()), zlib.crc32(str(subject).encode()),
            zlib.crc32(hemisphere.encode())]


def subject_surface(cohort: Cohort, template: Template, hemisphere: str, subject: str) -> np.ndarray:
    """The vertices (n, 3) of ``subject``'s ``hemisphere`` on the template's mesh (faces: the template's).

    Raises
    ------
    ValueError
        When the cohort's source has no individual surfaces here (only simulated cohorts do so far).
    """
    source = cohort.meta.get("source")
    if source not in SURFACE_SOURCES:
        raise ValueError(f"cohort {cohort.name!r} (source {source!r}) has no individual surfaces: per-subject flat "
                         f"maps (flatten.mode: per-subject) run on sources {list(SURFACE_SOURCES)}. Leave this "
                         "cohort out of flatten.cohorts")
    if cohort.template != template.name:
        raise ValueError(f"cohort {cohort.name!r} is on {cohort.template}, not on {template.name}")
    if str(subject) not in set(cohort.subjects["subject"].astype(str)):
        raise KeyError(f"subject {subject!r} is not in cohort {cohort.name!r}")
    if source == "hcp":
        return _hcp_surface(cohort, template, hemisphere, str(subject))
    if source == "freesurfer":
        from .readers import freesurfer_midthickness, freesurfer_subject_folder

        spec = cohort.meta.get("spec", {})
        sphere = spec.get("registration_sphere")
        folder = freesurfer_subject_folder(Path(str(spec.get("path"))), str(subject))
        return freesurfer_midthickness(folder, hemisphere, template, Path(sphere) if sphere else None)
    if source == "bids":
        from .bids import bids_midthickness

        spec = cohort.meta.get("spec", {})
        sphere = spec.get("registration_sphere")
        return bids_midthickness(Path(str(spec.get("path"))), Path(sphere) if sphere else None, str(subject),
                                 hemisphere, template)
    rng = np.random.default_rng(_subject_seed(cohort, str(subject), hemisphere))
    surface = template.surfaces[hemisphere]
    return warp_surface(surface.vertices, surface.faces, rng)


def _hcp_surface(cohort: Cohort, template: Template, hemisphere: str, subject: str) -> np.ndarray:
    from ..geometry.flatten import load_surface
    from .readers import hcp_surface_files

    root = cohort.meta.get("spec", {}).get("path")
    candidates = hcp_surface_files(Path(str(root)) / subject, subject, hemisphere)  # the HCP reader's naming
    path = next((candidate for candidate in candidates if candidate.is_file()), None)
    if path is None:
        raise FileNotFoundError(f"cohort {cohort.name!r}, subject {subject}: no {hemisphere} midthickness surface "
                                f"({' or '.join(c.name for c in candidates)} in {candidates[0].parent})")
    vertices, faces = load_surface(path)
    surface = template.surfaces[hemisphere]
    if vertices.shape != surface.vertices.shape or not np.array_equal(faces, surface.faces):
        raise ValueError(f"{path}: not on the {template.name} mesh ({len(vertices)} vertices, {len(faces)} "
                         f"triangles; the template has {len(surface.vertices)} and {len(surface.faces)}, and each "
                         "triangle must be the template's)")
    return vertices
