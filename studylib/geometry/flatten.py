"""The paper's flattening: hemisphere (medial wall removed) -> conformal square -> area-preserving square.

:func:`flatten` chains :func:`~studylib.geometry.disk.prepare_disk`,
:func:`~studylib.geometry.conformal.conformal_square` and the optimal-transport step of
:mod:`studylib.geometry.transport`, and returns a :class:`FlatMap` that can be saved as the ``MAP.npz``
of ``studylib flatten``. :func:`template_flat_map` computes (or loads from a cache) the one map that all
subjects on a template share.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .conformal import conformal_square
from .disk import prepare_disk
from .laplacian import cotangent_laplacian
from .mesh import signed_areas, triangle_areas

__all__ = ["FlatMap", "flatten", "load_surface", "load_mask", "template_flat_map"]


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
    stats : dict
        Residuals, iterations, seconds, aspect ratio and removed-vertex counts.
    """

    uv: np.ndarray
    faces: np.ndarray
    vertex_index: np.ndarray
    corners: np.ndarray
    conformal_uv: np.ndarray
    boundary: np.ndarray
    stats: dict[str, Any] = field(default_factory=dict)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, uv=self.uv, faces=self.faces, vertex_index=self.vertex_index,
                            corners=self.corners, conformal_uv=self.conformal_uv, boundary=self.boundary,
                            stats=json.dumps(self.stats, default=float))
        return path

    @classmethod
    def load(cls, path: str | Path) -> FlatMap:
        with np.load(path) as stored:
            return cls(stored["uv"], stored["faces"], stored["vertex_index"], stored["corners"],
                       stored["conformal_uv"], stored["boundary"], json.loads(str(stored["stats"])))


#: The triangle-area refinement runs when optimal transport leaves the 5th-95th percentile of triangle area
#: ratios outside this band (uneven meshes such as fsaverage5; fs_LR 32k is already within it).
REFINE_BAND = (0.95, 1.05)


def flatten(vertices: np.ndarray, faces: np.ndarray, keep: np.ndarray | None = None, *,
            area_preserving: bool = True, tolerance: float = 1e-9, max_iterations: int = 100,
            refine: bool | None = None) -> FlatMap:
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
    """
    started = time.perf_counter()
    disk = prepare_disk(vertices, faces, keep)
    conformal = conformal_square(disk, tolerance=tolerance, max_iterations=max_iterations)
    stats: dict[str, Any] = {
        "vertices": int(len(disk.vertices)), "faces": int(len(disk.faces)), "removed": disk.removed,
        "conformal_residuals": conformal.residuals, "conformal_iterations": len(conformal.residuals) - 1,
        "conformal_seconds": conformal.seconds, "aspect": conformal.aspect,
        "intrinsic_flips": conformal.intrinsic_flips,
    }
    uv = conformal.uv
    if area_preserving:
        from .transport import area_preserving_map

        _, vertex_areas = cotangent_laplacian(disk.vertices, disk.faces)
        result = area_preserving_map(conformal.uv, disk.faces, vertex_areas, disk.boundary, conformal.corners,
                                     tol=tolerance, max_iterations=max_iterations)
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
            stats.update({"refine_residuals": refined.residuals, "refine_seconds": time.perf_counter() - tick})
        stats.update({"transport_residuals": [float(r) for r in result.residuals],
                      "transport_iterations": len(result.residuals), "transport_seconds": result.seconds,
                      "flipped_before_repair": int(result.flipped_before_repair), "flipped": int(result.flipped)})
    stats["seconds"] = time.perf_counter() - started
    return FlatMap(uv, disk.faces, disk.vertex_index, conformal.corners, conformal.uv, disk.boundary, stats)


def _geometry_code_hash() -> str:
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:16]



def template_flat_map(template: Any, hemisphere: str, cache: str | Path | None = None, **kwargs: Any) -> FlatMap:
    """The flat map shared by every subject on ``template``, cached as ``<cache>/<template>_<hemi>.npz``.

    The cached map is reused only if it was made by the same geometry code with the same options
    (recorded in its stats as ``key``); otherwise it is recomputed and replaced.
    """
    surface = template.surfaces[hemisphere]
    key = hashlib.sha256(json.dumps({"code": _geometry_code_hash(), "options": kwargs, "template": template.name,
                                     "cortex": hashlib.sha256(surface.cortex.tobytes()).hexdigest()},
                                    sort_keys=True).encode()).hexdigest()
    path = Path(cache) / f"{template.name}_{hemisphere}.npz" if cache is not None else None
    if path is not None and path.is_file():
        cached = FlatMap.load(path)
        if cached.stats.get("key") == key:
            return cached
    flat = flatten(surface.vertices, surface.faces, surface.cortex, **kwargs)
    flat.stats["key"] = key
    if path is not None:
        flat.save(path)
    return flat


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
