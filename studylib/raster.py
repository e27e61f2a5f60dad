"""Vertex-wise maps on a square-parameterised mesh <-> ``H x W`` images.

A cortical hemisphere mapped onto the unit square gives every vertex a position
``uv[i] = (u, v)`` in ``[0, 1]^2``. :class:`Rasterizer` turns vertex-wise values
(cortical thickness, sulcal depth, ...) into images for CNNs and images
(occlusion maps, saliency) back into vertex-wise values. Both directions are a
single sparse matrix product, built once per mesh and image size.

Pixel convention
----------------
An image has ``H`` rows and ``W`` columns. Pixel ``(r, c)`` covers
``[c/W, (c+1)/W) x [r/H, (r+1)/H)`` in uv coordinates and its centre is

    ``u = (c + 0.5) / W``,  ``v = (r + 0.5) / H``,

so **columns follow u, rows follow v, and row 0 is at v near 0** (the image is
"upside down" with respect to a plot with v pointing up: use
``origin="lower"`` in ``matplotlib.pyplot.imshow`` to draw it with v up).
Pixels are flattened in C order: pixel ``(r, c)`` is row ``r * W + c`` of the
operator.

Methods (``method=``)
---------------------
``"barycentric"``
    Every pixel centre takes the barycentric interpolation of the triangle that
    contains it: a piecewise-linear function of position is reproduced exactly.
``"paper-average"``
    The paper's rule ("barycentric interpolation ... The average of the points
    that fall within the same pixel is taken as the pixel's value"): a pixel
    that contains one or more vertices takes their mean; any other pixel takes
    the barycentric interpolation at its centre.

Back to vertices
----------------
:meth:`Rasterizer.to_vertices` uses the adjoint of the rasterisation,
normalised: a vertex takes the average of the pixels whose value depends on it,
weighted by the barycentric weights with which it contributes to them. With
``inverse="local-linear"`` (the default) these weights receive a first-order
correction so that the average reproduces linear functions of position exactly
(a weighted least-squares plane fit over the same pixels, evaluated at the
vertex); without it (``inverse="adjoint"``) the average is taken at the
weighted centroid of the pixels, which for a boundary vertex lies about a third
of an edge inside the square. A vertex that no pixel depends on (possible with
triangles smaller than a pixel) falls back to bilinear interpolation of the
image at its uv position; so does a vertex whose plane fit would be unstable
(too few pixels, or all on one side). ``to_vertices(to_image(f))`` therefore
recovers a smooth ``f`` approximately, not exactly: the error is of the order
of the second derivatives of ``f`` times the squared edge length (plus, with
``inverse="adjoint"``, the gradient times the centroid offset: for
``sin(3u) cos(2v)`` on a 41 x 41 grid at 224 x 224, about 0.03 with
``"adjoint"`` against 0.0015 with ``"local-linear"``). Every row of the inverse
operator sums to 1, so a constant image maps to that constant at every vertex;
with ``"local-linear"`` some weights are negative (extrapolation towards the
boundary), with ``"adjoint"`` none are.
"""

from __future__ import annotations

from numbers import Integral

import numpy as np
import scipy.sparse as sp
from scipy.spatial import cKDTree

__all__ = ["Rasterizer", "bilinear_operator", "pixel_centres"]

METHODS = ("barycentric", "paper-average")
INVERSES = ("local-linear", "adjoint")

_INSIDE_TOL = -1e-12  # barycentric coordinates at least this are "inside"
_CANDIDATES_PER_CHUNK = 1 << 21  # (triangle, pixel) pairs tested at once while locating triangles
_NEAREST_CANDIDATES = 16  # triangles (nearest centroids) tried for a pixel centre outside every triangle
_SUBJECTS_PER_CHUNK = 8  # images per sparse product in to_image / to_vertices (small: cheap transposes)
_MAX_GAIN = 4.0  # a plane fit whose weights have sum |w| above this falls back to bilinear sampling


