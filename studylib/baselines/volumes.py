"""Volumes for the slice, 3D-volume and 3D-mesh baselines, built from the surfaces so that they carry each cohort's
effects; and real FreeSurfer volumes on the same grid.

Everything lies on one grid per template (:class:`Grid`: RAS millimetres, the template surfaces' space, both
hemispheres, ``voxel`` mm voxels):

- **The cortical ribbon** (:class:`RibbonVoxeliser`): the subject's pial side is the template's white surface moved
  along its outward normal by the subject's thickness at each vertex. The prism between the two is sampled (points
  spread over each triangle and through the depth, each carrying its share of the prism's volume, trilinearly splatted
  onto the grid), which gives each voxel the cortical volume it holds; its **partial volume** is that divided by the
  voxel's volume, clipped to 1. The voxel's value is partial volume x grey-matter intensity, a T1-weighted-like
  contrast model: intensity ``1 + MYELIN_CONTRAST * z``, with ``z`` the subject's myelin map standardised by the
  template's group map (T1w intensity of cortex rises with its myelin content: Glasser & Van Essen 2011, J Neurosci
  31:11597, whose T1w/T2w ratio is the myelin map), or the template's group map when the cohort has no myelin
  (then no individual intensity differences). Outside the ribbon (white matter, CSF) the value is 0, as in
  FreeSurfer's ``brain.mgz`` restricted to ``ribbon.mgz``.
- **Metric grids** (the paper's "3D mesh" input; :class:`MetricGrid` for a cohort, :func:`metric_grid` for one
  map): a metric's vertex values placed at the template's midthickness vertex positions, each voxel the
  trilinear-weighted mean of the vertices near it, 0 where none is.
- **Slices** (:func:`slice_positions`, :func:`cut_slices`) of the ribbon volume in the three directions, padded
  square and resized to the flat images' size.

What synthetic volumes can and cannot carry: every subject shares the template's folding, so sulcal depth and
curvature differences cannot appear in the ribbon (only in the metric grids); thickness moves the pial side by tenths
of a millimetre, which at 4 mm voxels is a change of a few percent in the partial volumes of the voxels the ribbon
crosses; myelin enters only through the intensity. The 3D-mesh baseline carries every metric, so on simulated
cohorts the flat map's surface distance is judged first against it.

Real FreeSurfer subjects (:func:`freesurfer_ribbon`): ``mri/brain.mgz`` (else ``norm.mgz``) restricted to the cortex
labels of ``mri/ribbon.mgz`` (3 and 42), intensities divided by FreeSurfer's white-matter normalisation value (110),
brought into MNI305 space by the linear ``mri/transforms/talairach.xfm`` FreeSurfer writes, and averaged over
sub-voxel samples onto the template grid (the fs_LR surfaces lie in MNI152 space; MNI305 and MNI152 differ by a
few millimetres, less than the default voxel).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from ..data.templates import HEMISPHERES, load_template
from ..geometry.mesh import triangle_areas

__all__ = ["DIRECTIONS", "Grid", "MAX_THICKNESS", "MYELIN_CONTRAST", "MetricGrid", "RealRibbons", "RibbonVoxeliser",
           "build_volume_store", "cut_slices", "enclosed_volume", "freesurfer_ribbon", "freesurfer_ribbons",
           "metric_grid", "myelin_contrast", "outward_normals", "read_talairach", "ribbon_volume_check",
           "slice_positions", "splat", "splat_matrix", "volume_sets", "white_surface"]

#: Slice directions and the grid axis each cuts across (RAS: x left-right, y back-front, z down-up).
DIRECTIONS = {"sagittal": 0, "coronal": 1, "axial": 2}
#: Thickness beyond which a map value is taken as an error (FreeSurfer caps thickness at 5 mm; semi-real maps stay
#: below); values are clipped to [0, MAX_THICKNESS].
MAX_THICKNESS = 6.0
#: Grey-matter intensity change per SD of myelin (T1w-like contrast model of the ribbon volumes).
MYELIN_CONTRAST = 0.1
#: FreeSurfer's intensity normalisation puts white matter at 110 in brain.mgz / norm.mgz.
FREESURFER_WM = 110.0


@dataclass(frozen=True)
class Grid:
    """A regular grid in RAS millimetres: ``origin`` is the centre of voxel (0, 0, 0)."""

    origin: tuple[float, float, float]
    voxel: float
    shape: tuple[int, int, int]

    @classmethod
    def around(cls, points: np.ndarray, voxel: float, margin: float) -> Grid:
        """The smallest grid of ``voxel`` mm holding ``points`` with ``margin`` mm to spare on every side."""
        if voxel <= 0:
            raise ValueError(f"voxel size must be positive, got {voxel}")
        low = np.asarray(points, dtype=np.float64).min(axis=0) - margin
        high = np.asarray(points, dtype=np.float64).max(axis=0) + margin
        shape = tuple(int(n) for n in np.ceil((high - low) / voxel).astype(int) + 1)
        return cls(tuple(float(x) for x in low), float(voxel), shape)

    @property
    def affine(self) -> np.ndarray:
        """Voxel index -> RAS mm (4 x 4), as NIfTI/nibabel use it."""
        affine = np.eye(4)
        affine[:3, :3] *= self.voxel
        affine[:3, 3] = self.origin
        return affine

    def coordinates(self, points: np.ndarray) -> np.ndarray:
        """Continuous voxel coordinates of RAS points."""
        return (np.asarray(points, dtype=np.float64) - np.asarray(self.origin)) / self.voxel

    def centres(self) -> np.ndarray:
        """RAS coordinates of every voxel centre, shape (*shape, 3)."""
        axes = [self.origin[i] + self.voxel * np.arange(n) for i, n in enumerate(self.shape)]
        return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)


def _cell_of(points: np.ndarray, grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    """Each point's lowest surrounding voxel (n, 3) and its fractional offset from it (n, 3)."""
    c = grid.coordinates(points)
    base = np.floor(c).astype(np.int64)
    shape = np.asarray(grid.shape)
    if len(c) and (base.min() < 0 or np.any(base.max(axis=0) + 1 >= shape)):
        outside = int(np.sum(np.any((base < 0) | (base + 1 >= shape), axis=1)))
        raise ValueError(f"{outside} of {len(c)} points fall outside the grid {grid.shape} at {grid.voxel} mm")
    return base, c - base


