"""The paper's flattening: hemisphere (medial wall removed) -> conformal square -> area-preserving square.

:func:`flatten` chains :func:`~studylib.geometry.disk.prepare_disk`,
:func:`~studylib.geometry.conformal.conformal_square` and the optimal-transport step of
:mod:`studylib.geometry.transport`, and returns a :class:`FlatMap` that can be saved as the ``MAP.npz``
of ``studylib flatten``. :func:`template_flat_map` computes (or loads from a cache) the one map that all
subjects on a template share.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..hashing import code_digest, sha256_bytes, sha256_json
from ..storage import atomic_path
from .conformal import conformal_square
from .disk import prepare_disk
from .laplacian import cotangent_laplacian
from .mesh import signed_areas, triangle_areas

__all__ = ["FlatMap", "FlattenReport", "cached_flat_map", "flatten", "load_surface", "load_mask", "template_flat_map"]


@dataclass(frozen=True)
class FlattenReport:
    """How one flattening went: mesh sizes, what disk preparation removed, the solves' residuals and times.

    Attributes
    ----------
    vertices, faces : int
        Size of the disk that was mapped.
    removed : dict of str to int
        Vertices removed by each disk preparation step (``outside mask``, ``small components``, ``ears``).
    aspect : float
        Width / height of the conformal rectangle before it was scaled to the square.
    conformal_residuals : list of float
        Max angle-sum error (radians) after each conformal Newton iteration.
    conformal_seconds : float
    intrinsic_flips : int
        Edges of the final intrinsic Delaunay triangulation that are not edges of the input mesh.
    transport_residuals : list of float
        Relative cell-area error per optimal-transport iteration (empty for a conformal-only map).
    transport_seconds : float or None
    flipped_before_repair, flipped : int or None
        Flipped triangles after optimal transport, before and after local repair.
    refine_residuals : list of float or None
        Triangle-area refinement residuals, when it ran.
    refine_seconds : float or None
    seconds : float
        Wall time of the whole flattening.
    key : str or None
        Cache key of a template flat map (:func:`template_flat_map`).
    """

    vertices: int
    faces: int
    removed: dict[str, int]
    aspect: float
    conformal_residuals: list[float]
    conformal_seconds: float
    intrinsic_flips: int
    transport_residuals: list[float] = field(default_factory=list)
    transport_seconds: float | None = None
    flipped_before_repair: int | None = None
    flipped: int | None = None
    refine_residuals: list[float] | None = None
    refine_seconds: float | None = None
    seconds: float = 0.0
    key: str | None = None

    @property
    def conformal_iterations(self) -> int:
        return len(self.conformal_residuals) - 1

    @property
    def transport_iterations(self) -> int:
        return len(self.transport_residuals)

    def summary(self) -> dict[str, Any]:
        """Scalar figures of the run (for tables and ``studylib flatten --json``)."""
        return {"vertices": self.vertices, "faces": self.faces, **{f"removed {k}": v for k, v in self.removed.items()},
                "aspect": self.aspect, "conformal_iterations": self.conformal_iterations,
                "conformal_residual": self.conformal_residuals[-1], "conformal_seconds": self.conformal_seconds,
                "intrinsic_flips": self.intrinsic_flips, "transport_iterations": self.transport_iterations,
                "transport_residual": self.transport_residuals[-1] if self.transport_residuals else None,
                "transport_seconds": self.transport_seconds, "flipped_before_repair": self.flipped_before_repair,
                "flipped": self.flipped, "refined": self.refine_residuals is not None,
                "refine_seconds": self.refine_seconds, "seconds": self.seconds}

    def to_json(self) -> str:
        return json.dumps(asdict(self), default=float)

    @classmethod
    def from_json(cls, text: str) -> FlattenReport:
        return cls(**json.loads(text))


@dataclass(frozen=True)
class FlatMap:
    """A mesh mapped onto the unit square.

    Attributes
    ----------
    uv : ndarray, shape (k, 2)
        Area-preserving positions in [0, 1]² of the kept vertices (the conformal ones when the area step
        was skipped).
    faces : ndarray, shape (f, 3)
        Triangles over the kept vertices.
    vertex_index : ndarray, shape (k,)
        Index of each kept vertex in the input mesh.
    corners : ndarray, shape (4,)
        Kept-vertex indices of the corners at (0, 0), (1, 0), (1, 1), (0, 1).
    conformal_uv : ndarray, shape (k, 2)
        The conformal square map before the area-preserving step.
    boundary : ndarray
        Boundary loop (kept-vertex indices).
    report : FlattenReport
        Residuals, iterations, seconds, aspect ratio and removed-vertex counts.
    """

    uv: np.ndarray
    faces: np.ndarray
    vertex_index: np.ndarray
    corners: np.ndarray
    conformal_uv: np.ndarray
    boundary: np.ndarray
    report: FlattenReport

    def save(self, path: str | Path) -> Path:
        """Write the map as ``.npz`` (atomically; the suffix is added when missing) and return the path."""
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_name(path.name + ".npz")
        with atomic_path(path) as partial:
            np.savez_compressed(partial, uv=self.uv, faces=self.faces, vertex_index=self.vertex_index,
                                corners=self.corners, conformal_uv=self.conformal_uv, boundary=self.boundary,
                                report=self.report.to_json())
        return path

    @classmethod
    def load(cls, path: str | Path) -> FlatMap:
        """Read a map written by :meth:`save`.

        Raises
        ------
        ValueError
            When the file is not such a map.
        """
        try:
            with np.load(path) as stored:
                return cls(stored["uv"], stored["faces"], stored["vertex_index"], stored["corners"],
                           stored["conformal_uv"], stored["boundary"], FlattenReport.from_json(str(stored["report"])))
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{path}: not a flat map written by this version of studylib ({error})") from None


#: The triangle-area refinement runs when optimal transport leaves the 5th-95th percentile of triangle area
#: ratios outside this band (uneven meshes such as fsaverage5; fs_LR 32k is already within it).
REFINE_BAND = (0.95, 1.05)


def flatten(vertices: np.ndarray, faces: np.ndarray, keep: np.ndarray | None = None, *,
            area_preserving: bool = True, tolerance: float = 1e-9, max_iterations: int = 100,
            refine: bool | None = None, corners: np.ndarray | None = None, power_diagram: str = "qhull") -> FlatMap:
    """Map a hemisphere (without its medial wall) onto the unit square.

    Parameters
    ----------
    vertices : ndarray, shape (n, 3)
    faces : ndarray, shape (m, 3)
    keep : ndarray of bool, shape (n,), optional
        The cortex mask (False on the medial wall).
    area_preserving : bool
        Follow the conformal map with the optimal-transport step (the paper's map); False stops at the
        conformal square.
    tolerance, max_iterations
        Newton stopping rule of the conformal and transport solves.
    refine : bool, optional
        Fit triangle areas after the transport step (:mod:`studylib.geometry.refine`); by default only when
        the transport leaves triangle area ratios (p5-p95) outside :data:`REFINE_BAND`.
    corners : ndarray, shape (4,), optional
        Input-mesh indices of the vertices to put on the corners (0, 0), (1, 0), (1, 1), (0, 1), in boundary-loop
        order; chosen from the boundary's shape by default. A template map's ``vertex_index[corners]`` puts the
        same anatomical points on the corners of every surface that shares the template's mesh.
    power_diagram : {"qhull", "geogram"}
        The transport's power-diagram backend (:func:`~studylib.geometry.transport.power_cells`): qhull is
        deterministic; geogram takes 0.87-1.12x its time per map and is not bit-reproducible between runs.

    Raises
    ------
    ValueError
        When a given corner is not a boundary vertex of the prepared disk, or the corners are not in loop order.
    """
    started = time.perf_counter()
    disk = prepare_disk(vertices, faces, keep)
    disk_corners = None if corners is None else _disk_corners(disk, corners)
    conformal = conformal_square(disk, disk_corners, tolerance=tolerance, max_iterations=max_iterations)
    report = FlattenReport(vertices=int(len(disk.vertices)), faces=int(len(disk.faces)), removed=dict(disk.removed),
                           aspect=float(conformal.aspect), conformal_residuals=[float(r) for r in conformal.residuals],
                           conformal_seconds=conformal.seconds, intrinsic_flips=int(conformal.intrinsic_flips))
    uv = conformal.uv
    if area_preserving:
        from .transport import area_preserving_map

        _, vertex_areas = cotangent_laplacian(disk.vertices, disk.faces)
        result = area_preserving_map(conformal.uv, disk.faces, vertex_areas, disk.boundary, conformal.corners,
                                     tol=tolerance, max_iterations=max_iterations, power_diagram=power_diagram)
        if not result.converged:
            raise RuntimeError(f"optimal transport did not converge: relative cell-area error per iteration "
                               f"{[float(r) for r in result.residuals]}")
        uv = result.uv
        triangle_3d = triangle_areas(disk.vertices, disk.faces)
        ratio = signed_areas(uv, disk.faces) / triangle_3d * triangle_3d.sum()
        low, high = np.percentile(ratio, [5, 95])
        if refine or (refine is None and not (REFINE_BAND[0] <= low and high <= REFINE_BAND[1])):
            from .refine import refine_triangle_areas

            tick = time.perf_counter()
            refined = refine_triangle_areas(uv, disk.faces, triangle_3d, disk.boundary, conformal.corners)
            uv = refined.uv
            report = replace(report, refine_residuals=[float(r) for r in refined.residuals],
                             refine_seconds=time.perf_counter() - tick)
        report = replace(report, transport_residuals=[float(r) for r in result.residuals],
                         transport_seconds=result.seconds, flipped_before_repair=int(result.flipped_before_repair),
                         flipped=int(result.flipped))
    report = replace(report, seconds=time.perf_counter() - started)
    return FlatMap(uv, disk.faces, disk.vertex_index, conformal.corners, conformal.uv, disk.boundary, report)


def _disk_corners(disk, corners: np.ndarray) -> np.ndarray:
    """Input-mesh corner indices as indices of the prepared disk, checked to be boundary vertices in loop order."""
    corners = np.asarray(corners, dtype=np.int64).ravel()
    if corners.shape != (4,) or len(set(corners.tolist())) != 4:
        raise ValueError(f"corners must be 4 distinct vertex indices, got {corners.tolist()}")
    position = np.full(int(disk.vertex_index.max()) + 1, -1)
    position[disk.vertex_index] = np.arange(len(disk.vertex_index))
    inside = (corners >= 0) & (corners < len(position))
    local = np.where(inside, position[np.where(inside, corners, 0)], -1)
    loop_position = np.full(len(disk.vertices), -1)
    loop_position[disk.boundary] = np.arange(len(disk.boundary))
    at = np.where(local >= 0, loop_position[np.maximum(local, 0)], -1)
    if (at < 0).any():
        raise ValueError(f"corner vertices {corners[at < 0].tolist()} are not on the boundary of the prepared disk "
                         "(a different mesh or cortex mask than the map the corners came from?)")
    if not (np.diff((at - at[0]) % len(disk.boundary)) > 0).all():
        raise ValueError(f"corner vertices {corners.tolist()} are not in boundary-loop order")
    return local


def cached_flat_map(vertices: np.ndarray, faces: np.ndarray, keep: np.ndarray | None, path: str | Path | None, *,
                    name: str, **kwargs: Any) -> FlatMap:
    """:func:`flatten` with a cache at ``path``, reused only for the same surface, mask, code and options.

    The key (recorded as ``report.key``) digests the vertices, faces and mask, this module's code (and the
    ``studylib`` modules it imports), ``name`` and the keyword options of :func:`flatten`; a cached map with another
    key, or in an older format, is recomputed and replaced (atomically).
    """
    vertices = np.ascontiguousarray(vertices, dtype=np.float64)
    faces = np.ascontiguousarray(faces)
    options = {k: (np.asarray(v).tolist() if isinstance(v, np.ndarray) else v) for k, v in kwargs.items()}
    key = sha256_json({"code": code_digest(__name__), "options": options, "template": name,
                       "surface": sha256_bytes(vertices.tobytes() + faces.tobytes()),
                       "cortex": sha256_bytes(np.ascontiguousarray(keep).tobytes()) if keep is not None else None})
    path = Path(path) if path is not None else None
    if path is not None and path.is_file():
        try:
            cached = FlatMap.load(path)
        except ValueError:
            cached = None  # an older format: recompute
        if cached is not None and cached.report.key == key:
            return cached
    flat = flatten(vertices, faces, keep, **kwargs)
    flat = replace(flat, report=replace(flat.report, key=key))
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        flat.save(path)
    return flat


def template_flat_map(template: Any, hemisphere: str, path: str | Path | None = None, **kwargs: Any) -> FlatMap:
    """The flat map shared by every subject on ``template``, cached at ``path`` (see :func:`cached_flat_map`)."""
    surface = template.surfaces[hemisphere]
    return cached_flat_map(surface.vertices, surface.faces, surface.cortex, path, name=template.name, **kwargs)


def load_surface(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Vertices and faces of a GIFTI surface (``.surf.gii``) or a FreeSurfer geometry file (``lh.white``...)."""
    import nibabel as nib

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"surface not found: {path}")
    try:
        if path.name.endswith(".gii"):
            image = nib.load(str(path))
            points = image.agg_data("NIFTI_INTENT_POINTSET")
            triangles = image.agg_data("NIFTI_INTENT_TRIANGLE")
            if points is None or triangles is None or isinstance(points, tuple):
                raise ValueError("expected one POINTSET and one TRIANGLE array")
            return np.asarray(points, np.float64), np.asarray(triangles, np.int64)
        vertices, faces = nib.freesurfer.read_geometry(str(path))
        return np.asarray(vertices, np.float64), np.asarray(faces, np.int64)
    except Exception as error:
        raise ValueError(f"{path}: not a readable GIFTI or FreeSurfer surface ({error})") from None


def load_mask(path: str | Path, n_vertices: int) -> np.ndarray:
    """A cortex mask: ``.npy``/``.txt``/``.csv`` of 0/1 per vertex, or a FreeSurfer ``.label`` of kept vertices."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"cortex mask not found: {path}")
    if path.suffix == ".label":
        import nibabel.freesurfer as fs

        vertices = fs.read_label(str(path))
        if vertices.size and vertices.max() >= n_vertices:
            raise ValueError(f"{path}: vertex {vertices.max()} is beyond the surface's {n_vertices} vertices")
        mask = np.zeros(n_vertices, dtype=bool)
        mask[vertices] = True
        return mask
    values = np.load(path) if path.suffix == ".npy" else np.loadtxt(path, delimiter="," if path.suffix == ".csv" else None)
    values = np.asarray(values).ravel()
    if len(values) != n_vertices:
        raise ValueError(f"{path}: {len(values)} values for a surface of {n_vertices} vertices")
    if not np.isin(values, (0, 1)).all():
        raise ValueError(f"{path}: a mask holds 0/1 per vertex")
    return values.astype(bool)