def _image_shape(size) -> tuple[int, int]:
    if isinstance(size, Integral) and not isinstance(size, bool):
        shape = (int(size), int(size))
    else:
        try:
            shape = tuple(int(s) for s in size)
            ok = len(shape) == 2 and all(isinstance(s, Integral) and not isinstance(s, bool) for s in size)
        except TypeError:
            ok = False
        if not ok:
            raise ValueError(f"size must be an int or a (H, W) pair of ints, got {size!r}")
    if min(shape) < 1:
        raise ValueError(f"image size must be positive, got {shape}")
    return shape


def pixel_centres(shape: tuple[int, int]) -> np.ndarray:
    """uv coordinates of the pixel centres of an ``(H, W)`` image, in the rasteriser's order.

    Parameters
    ----------
    shape : tuple of int
        ``(H, W)``.

    Returns
    -------
    ndarray, shape (H * W, 2)
        Row ``r * W + c`` is ``((c + 0.5) / W, (r + 0.5) / H)``.
    """
    height, width = shape
    u = (np.arange(width) + 0.5) / width
    v = (np.arange(height) + 0.5) / height
    return np.column_stack([np.tile(u, height), np.repeat(v, width)])


def bilinear_operator(points: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
    """Sparse bilinear interpolation of an ``(H, W)`` image at uv points, clamped at the borders.

    The image is taken to hold its values at the pixel centres (see the module
    docstring); a point between the outermost pixel centres and the square's
    side takes the border value (constant extrapolation).

    Parameters
    ----------
    points : ndarray, shape (p, 2)
        uv positions.
    shape : tuple of int
        ``(H, W)``.

    Returns
    -------
    scipy.sparse.csr_matrix, shape (p, H * W)
        ``B @ image.ravel()`` is the interpolated value at each point; every row sums to 1.
    """
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    height, width = shape
    # Continuous pixel coordinates: pixel centre c sits at x = c.
    x = np.clip(points[:, 0] * width - 0.5, 0.0, width - 1.0)
    y = np.clip(points[:, 1] * height - 0.5, 0.0, height - 1.0)
    x0 = np.minimum(np.floor(x).astype(np.int64), width - 1)
    y0 = np.minimum(np.floor(y).astype(np.int64), height - 1)
    x1 = np.minimum(x0 + 1, width - 1)
    y1 = np.minimum(y0 + 1, height - 1)
    fx, fy = x - x0, y - y0
    cols = np.stack([y0 * width + x0, y0 * width + x1, y1 * width + x0, y1 * width + x1], axis=1)
    weights = np.stack([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy], axis=1)
    rows = np.repeat(np.arange(len(points)), 4)
    matrix = sp.coo_matrix((weights.ravel(), (rows, cols.ravel())), shape=(len(points), height * width)).tocsr()
    matrix.sum_duplicates()
    matrix.sort_indices()
    return matrix


def _barycentric(points: np.ndarray, corners: np.ndarray) -> np.ndarray:
    """Barycentric coordinates ``(p, 3)`` of ``points`` (p, 2) in triangles ``corners`` (p, 3, 2)."""
    a = corners[:, 0]
    e1 = corners[:, 1] - a
    e2 = corners[:, 2] - a
    d = points - a
    det = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        l1 = (d[:, 0] * e2[:, 1] - d[:, 1] * e2[:, 0]) / det
        l2 = (e1[:, 0] * d[:, 1] - e1[:, 1] * d[:, 0]) / det
    return np.column_stack([1.0 - l1 - l2, l1, l2])


def _closest_on_triangles(points: np.ndarray, corners: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Clamped barycentric coordinates of the closest point of each triangle, and the squared distance.

    ``points`` (p, 2), ``corners`` (p, 3, 2). Inside a triangle the coordinates are the ordinary ones
    (distance 0); outside, the closest point lies on one of the three edges.
    """
    lam = _barycentric(points, corners)
    inside = np.isfinite(lam).all(axis=1) & (lam >= 0).all(axis=1)
    best_lam = np.where(inside[:, None], np.nan_to_num(lam), 0.0)
    best_d2 = np.where(inside, 0.0, np.inf)
    for k in range(3):  # the three edges (k, k+1); a loop over edges, not triangles
        i, j = k, (k + 1) % 3
        p0, edge = corners[:, i], corners[:, j] - corners[:, i]
        length2 = np.einsum("ij,ij->i", edge, edge)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.einsum("ij,ij->i", points - p0, edge) / length2
        t = np.clip(np.nan_to_num(t), 0.0, 1.0)
        gap = points - (p0 + t[:, None] * edge)
        d2 = np.einsum("ij,ij->i", gap, gap)
        better = d2 < best_d2
        candidate = np.zeros_like(best_lam)
        candidate[:, i] = 1.0 - t
        candidate[:, j] = t
        best_lam = np.where(better[:, None], candidate, best_lam)
        best_d2 = np.where(better, d2, best_d2)
    return best_lam, best_d2


class Rasterizer:
    """Sparse maps between vertex-wise values on a unit-square-parameterised mesh and ``H x W`` images.

    Parameters
    ----------
    uv : array_like, shape (n, 2)
        Vertex positions in the unit square ``[0, 1]^2``.
    faces : array_like of int, shape (m, 3)
        Triangles (vertex indices). Expected: a triangulated disk covering the
        square with its boundary on the square's sides and no flipped
        triangles. Pixel centres outside every triangle (gaps) still get a
        value, from the nearest triangle (clamped barycentric coordinates of
        the closest point), searched among the 16 triangles with the nearest
        centroids. Vertices outside the unit square are allowed but only the
        parts of triangles over the square are sampled.
    size : int or tuple of int
        Image size: ``S`` for ``S x S`` or ``(H, W)``.
    method : {"barycentric", "paper-average"}, optional
        How a pixel is computed from the vertices (see the module docstring).
    inverse : {"local-linear", "adjoint"}, optional
        How :meth:`to_vertices` weights the pixels that depend on a vertex:
        the normalised adjoint of the rasterisation (``"adjoint"``) or the same
        weights corrected to reproduce linear functions (``"local-linear"``,
        the default).

    Attributes
    ----------
    operator : scipy.sparse.csr_matrix, shape (H * W, n)
        ``P``: ``image.ravel() = P @ values``. Every row sums to 1 and has non-negative entries.
    inverse_operator : scipy.sparse.csr_matrix, shape (n, H * W)
        ``A``: ``values = A @ image.ravel()`` (see :meth:`to_vertices`). Every row sums to 1.
    shape : tuple of int
        ``(H, W)``.
    n_vertices : int
        ``n``.
    method, inverse : str
        The options used.
    pixel_triangle : ndarray of int64, shape (H * W,)
        For every pixel (C order), the triangle whose barycentric interpolation
        gives its value: the first (lowest-index) triangle containing its
        centre, or for a centre outside every triangle the nearest one (among
        the 16 nearest centroids). With
        ``method="paper-average"`` it is the same triangle, even for the pixels
        whose value is an average of vertices.
    pixel_barycentric : ndarray of float64, shape (H * W, 3)
        The barycentric coordinates of each pixel centre in ``pixel_triangle``
        (clamped to the triangle, non-negative, summing to 1).
    pixel_outside : ndarray of bool, shape (H * W,)
        Pixels whose centre lies in no triangle (nearest-triangle fallback).
    vertex_fallback : ndarray of bool, shape (n,)
        Vertices that :meth:`to_vertices` samples bilinearly: no pixel depends
        on them or, with ``inverse="local-linear"``, the pixels that do are too
        few or too one-sided for a stable plane fit (sum of absolute weights
        above 4). Common where triangles are about a pixel in size or smaller.

    Notes
    -----
    Building is vectorised: the pixel centres within each triangle's bounding
    box are enumerated with numpy (``np.repeat``/``cumsum``), in chunks of
    about two million (triangle, pixel) pairs. Both directions are applied as
    sparse products over chunks of 8 images (``P @ X`` with ``X`` of shape
    ``(n, 8)``, contiguous), in float32 for float32 input.

    Examples
    --------
    >>> raster = Rasterizer(uv, faces, 224)            # doctest: +SKIP
    >>> images = raster.to_image(thickness)            # (subjects, n) -> (subjects, 224, 224)
    >>> back = raster.to_vertices(occlusion_maps)      # (k, 224, 224) -> (k, n)
    """

    def __init__(self, uv, faces, size, *, method: str = "barycentric", inverse: str = "local-linear"):
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        if inverse not in INVERSES:
            raise ValueError(f"inverse must be one of {INVERSES}, got {inverse!r}")
        uv = np.asarray(uv)
        if uv.ndim != 2 or uv.shape[1] != 2:
            raise ValueError(f"uv must have shape (n, 2) (one (u, v) position per vertex), got {uv.shape}")
        if not np.issubdtype(uv.dtype, np.number) or np.iscomplexobj(uv):
            raise ValueError(f"uv must be real numbers, got dtype {uv.dtype}")
        uv = uv.astype(np.float64)
        if len(uv) < 3:
            raise ValueError(f"uv must hold at least 3 vertices, got {len(uv)}")
        if not np.isfinite(uv).all():
            raise ValueError(f"uv has {int((~np.isfinite(uv)).any(axis=1).sum())} vertices with NaN or infinite "
                             "coordinates")
        faces = np.asarray(faces)
        if faces.ndim != 2 or faces.shape[1] != 3 or not np.issubdtype(faces.dtype, np.integer):
            raise ValueError(f"faces must be an (m, 3) integer array, got shape {faces.shape} and dtype {faces.dtype}")
        if len(faces) == 0:
            raise ValueError("faces is empty")
        if faces.min() < 0 or faces.max() >= len(uv):
            raise ValueError(f"faces index vertices outside 0..{len(uv) - 1} (uv has {len(uv)} rows)")
        self.shape = _image_shape(size)
        self.n_vertices = len(uv)
        self.method = method
        self.inverse = inverse
        self._uv = uv
        self._faces = faces.astype(np.int64)

        self.pixel_triangle, self.pixel_barycentric, self.pixel_outside = self._locate()
        self.operator = self._forward()
        self.inverse_operator, self.vertex_fallback = self._backward()
        self._float32: dict[str, sp.csr_matrix] = {}

    # ------------------------------------------------------------------ building
    def _locate(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Triangle and barycentric coordinates of every pixel centre."""
        height, width = self.shape
        uv, faces = self._uv, self._faces
        corners = uv[faces]  # (m, 3, 2)
        n_pixels = height * width
        pixel_triangle = np.full(n_pixels, -1, dtype=np.int64)
        pixel_lam = np.zeros((n_pixels, 3))

        # Pixel-centre index ranges of each triangle's bounding box: centre c is at (c + 0.5) / W.
        lo, hi = corners.min(axis=1), corners.max(axis=1)
        c_lo = np.clip(np.ceil(lo[:, 0] * width - 0.5 - 1e-9), 0, width).astype(np.int64)
        c_hi = np.clip(np.floor(hi[:, 0] * width - 0.5 + 1e-9), -1, width - 1).astype(np.int64)
        r_lo = np.clip(np.ceil(lo[:, 1] * height - 0.5 - 1e-9), 0, height).astype(np.int64)
        r_hi = np.clip(np.floor(hi[:, 1] * height - 0.5 + 1e-9), -1, height - 1).astype(np.int64)
        n_cols = np.maximum(c_hi - c_lo + 1, 0)
        n_rows = np.maximum(r_hi - r_lo + 1, 0)
        counts = n_cols * n_rows
        # Degenerate (zero-area) triangles cover no pixel centre; leave them to the nearest-triangle fallback.
        e1, e2 = corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]
        counts[e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0] == 0] = 0

        # Chunks of whole triangles with about _CANDIDATES_PER_CHUNK (triangle, pixel) pairs each.
        ends = np.cumsum(counts)
        cuts = np.searchsorted(ends, np.arange(_CANDIDATES_PER_CHUNK, ends[-1], _CANDIDATES_PER_CHUNK), side="right")
        bounds = np.unique(np.concatenate([[0], cuts, [len(faces)]]))
        for start, stop in zip(bounds[:-1], bounds[1:]):  # a loop over chunks of triangles
            count = counts[start:stop]
            total = int(count.sum())
            if total == 0:
                continue
            tri = np.repeat(np.arange(start, stop), count)
            first = np.cumsum(count) - count  # where each triangle's pairs begin
            local = np.arange(total) - np.repeat(first, count)
            cols_per_row = n_cols[tri]
            rows = r_lo[tri] + local // cols_per_row
            cols = c_lo[tri] + local % cols_per_row
            centres = np.column_stack([(cols + 0.5) / width, (rows + 0.5) / height])
            lam = _barycentric(centres, corners[tri])
            keep = (lam >= _INSIDE_TOL).all(axis=1)
            pixel = (rows * width + cols)[keep]
            tri, lam = tri[keep], lam[keep]
            # First (lowest-index) triangle per pixel: pairs are in triangle order and np.unique
            # returns first occurrences; earlier chunks hold lower triangle indices.
            pixel, index = np.unique(pixel, return_index=True)
            fresh = pixel_triangle[pixel] < 0
            pixel, index = pixel[fresh], index[fresh]
            pixel_triangle[pixel] = tri[index]
            pixel_lam[pixel] = lam[index]

        outside = pixel_triangle < 0
        if outside.any():
            centres = pixel_centres(self.shape)[outside]
            centroids = corners.mean(axis=1)
            k = min(_NEAREST_CANDIDATES, len(faces))
            _, candidates = cKDTree(centroids).query(centres, k=k)
            candidates = np.asarray(candidates).reshape(len(centres), k)
            lam, d2 = _closest_on_triangles(np.repeat(centres, k, axis=0), corners[candidates.ravel()])
            best = np.argmin(d2.reshape(-1, k), axis=1)  # first of equally near candidates
            pick = np.arange(len(centres)) * k + best
            pixel_triangle[outside] = candidates.ravel()[pick]
            pixel_lam[outside] = lam[pick]
        # Tiny negative coordinates (within the tolerance) are clamped so that weights are non-negative.
        pixel_lam = np.clip(pixel_lam, 0.0, None)
        pixel_lam /= pixel_lam.sum(axis=1, keepdims=True)
        return pixel_triangle, pixel_lam, outside

    def _forward(self) -> sp.csr_matrix:
        height, width = self.shape
        n_pixels, n = height * width, self.n_vertices
        rows = np.repeat(np.arange(n_pixels), 3)
        cols = self._faces[self.pixel_triangle].ravel()
        weights = self.pixel_barycentric.ravel()
        if self.method == "paper-average":
            pixel = self.vertex_pixels()
            per_pixel = np.bincount(pixel, minlength=n_pixels)
            averaged = per_pixel[rows] > 0
            rows = np.concatenate([rows[~averaged], pixel])
            cols = np.concatenate([cols[~averaged], np.arange(n)])
            weights = np.concatenate([weights[~averaged], 1.0 / per_pixel[pixel]])
        matrix = sp.coo_matrix((weights, (rows, cols)), shape=(n_pixels, n)).tocsr()
        matrix.sum_duplicates()
        matrix.eliminate_zeros()
        matrix.sort_indices()
        return matrix

    def _backward(self) -> tuple[sp.csr_matrix, np.ndarray]:
        adjoint = self.operator.T.tocsr()  # (n, H*W): the pixels each vertex contributes to
        weight = np.asarray(adjoint.sum(axis=1)).ravel()
        fallback = weight <= 0
        if self.inverse == "local-linear":
            # w'_ij = w_ij (1 + a_i . (d_ij - m_i)), with d_ij = p_j - x_i the pixel centre relative to the
            # vertex, m_i = sum_j w_ij d_ij and a_i = -Cov_i^-1 m_i, so that sum_j w'_ij = 1 and
            # sum_j w'_ij d_ij = 0: a weighted least-squares plane fit evaluated at the vertex.
            norm = adjoint.multiply(1.0 / np.where(fallback, 1.0, weight)[:, None]).tocoo()
            row, col, w = norm.row, norm.col, norm.data
            d = pixel_centres(self.shape)[col] - self._uv[row]
            n = self.n_vertices
            mx = np.bincount(row, w * d[:, 0], minlength=n)
            my = np.bincount(row, w * d[:, 1], minlength=n)
            cxx = np.bincount(row, w * d[:, 0] ** 2, minlength=n) - mx**2
            cxy = np.bincount(row, w * d[:, 0] * d[:, 1], minlength=n) - mx * my
            cyy = np.bincount(row, w * d[:, 1] ** 2, minlength=n) - my**2
            det = cxx * cyy - cxy * cxy
            # A plane fit needs pixels spread in two directions; fewer (a vertex touching one or two
            # pixel centres, or a line of them) falls back to bilinear sampling.
            pixel_area = 1.0 / (self.shape[0] * self.shape[1])
            fallback |= ~(det > 1e-3 * pixel_area**2)
            with np.errstate(divide="ignore", invalid="ignore"):
                ax = np.where(fallback, 0.0, -(cyy * mx - cxy * my) / det)
                ay = np.where(fallback, 0.0, -(cxx * my - cxy * mx) / det)
            factor = 1.0 + ax[row] * (d[:, 0] - mx[row]) + ay[row] * (d[:, 1] - my[row])
            main = sp.coo_matrix((w * factor, (row, col)), shape=adjoint.shape).tocsr()
            # Extrapolating a plane from pixels bunched on one side amplifies noise; cap that gain.
            fallback |= np.asarray(abs(main).sum(axis=1)).ravel() > _MAX_GAIN
        else:
            with np.errstate(divide="ignore"):
                main = adjoint.multiply(1.0 / np.where(fallback, 1.0, weight)[:, None]).tocsr()
        keep = sp.diags((~fallback).astype(np.float64))
        sample = sp.diags(fallback.astype(np.float64)) @ bilinear_operator(self._uv, self.shape)
        matrix = (keep @ main + sample).tocsr()
        matrix.sum_duplicates()
        # Rows sum to 1 up to rounding; make it exact to rounding so that constants map to constants.
        matrix = sp.diags(1.0 / np.asarray(matrix.sum(axis=1)).ravel()) @ matrix
        matrix = matrix.tocsr()
        matrix.eliminate_zeros()
        matrix.sort_indices()
        return matrix, fallback

    # ------------------------------------------------------------------ helpers
    def vertex_pixels(self) -> np.ndarray:
        """Index (C order) of the pixel that contains each vertex, shape (n,).

        Vertex ``(u, v)`` is in pixel ``(min(floor(v H), H - 1), min(floor(u W), W - 1))``
        (clipped to the image), so a vertex on the sides ``u = 1`` or ``v = 1`` belongs to the last column or row.
        """
        height, width = self.shape
        cols = np.clip(np.floor(self._uv[:, 0] * width), 0, width - 1).astype(np.int64)
        rows = np.clip(np.floor(self._uv[:, 1] * height), 0, height - 1).astype(np.int64)
        return rows * width + cols

    def _matrix(self, which: str, dtype) -> sp.csr_matrix:
        matrix = self.operator if which == "forward" else self.inverse_operator
        if dtype == np.float64:
            return matrix
        if which not in self._float32:
            self._float32[which] = matrix.astype(np.float32)
        return self._float32[which]

    @staticmethod
    def _apply(matrix: sp.csr_matrix, data: np.ndarray) -> np.ndarray:
        """``(matrix @ data.T).T`` for data (k, columns), in chunks of images (cache-sized products)."""
        if len(data) == 1:
            return (matrix @ data[0])[None]
        out = np.empty((len(data), matrix.shape[0]), dtype=data.dtype)
        for start in range(0, len(data), _SUBJECTS_PER_CHUNK):  # a loop over chunks of images
            block = np.ascontiguousarray(data[start:start + _SUBJECTS_PER_CHUNK].T)
            out[start:start + _SUBJECTS_PER_CHUNK] = (matrix @ block).T
        return out

    @staticmethod
    def _as_float(data: np.ndarray) -> np.ndarray:
        if not (np.issubdtype(data.dtype, np.number) or data.dtype == bool) or np.iscomplexobj(data):
            raise ValueError(f"expected real numbers, got dtype {data.dtype}")
        return data if data.dtype in (np.float32, np.float64) else data.astype(np.float64)

    # ------------------------------------------------------------------ public
    def to_image(self, values) -> np.ndarray:
        """Rasterise vertex-wise values.

        Parameters
        ----------
        values : array_like, shape (n,) or (k, n)
            One map, or a batch of ``k`` maps (e.g. subjects). NaN is not
            allowed: fill the medial wall first. float32 input stays float32;
            other input is computed in float64.

        Returns
        -------
        ndarray, shape (H, W) or (k, H, W)
            Pixel ``(r, c)`` at uv ``((c + 0.5) / W, (r + 0.5) / H)``.

        Raises
        ------
        ValueError
            On a wrong shape or NaN / infinite values (the message counts the vertices).
        """
        values = self._as_float(np.asarray(values))
        n = self.n_vertices
        if values.ndim not in (1, 2) or values.shape[-1] != n:
            raise ValueError(f"values must have shape ({n},) or (k, {n}) for a mesh of {n} vertices, "
                             f"got {values.shape}")
        batch = values.reshape(-1, n)
        bad = ~np.isfinite(batch)
        if bad.any():
            n_nan = int(np.isnan(batch).any(axis=0).sum())
            n_inf = int(np.isinf(batch).any(axis=0).sum())
            kinds = " and ".join(f"{count} of {n} vertices are {word}" for count, word in
                                 ((n_nan, "NaN"), (n_inf, "infinite")) if count)
            raise ValueError(f"{kinds} (in {int(bad.any(axis=1).sum())} of {len(batch)} maps); fill them "
                             "(e.g. the medial wall) before rasterising")
        images = self._apply(self._matrix("forward", batch.dtype), batch)
        return images.reshape(values.shape[:-1] + self.shape)

    def to_vertices(self, images) -> np.ndarray:
        """Map images back to vertices (``A @ image.ravel()``, see the module docstring).

        Each vertex takes the average of the pixels whose value depends on it,
        weighted by its barycentric weights in them (corrected to reproduce
        linear functions with ``inverse="local-linear"``); vertices that no
        pixel depends on take the bilinear interpolation of the image at their
        uv position. A constant image gives that constant at every vertex;
        ``to_vertices(to_image(f))`` recovers a smooth ``f`` approximately, not exactly.

        Parameters
        ----------
        images : array_like, shape (H, W) or (k, H, W)

        Returns
        -------
        ndarray, shape (n,) or (k, n)
            float32 for float32 input, float64 otherwise.

        Raises
        ------
        ValueError
            On a wrong shape or NaN / infinite pixels.
        """
        images = self._as_float(np.asarray(images))
        if images.ndim not in (2, 3) or images.shape[-2:] != self.shape:
            raise ValueError(f"images must have shape {self.shape} or (k, {self.shape[0]}, {self.shape[1]}) "
                             f"for this rasteriser, got {images.shape}")
        batch = images.reshape(-1, self.shape[0] * self.shape[1])
        bad = ~np.isfinite(batch)
        if bad.any():
            raise ValueError(f"{int(bad.sum())} pixels are NaN or infinite (in {int(bad.any(axis=1).sum())} of "
                             f"{len(batch)} images)")
        values = self._apply(self._matrix("backward", batch.dtype), batch)
        return values.reshape(images.shape[:-2] + (self.n_vertices,))

    def __repr__(self) -> str:
        return (f"Rasterizer(n_vertices={self.n_vertices}, shape={self.shape}, method={self.method!r}, "
                f"inverse={self.inverse!r}, outside_pixels={int(self.pixel_outside.sum())})")