def splat(points: np.ndarray, weights: list[np.ndarray], grid: Grid) -> list[np.ndarray]:
    """Trilinear splatting: each point's weights spread over the 8 voxels around it (sums are conserved).

    Parameters
    ----------
    points : ndarray, shape (n, 3)
        RAS millimetres.
    weights : list of ndarray, shape (n,)
        One array per output.
    grid : Grid

    Returns
    -------
    list of ndarray, shape ``grid.shape``

    Raises
    ------
    ValueError
        When a point lies outside the grid (its weight would be lost).
    """
    base, frac = _cell_of(points, grid)
    size = int(np.prod(grid.shape))
    out = [np.zeros(size) for _ in weights]
    for corner in np.ndindex(2, 2, 2):
        offset = np.asarray(corner)
        index = np.ravel_multi_index((base + offset).T, grid.shape)
        share = np.prod(np.where(offset, frac, 1.0 - frac), axis=1)
        for total, weight in zip(out, weights):
            total += np.bincount(index, weights=weight * share, minlength=size)
    return [total.reshape(grid.shape) for total in out]


def splat_matrix(points: np.ndarray, grid: Grid) -> sp.csr_matrix:
    """:func:`splat` of fixed points as a sparse (voxels x points) matrix: ``splat(points, [w], grid)[0]`` is
    ``matrix @ w`` reshaped to ``grid.shape``. Building it costs about two metric grids, applying it a sixteenth of
    one (fs_LR 32k's 59,412 cortex vertices on the 4 mm grid, beside a training run on 2 cores: 77-87 ms, then 2.7 ms
    a grid against 44-46 ms for :func:`metric_grid`); :class:`MetricGrid` applies it to every subject."""
    base, frac = _cell_of(points, grid)
    corners = np.array(list(np.ndindex(2, 2, 2)))  # (8, 3)
    voxels = np.stack([np.ravel_multi_index((base + offset).T, grid.shape) for offset in corners])
    shares = np.stack([np.prod(np.where(offset, frac, 1.0 - frac), axis=1) for offset in corners])
    columns = np.broadcast_to(np.arange(len(base)), voxels.shape)
    return sp.csr_matrix((shares.ravel(), (voxels.ravel(), columns.ravel())),
                         shape=(int(np.prod(grid.shape)), len(base)))


def enclosed_volume(vertices: np.ndarray, faces: np.ndarray) -> float:
    """Signed volume a closed triangle mesh encloses (divergence theorem; positive for outward-facing triangles)."""
    v = np.asarray(vertices, dtype=np.float64)[np.asarray(faces)]
    return float(np.einsum("ij,ij->i", v[:, 0], np.cross(v[:, 1], v[:, 2])).sum() / 6.0)


def outward_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unit vertex normals (area-weighted triangle normals) pointing out of the closed surface."""
    v = np.asarray(vertices, dtype=np.float64)
    cross = np.cross(v[faces[:, 1]] - v[faces[:, 0]], v[faces[:, 2]] - v[faces[:, 0]])
    normals = np.zeros_like(v)
    for corner in range(3):
        np.add.at(normals, faces[:, corner], cross)
    if enclosed_volume(v, faces) < 0:  # triangles wound inwards
        normals = -normals
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    return np.divide(normals, length, out=np.zeros_like(normals), where=length > 0)


def white_surface(template: str, hemisphere: str) -> tuple[np.ndarray, np.ndarray]:
    """The template's group white surface of one hemisphere: vertices (n, 3) and faces (m, 3)."""
    if template == "fs_LR_32k":
        from ..data.templates import fslr32k_surface

        surface = fslr32k_surface(hemisphere, "white")
        return surface.vertices, surface.faces
    if template == "fsaverage5":
        from nilearn.datasets import load_fsaverage

        mesh = load_fsaverage("fsaverage5")["white_matter"].parts[hemisphere]
        return np.asarray(mesh.coordinates, np.float64), np.asarray(mesh.faces, np.int64)
    raise ValueError(f"no white surface for template {template!r}; choose fs_LR_32k or fsaverage5")


def _subdivision_points(level: int) -> np.ndarray:
    """Barycentric centroids of the ``level**2`` triangles of a triangle cut into ``level`` parts per side."""
    points = []
    for i in range(level):
        for j in range(level - i):
            points.append(((i + 1 / 3) / level, (j + 1 / 3) / level))  # upward triangle
            if i + j < level - 1:
                points.append(((i + 2 / 3) / level, (j + 2 / 3) / level))  # downward triangle
    ab = np.asarray(points)
    return np.column_stack([1.0 - ab.sum(axis=1), ab])


class RibbonVoxeliser:
    """Each subject's cortical ribbon on the template's grid (see the module docstring).

    Parameters
    ----------
    template : str
        ``fs_LR_32k`` or ``fsaverage5``.
    voxel : float
        Voxel size in mm.

    Attributes
    ----------
    grid : Grid
        Holds both hemispheres' white surfaces pushed out by :data:`MAX_THICKNESS`, with one voxel to spare.
    level, depths : int
        Samples per triangle (``level**2``) and through the thickness: chosen so that samples lie at most a voxel
        apart on the template (finer voxels need more samples).
    """

    def __init__(self, template: str, voxel: float):
        self.template, self.voxel = template, float(voxel)
        self.surfaces = {}
        for hemisphere in HEMISPHERES:
            vertices, faces = white_surface(template, hemisphere)
            normals = outward_normals(vertices, faces)
            self.surfaces[hemisphere] = (vertices, faces, normals, triangle_areas(vertices, faces))
        every = np.concatenate([np.concatenate([v, v + MAX_THICKNESS * n]) for v, _, n, _ in self.surfaces.values()])
        self.grid = Grid.around(every, self.voxel, margin=self.voxel)
        edges = np.concatenate([np.linalg.norm(v[f[:, [1, 2, 0]]] - v[f], axis=2).ravel()
                                for v, f, _, _ in self.surfaces.values()])
        self.level = max(1, int(np.ceil(np.percentile(edges, 99) / self.voxel)))
        self.depths = max(2, int(np.ceil(MAX_THICKNESS / 2 / self.voxel)))
        self._bary = _subdivision_points(self.level)
        self._fractions = (np.arange(self.depths) + 0.5) / self.depths

    def _samples(self, hemisphere: str, thickness: np.ndarray, contrast: np.ndarray):
        vertices, faces, normals, white_area = self.surfaces[hemisphere]
        t = np.clip(np.nan_to_num(np.asarray(thickness, dtype=np.float64), nan=0.0), 0.0, MAX_THICKNESS)
        offset = t[:, None] * normals
        pial_area = triangle_areas(vertices + offset, faces)
        prism = 0.5 * (white_area + pial_area) * t[faces].mean(axis=1)
        keep = prism > 0
        faces, prism = faces[keep], prism[keep]
        inner = np.einsum("sj,mjc->msc", self._bary, vertices[faces])           # (m, S, 3)
        depth = np.einsum("sj,mjc->msc", self._bary, offset[faces])             # (m, S, 3)
        points = inner[:, :, None, :] + self._fractions[None, None, :, None] * depth[:, :, None, :]
        share = prism / (len(self._bary) * self.depths)
        volume = np.broadcast_to(share[:, None, None], points.shape[:3])
        c = np.nan_to_num(np.asarray(contrast, dtype=np.float64), nan=1.0)
        value = np.broadcast_to((self._bary @ c[faces].T).T[:, :, None], points.shape[:3])
        return points.reshape(-1, 3), volume.ravel(), value.ravel()

    def cortical_volume(self, thickness: dict[str, np.ndarray]) -> dict[str, float]:
        """The surface-derived cortical volume (mm^3) per hemisphere: enclosed by the pial side minus enclosed by
        the white surface (divergence theorem), independent of the voxelisation."""
        out = {}
        for hemisphere, (vertices, faces, normals, _) in self.surfaces.items():
            t = np.clip(np.nan_to_num(np.asarray(thickness[hemisphere], float), nan=0.0), 0.0, MAX_THICKNESS)
            out[hemisphere] = enclosed_volume(vertices + t[:, None] * normals, faces) - enclosed_volume(vertices, faces)
        return out

    def volume(self, thickness: dict[str, np.ndarray], contrast: dict[str, np.ndarray] | None = None,
               *, partial_only: bool = False) -> np.ndarray:
        """One subject's ribbon image: partial volume x intensity (``partial_only``: the partial volume alone).

        Parameters
        ----------
        thickness : dict
            ``{hemisphere: (n_vertices,) mm}`` on the template (NaN off the cortex: no ribbon there).
        contrast : dict, optional
            ``{hemisphere: (n_vertices,)}`` grey-matter intensity per vertex (default 1).
        """
        occupied, signal = np.zeros(self.grid.shape), np.zeros(self.grid.shape)
        for hemisphere, (vertices, *_rest) in self.surfaces.items():
            if len(thickness[hemisphere]) != len(vertices):
                raise ValueError(f"{hemisphere} thickness has {len(thickness[hemisphere])} values; the {self.template} "
                                 f"white surface has {len(vertices)} vertices")
            c = np.ones(len(vertices)) if contrast is None else contrast[hemisphere]
            points, volume, value = self._samples(hemisphere, thickness[hemisphere], c)
            a, b = splat(points, [volume, volume * value], self.grid)
            occupied += a
            signal += b
        fraction = np.clip(occupied / self.voxel ** 3, 0.0, 1.0)
        if partial_only:
            return fraction.astype(np.float32)
        intensity = np.divide(signal, occupied, out=np.zeros_like(signal), where=occupied > 0)
        return (fraction * intensity).astype(np.float32)


def ribbon_volume_check(template: str, voxel: float) -> dict[str, float]:
    """The template's group ribbon voxelised at ``voxel`` mm beside its surface-derived cortical volume (pial side
    minus white, :meth:`RibbonVoxeliser.cortical_volume`): both in cm^3 and their ratio."""
    group = load_template(template)
    voxeliser = RibbonVoxeliser(template, voxel)
    thickness = {h: group.metric_map(h, "thickness") for h in HEMISPHERES}
    voxels = float(voxeliser.volume(thickness, partial_only=True).sum()) * voxel ** 3 / 1e3
    surface = sum(voxeliser.cortical_volume(thickness).values()) / 1e3
    return {"template": template, "voxel (mm)": voxel, "grid": " x ".join(map(str, voxeliser.grid.shape)),
            "surface-derived volume (cm3)": round(surface, 1), "voxelised volume (cm3)": round(voxels, 1),
            "ratio": round(voxels / surface, 4)}


def myelin_contrast(template: str, maps: dict[str, np.ndarray] | None) -> dict[str, np.ndarray]:
    """Grey-matter intensity per vertex: ``1 + MYELIN_CONTRAST * z`` of the subject's myelin (``maps``) or of the
    template's group myelin map (``maps`` None), standardised by the group map over both hemispheres' cortex; 1
    everywhere when the template has no myelin map."""
    group = load_template(template)
    if "myelin" not in group.metrics:
        return {h: np.ones(group.n_vertices(h)) for h in HEMISPHERES}
    reference = {h: group.metric_map(h, "myelin") for h in HEMISPHERES}
    values = np.concatenate([r[np.isfinite(r)] for r in reference.values()])
    mean, sd = values.mean(), values.std() or 1.0
    source = reference if maps is None else maps
    return {h: 1.0 + MYELIN_CONTRAST * (np.asarray(source[h], float) - mean) / sd for h in HEMISPHERES}


class MetricGrid:
    """Vertex values placed at fixed vertex positions in a grid (the paper's "3D mesh" input), the trilinear weights
    computed once for every subject.

    Calling it with ``{hemisphere: (n,)}`` values gives each voxel the trilinear-weighted mean of the finite vertex
    values around it, 0 where no vertex (with a finite value) is within a voxel.

    Parameters
    ----------
    positions : dict
        ``{hemisphere: (n, 3)}`` RAS millimetres, inside ``grid``.
    grid : Grid
    """

    def __init__(self, positions: dict[str, np.ndarray], grid: Grid) -> None:
        self.grid = grid
        self.sizes = {hemisphere: len(points) for hemisphere, points in positions.items()}
        self.matrix = splat_matrix(np.concatenate([np.asarray(p, dtype=np.float64) for p in positions.values()]), grid)

    def __call__(self, values: dict[str, np.ndarray]) -> np.ndarray:
        if {h: len(np.asarray(values.get(h, ()))) for h in self.sizes} != self.sizes:
            raise ValueError(f"values must have {self.sizes} vertices per hemisphere, got "
                             f"{ {h: len(np.asarray(v)) for h, v in values.items()} }")
        value = np.concatenate([np.asarray(values[h], dtype=np.float64) for h in self.sizes])
        finite = np.isfinite(value)
        total = self.matrix @ np.where(finite, value, 0.0)
        count = self.matrix @ finite.astype(np.float64)
        grid = np.divide(total, count, out=np.zeros_like(total), where=count > 1e-3)
        return grid.reshape(self.grid.shape).astype(np.float32)


def metric_grid(values: dict[str, np.ndarray], positions: dict[str, np.ndarray], grid: Grid) -> np.ndarray:
    """A metric's vertex values placed at the vertices' positions in ``grid`` (the paper's "3D mesh" input).

    Each voxel holds the trilinear-weighted mean of the (finite) vertex values around it, 0 where no vertex is
    within a voxel. ``values`` and ``positions`` are ``{hemisphere: (n,)}`` and ``{hemisphere: (n, 3)}``; only the
    positions of finite values need to lie inside the grid. For many subjects at the same positions,
    :class:`MetricGrid` computes the weights once.
    """
    points, weights = [], []
    for hemisphere, value in values.items():
        value = np.asarray(value, dtype=np.float64)
        finite = np.isfinite(value)
        points.append(np.asarray(positions[hemisphere])[finite])
        weights.append(value[finite])
    total, count = splat(np.concatenate(points), [np.concatenate(weights), np.ones(sum(map(len, weights)))], grid)
    return np.divide(total, count, out=np.zeros_like(total), where=count > 1e-3).astype(np.float32)


def slice_positions(ribbon: np.ndarray, per_direction: int) -> dict[str, int]:
    """Where to cut slices: ``{name: index along the direction's axis}``.

    Axial and coronal slices lie at the quantiles ``(k + 1) / (per_direction + 1)`` of the ribbon's volume along
    their axis. The middle sagittal slice would cut the midline, where the medial wall leaves no cortex, so sagittal
    slices come in mirrored pairs, one per hemisphere, at the same quantiles of the distance from the midline.
    """
    if per_direction < 1:
        raise ValueError(f"slices per direction must be at least 1, got {per_direction}")
    quantiles = (np.arange(per_direction) + 1) / (per_direction + 1)
    out = {}
    for direction, axis in DIRECTIONS.items():
        mass = np.asarray(ribbon, dtype=np.float64).sum(axis=tuple(a for a in range(3) if a != axis))
        coordinate = np.arange(len(mass), dtype=np.float64)
        if direction == "sagittal":
            midline = np.sum(coordinate * mass) / mass.sum()
            distance = np.abs(coordinate - midline)
            order = np.argsort(distance)
            cumulative = np.cumsum(mass[order]) / mass.sum()
            for k, q in enumerate(quantiles):
                d = distance[order][np.searchsorted(cumulative, q)]
                out[f"sagittal_left{k}"] = int(np.clip(round(midline - d), 0, len(mass) - 1))
                out[f"sagittal_right{k}"] = int(np.clip(round(midline + d), 0, len(mass) - 1))
        else:
            cumulative = np.cumsum(mass) / mass.sum()
            for k, q in enumerate(quantiles):
                out[f"{direction}{k}"] = int(np.searchsorted(cumulative, q))
    return out


def cut_slices(volume: np.ndarray, positions: dict[str, int], size: int) -> dict[str, np.ndarray]:
    """The slices of one volume at ``positions`` (from :func:`slice_positions`), each zero-padded square and resized
    (linear interpolation) to ``size`` x ``size``."""
    from scipy.ndimage import zoom

    out = {}
    for name, index in positions.items():
        axis = DIRECTIONS[next(d for d in DIRECTIONS if name.startswith(d))]
        plane = np.take(np.asarray(volume, dtype=np.float32), index, axis=axis)
        side = max(plane.shape)
        padded = np.zeros((side, side), dtype=np.float32)
        top, left = (side - plane.shape[0]) // 2, (side - plane.shape[1]) // 2
        padded[top: top + plane.shape[0], left: left + plane.shape[1]] = plane
        out[name] = zoom(padded, size / side, order=1, grid_mode=True, mode="grid-constant")[:size, :size]
    return out


def read_talairach(path: str | Path) -> np.ndarray:
    """FreeSurfer's ``talairach.xfm`` (MNI ``Linear_Transform``): the 4 x 4 scanner-RAS -> MNI305 matrix."""
    path = Path(path)
    lines = path.read_text().splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip().startswith("Linear_Transform"))
        rows = " ".join(lines[start + 1: start + 4]).replace(";", " ").split()
        matrix = np.asarray([float(x) for x in rows], dtype=np.float64).reshape(3, 4)
    except (StopIteration, ValueError) as error:
        raise ValueError(f"{path}: not a FreeSurfer talairach.xfm (no 3 x 4 Linear_Transform)") from error
    return np.vstack([matrix, [0.0, 0.0, 0.0, 1.0]])


def freesurfer_ribbon(subject_dir: str | Path, grid: Grid, *, samples: int | None = None) -> np.ndarray:
    """A FreeSurfer subject's cortical ribbon on ``grid`` (see the module docstring).

    Parameters
    ----------
    subject_dir : path
        ``$SUBJECTS_DIR/<subject>`` with ``mri/brain.mgz`` (or ``norm.mgz``), ``mri/ribbon.mgz`` and
        ``mri/transforms/talairach.xfm``.
    grid : Grid
        In MNI millimetres (the template grid).
    samples : int, optional
        Sub-samples per voxel side averaged into each voxel (default: one per millimetre).

    Raises
    ------
    FileNotFoundError
        Naming the missing file.
    """
    import nibabel as nib
    from scipy.ndimage import map_coordinates

    mri = Path(subject_dir) / "mri"
    intensity_path = next((mri / name for name in ("brain.mgz", "norm.mgz") if (mri / name).is_file()), None)
    if intensity_path is None:
        raise FileNotFoundError(f"{subject_dir}: neither mri/brain.mgz nor mri/norm.mgz")
    for needed in (mri / "ribbon.mgz", mri / "transforms" / "talairach.xfm"):
        if not needed.is_file():
            raise FileNotFoundError(f"{subject_dir}: {needed.relative_to(subject_dir)} is missing")
    image = nib.load(intensity_path)
    ribbon = np.asarray(nib.load(mri / "ribbon.mgz").dataobj)
    data = np.asarray(image.dataobj, dtype=np.float32)
    if data.shape != ribbon.shape:
        raise ValueError(f"{subject_dir}: {intensity_path.name} {data.shape} and ribbon.mgz {ribbon.shape} differ")
    cortex = np.isin(ribbon, (3, 42)) * data / FREESURFER_WM
    to_voxel = np.linalg.inv(np.asarray(image.affine)) @ np.linalg.inv(read_talairach(mri / "transforms" / "talairach.xfm"))
    n = samples or max(1, int(round(grid.voxel)))
    offsets = ((np.arange(n) + 0.5) / n - 0.5) * grid.voxel
    out = np.zeros(grid.shape, dtype=np.float64)
    centres = grid.centres().reshape(-1, 3)
    for shift in np.stack(np.meshgrid(offsets, offsets, offsets, indexing="ij"), axis=-1).reshape(-1, 3):
        points = centres + shift
        voxel = to_voxel[:3, :3] @ points.T + to_voxel[:3, 3:4]
        out += map_coordinates(cortex, voxel, order=1, mode="constant", cval=0.0).reshape(grid.shape)
    return (out / len(offsets) ** 3).astype(np.float32)


def _cortex_values(cohort, hemisphere: str, metric: str, rows: slice, cortex: np.ndarray) -> np.ndarray:
    values = np.asarray(cohort.maps(hemisphere, metric)[rows], dtype=np.float64)
    bad = ~np.isfinite(values[:, cortex]).all(axis=1)
    if bad.any():
        names = cohort.subjects["subject"].iloc[np.flatnonzero(bad) + rows.start].tolist()
        raise ValueError(f"cohort {cohort.name}: {hemisphere} {metric} has NaN/inf on cortex vertices for subject(s) "
                         f"{names[:5]}")
    return values


def volume_sets(metrics: list[str], positions: dict[str, int]) -> dict[str, tuple[str, str, str]]:
    """The image sets of a volume store: ``{file name: (hemisphere field, metric field, what it holds)}`` for the
    ribbon (``both``, ``ribbon``), each metric's grid (``both``, metric) and each slice (slice name, ``ribbon``)."""
    sets = {"both_ribbon": ("both", "ribbon", "3d-volume")}
    sets |= {f"both_{m}": ("both", m, "3d-mesh") for m in metrics}
    return sets | {f"{name}_ribbon": (name, "ribbon", "slice") for name in positions}


def build_volume_store(cohort, out: str | Path, *, voxel: float, slices_per_direction: int, image_size: int,
                       dtype: str = "float32", progress: bool = True, real_ribbons: RealRibbons | None = None):
    """The baselines' inputs for every subject of ``cohort``, in an image store (:mod:`studylib.images` format), so
    that the training jobs read them as they read flat images.

    Image sets (:func:`volume_sets`): ``both_ribbon`` (subjects x D x H x W), ``both_<metric>`` for every metric of
    the cohort (metric grids), and ``<slice>_ribbon`` (subjects x size x size) for the slices of
    :func:`slice_positions`, which are placed on the template's group ribbon (the same for every cohort of a
    template). The ribbon's thickness is the subject's (the template's group map when the cohort has none) and its
    intensity the subject's myelin (else the group's). Reused when ``store.json`` holds the same key (the cohort's
    build, these settings and this module's code).

    Returns
    -------
    ImageStore
    """
    import json

    from ..progress import progress_bar

    from ..hashing import code_digest, file_sha256, sha256_json
    from ..images import CHUNK, ImageStore
    from ..storage import atomic_write_text, chunked_moments

    out = Path(out)
    settings = {"voxel": float(voxel), "slices_per_direction": int(slices_per_direction), "size": int(image_size),
                "dtype": dtype}
    key = sha256_json({"cohort": cohort.meta.get("build_key"), "subjects": cohort.subjects.to_csv(index=False),
                       "settings": settings, "code": code_digest(__name__),
                       "real ribbons": real_ribbons.key if real_ribbons is not None else None})
    store_json = out / "store.json"
    if store_json.is_file() and json.loads(store_json.read_text()).get("key") == key:
        return ImageStore(out)
    template = load_template(cohort.template)
    voxeliser = RibbonVoxeliser(cohort.template, voxel)
    group_thickness = {h: template.metric_map(h, "thickness") for h in HEMISPHERES} \
        if "thickness" in template.metrics else None
    if group_thickness is None and "thickness" not in cohort.metrics:
        raise ValueError(f"cohort {cohort.name}: no thickness maps and template {cohort.template} has no group "
                         "thickness: no ribbon can be built")
    reference = group_thickness or {h: np.nanmean(cohort.maps(h, "thickness"), axis=0) for h in HEMISPHERES}
    positions = slice_positions(voxeliser.volume(reference, partial_only=True), slices_per_direction)
    cortex = {h: template.surfaces[h].cortex for h in HEMISPHERES}
    midthickness = {h: template.surfaces[h].vertices for h in HEMISPHERES}
    n = len(cohort)
    (out / "images").mkdir(parents=True, exist_ok=True)
    store_json.unlink(missing_ok=True)  # a half-built store is never taken for a finished one
    sets = volume_sets(cohort.metrics, positions)
    targets = {}
    for name in sets:
        shape = (n, image_size, image_size) if not name.startswith("both_") else (n, *voxeliser.grid.shape)
        targets[name] = np.lib.format.open_memmap(out / "images" / f"{name}.npy", mode="w+", dtype=np.dtype(dtype),
                                                  shape=shape)
    notes = []
    if real_ribbons is not None:
        notes.append("ribbon volumes and slices from each subject's FreeSurfer brain.mgz inside ribbon.mgz, moved to "
                     "MNI305 by talairach.xfm (freesurfer_ribbon)")
    elif "thickness" not in cohort.metrics:
        notes.append("no thickness maps: every ribbon has the template's group thickness")
    if "myelin" not in cohort.metrics and real_ribbons is None:
        notes.append("no myelin maps: ribbon intensity from the template's group myelin (no individual differences)")
    group_contrast = myelin_contrast(cohort.template, None)
    on_grid = MetricGrid({h: midthickness[h][cortex[h]] for h in HEMISPHERES}, voxeliser.grid)  # cortex vertices
    for start in progress_bar(range(0, n, CHUNK), desc=f"{cohort.name} volumes", disable=not progress, unit="chunk"):
        rows = slice(start, min(start + CHUNK, n))
        maps = {m: {h: _cortex_values(cohort, h, m, rows, cortex[h]) for h in HEMISPHERES} for m in cohort.metrics}
        for i in range(rows.stop - rows.start):
            thickness = {h: maps["thickness"][h][i] for h in HEMISPHERES} if "thickness" in maps else reference
            contrast = group_contrast if "myelin" not in maps else \
                myelin_contrast(cohort.template, {h: maps["myelin"][h][i] for h in HEMISPHERES})
            if real_ribbons is not None:
                ribbon = real_ribbons.volume(str(cohort.subjects["subject"].iloc[start + i]), voxeliser.grid)
            else:
                ribbon = voxeliser.volume(thickness, contrast)
            targets["both_ribbon"][start + i] = ribbon
            for metric in cohort.metrics:
                targets[f"both_{metric}"][start + i] = on_grid({h: maps[metric][h][i][cortex[h]] for h in HEMISPHERES})
            for name, image in cut_slices(ribbon, positions, image_size).items():
                targets[f"{name}_ribbon"][start + i] = image
    stats, digests = {}, {}
    for name, target in targets.items():
        target.flush()
        mean, sd, _ = chunked_moments(target, chunk=CHUNK)
        stats[name] = {"mean": mean, "sd": sd}
        digests[name] = file_sha256(out / "images" / f"{name}.npy")
    cohort.subjects.to_csv(out / "subjects.csv", index=False)
    meta = {"cohort": cohort.name, "cohort_key": cohort.meta.get("build_key"), "template": cohort.template,
            "size": image_size, "method": "volumes", "dtype": dtype, "subjects": n, "sets": sets,
            "grid": {"origin": list(voxeliser.grid.origin), "voxel": voxeliser.grid.voxel,
                     "shape": list(voxeliser.grid.shape)},
            "slices": positions, "sampling": {"level": voxeliser.level, "depths": voxeliser.depths},
            "stats": stats, "sha256": digests, "notes": notes, "key": key, "settings": settings}
    atomic_write_text(store_json, json.dumps(meta, indent=2) + "\n")
    return ImageStore(out)


@dataclass(frozen=True)
class RealRibbons:
    """Where each subject's FreeSurfer folder is, and a digest of the volume files read (a store's cache key)."""

    folders: dict[str, Path]
    key: str

    def volume(self, subject: str, grid: Grid) -> np.ndarray:
        if subject not in self.folders:
            raise ValueError(f"subject {subject}: no FreeSurfer folder for its ribbon volume")
        return freesurfer_ribbon(self.folders[subject], grid)


def freesurfer_ribbons(spec, subjects, cache: str | Path | None = None) -> RealRibbons:
    """The FreeSurfer folders of a ``source: freesurfer`` cohort's ``subjects`` (matched by trailing number, as the
    reader matches them) and a content digest of their ``brain.mgz``/``norm.mgz``, ``ribbon.mgz`` and
    ``talairach.xfm``.

    Raises
    ------
    FileNotFoundError
        Naming a subject whose folder lacks one of the files.
    """
    import re

    from ..data.readers import subject_folders
    from ..hashing import file_manifest, sha256_json

    folders, _ = subject_folders(spec)
    by_number = {str(int(m.group(1))): folder for name, folder in folders.items() if (m := re.search(r"(\d+)$", name))}
    found, files = {}, {}
    for subject in map(str, subjects):
        folder = by_number.get(subject) or folders.get(subject)
        if folder is None:
            raise FileNotFoundError(f"subject {subject}: no folder in {spec.path} for its ribbon volume")
        mri = folder / "mri"
        intensity = next((mri / n for n in ("brain.mgz", "norm.mgz") if (mri / n).is_file()), mri / "brain.mgz")
        for path in (intensity, mri / "ribbon.mgz", mri / "transforms" / "talairach.xfm"):
            if not path.is_file():
                raise FileNotFoundError(f"subject {subject}: {path} is missing (the 3D baselines need the volumes)")
            files[f"{subject}/{path.relative_to(folder).as_posix()}"] = path
        found[subject] = folder
    manifest = file_manifest(files, Path(cache) / "ribbon_volumes_manifest.json" if cache else None)
    return RealRibbons(found, sha256_json(manifest))
