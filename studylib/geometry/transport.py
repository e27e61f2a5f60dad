"""Area-preserving map of the unit square by semi-discrete optimal transport (the "Brenier" step).

A conformal map of a cortical disk onto the unit square preserves angles but distorts areas strongly.
Following Zhao et al. (2013, "Area-preservation mapping using optimal mass transport", IEEE TVCG
19(12)), the area distortion is removed by the optimal transport between the uniform measure on the
square and point masses at the (conformal) vertex positions ``p_i`` with masses ``ν_i`` (each vertex's
share of the 3D surface area). The Brenier potential is piecewise linear; its gradient sends the power
cell

    C_i(w) = {x in [0, 1]^2 : |x - p_i|^2 - w_i <= |x - p_j|^2 - w_j for all j}

to ``p_i``, and the weights ``w`` are chosen so that ``area(C_i(w)) = ν_i`` for every vertex. Each vertex
is then moved to the centroid of its cell, which gives an (approximately) area-preserving layout.

Power diagram. The cells clipped to the square come from one unclipped power diagram: every point near a
side is reflected across that side with the same weight. The power bisector between a point and its
mirror copy is the side itself, and inside the square a point always beats its own mirror copies, so the
original points' cells are exactly the clipped cells. Only the points whose cells meet a side need a mirror copy
across it, and they are known before the diagram: along a side, the power distance of point ``i`` is
``t^2 - 2 t a_i + (a_i^2 + d_i^2 - w_i)`` (``t`` the position along the side, ``a_i`` and ``d_i`` the point's
position along it and distance from it), so the points whose cells meet the side are those whose lines
``-2 a_i t + (a_i^2 + d_i^2 - w_i)`` form the lower envelope over ``0 <= t <= 1``: the vertices of a 2D lower convex
hull (:func:`_side_winners`, four small hulls, ~5 % of a diagram's time). A cell that still pokes out of the square (a
needed mirror copy was left out, as can happen where three cells meet on a side, or with a ``margin`` chosen by the
caller) is detected, its point and neighbours are mirrored too, and the computation repeated. (Mirroring instead
the points near a side and those whose cells touched it in the last Newton step, grown by one ring, had to repeat 5
of 12 diagrams at fs_LR 32k and 7 of 15 at 118,530 points, about a third of the transport's time; the envelope
repeated none.) The
regular (weighted Delaunay) triangulation is the lower convex hull of the lifted points
``(x, y, |x|^2 - w)`` (Qhull through :class:`scipy.spatial.ConvexHull`); its triangles' power centres
are the cell vertices. Areas, centroids and the Hessian ``∂ area_i / ∂ w_j = -|e*_ij| / (2 |p_i - p_j|)``
(``e*_ij`` the dual edge; the diagonal makes rows sum to zero) are accumulated from (triangles x 3) arrays, one
column per edge or corner, with no loop over vertices or corners. (Looping over the three corners with masked copies,
and re-ordering clockwise triangles, left about 0.33 s of a diagram's 0.92 s outside Qhull at 118,530 points; now
about 0.21 s of 0.80 s.)

Backends. ``power_cells(..., backend="geogram")`` computes the same cells with geogram instead
(:func:`_geogram_cells`): not bit-reproducible between runs, and it needs a workaround for a crash on degenerate
input; Qhull stays the default. Measured side by side (2-core machine), one diagram at the transport's solution:
0.15 s (Qhull) and 0.15 s (geogram) at fs_LR 32k (29,688 points), 0.79 s and 0.68 s at 118,530 points; the two agree
to roundoff (areas within 3e-10 of the smallest cell, Hessians within 1e-11).

Solver. ``G(w) = areas`` is solved for ``G(w) = ν`` with the damped Newton method of Kitagawa, Mérigot
and Thibert (2019, "Convergence of a Newton algorithm for semi-discrete optimal transport", JEMS 21(9)):
the step ``H dw = ν - G(w)`` (``H`` singular with the constants in its kernel; one weight is pinned) is
shortened until no cell is smaller than ``ε0`` (half of the smallest initial cell or target, whichever is smaller)
and the residual ``|G - ν|`` decreases by the factor ``1 - τ/2`` (the first trial step is twice the last accepted one,
at most 1; a rejected one is halved, or cut further when the cells' areas, taken as linear in the step, say it must
be: :func:`_next_trial`). Convergence is global and, near the solution, quadratic. (A stricter floor used here
before, half of each cell's own target or current area, rejected more trial steps: 19 diagrams against 17 at
118,530 points.)

Final layout. Boundary vertices (whose cells line the sides) are snapped onto the side given by the
corners that surround them in loop order, keeping their order along the side; triangles that come out
flipped (the centroid map is not guaranteed to be a homeomorphism) are repaired by a few rounds of local
Laplacian smoothing of the interior vertices involved.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
from scipy.spatial import ConvexHull, QhullError

from .mesh import signed_areas
from .sparse import Cholesky, edge_graph, mesh_graph

__all__ = [
    "AreaPreservingMap",
    "PowerCells",
    "TransportResult",
    "area_preserving_map",
    "power_cells",
    "solve_transport",
]

# A cell vertex counts as inside the square when it is at most this far outside (roundoff of a vertex
# that lies exactly on a side, where a point meets its mirror copies).
_OUTSIDE_TOLERANCE = 1e-9
# The side each mirror copy is reflected across: (coordinate, value).
_SIDES = ((0, 0.0), (0, 1.0), (1, 0.0), (1, 1.0))
# Below this relative area error a rejected Newton step means roundoff, not a bad step: stop there.
_ROUNDOFF = 1e-11
#: The power-diagram backends of :func:`power_cells`.
POWER_DIAGRAMS = ("qhull", "geogram")
# geogram's domain: the unit square as two triangles, and its "no neighbour" index (an edge on the domain's boundary)
_SQUARE = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
_SQUARE_TRIANGLES = np.array([[0, 1, 2], [0, 2, 3]], dtype=np.uint32)
_NO_INDEX = 2**32 - 1
# geogram's weights are shifted by this many times (1 / n) times a fixed pattern in [0, 1) (see _geogram_cells)
_GEOGRAM_JITTER = 1e-9


class PowerCells(NamedTuple):
    """Power cells of weighted points clipped to the unit square (the result of :func:`power_cells`).

    Attributes
    ----------
    areas : ndarray, shape (n,)
        Cell areas; they sum to 1. Zero for an empty (hidden) cell.
    centroids : ndarray, shape (n, 2)
        Cell centroids; an empty cell's centroid is its point.
    hessian : scipy.sparse.csr_matrix, shape (n, n)
        ``∂ areas_i / ∂ weights_j``: symmetric, non-positive off the diagonal, rows summing to zero
        (``None`` when not requested).
    empty : ndarray of bool, shape (n,)
        Points whose cell is empty (hidden in the regular triangulation).
    margin : float
        Distance from a side within which points were mirrored across it: 0 when the mirror copies were those of
        :func:`_side_winners` alone, 1 when every point was mirrored.
    attempts : int
        Diagrams computed (1 unless a cell left the square and more points had to be mirrored, or a geogram diagram
        failed its check).
    """

    areas: np.ndarray
    centroids: np.ndarray
    hessian: sp.csr_matrix | None
    empty: np.ndarray
    margin: float
    attempts: int = 1


@dataclass(frozen=True)
class TransportResult:
    """Result of :func:`solve_transport`.

    Attributes
    ----------
    weights : ndarray, shape (n,)
        Power weights whose cells have the target areas (defined up to a constant).
    areas, centroids : ndarray
        Cell areas ``(n,)`` and centroids ``(n, 2)`` at ``weights``.
    residuals : list of float
        ``max |areas - target| / target`` at the start and after each Newton iteration.
    iterations : int
        Newton iterations taken.
    converged : bool
        Whether the residual fell below the tolerance.
    step_sizes : list of float
        The damping factor τ accepted at each iteration (1 is a full Newton step).
    min_area_ratios : list of float
        ``min(areas / target)`` at the start and after each iteration (positive: no cell vanished).
    power_seconds, solve_seconds : float
        Time spent computing power diagrams (all trial steps included) and solving the Newton systems.
    evaluations : int
        Power diagrams computed (trial steps included).
    """

    weights: np.ndarray
    areas: np.ndarray
    centroids: np.ndarray
    residuals: list[float]
    iterations: int
    converged: bool
    step_sizes: list[float] = field(default_factory=list)
    min_area_ratios: list[float] = field(default_factory=list)
    power_seconds: float = 0.0
    solve_seconds: float = 0.0
    evaluations: int = 0


@dataclass(frozen=True)
class AreaPreservingMap:
    """Result of :func:`area_preserving_map`.

    Attributes
    ----------
    uv : ndarray, shape (n, 2)
        Area-preserving vertex positions in the unit square (corners on the corners, boundary on the sides).
    flipped_before_repair : int
        Triangles with non-positive signed area (relative to the input's orientation) after moving the
        vertices to their cell centroids and snapping the boundary.
    flipped : int
        Flipped triangles left after the repair (0 on success).
    residuals : list of float
        Max relative cell-area error at the start and after each Newton iteration.
    seconds : float
        Wall time of the whole map.
    areas : ndarray, shape (n,)
        Power-cell areas at the solution (equal to the normalised targets up to the tolerance).
    weights : ndarray, shape (n,)
        The transport's power weights.
    iterations : int
        Newton iterations.
    converged : bool
        Whether the transport reached its tolerance.
    transport : TransportResult
        The full solver result (timings, step sizes).
    """

    uv: np.ndarray
    flipped_before_repair: int
    flipped: int
    residuals: list[float]
    seconds: float
    areas: np.ndarray = field(repr=False, default=None)
    weights: np.ndarray = field(repr=False, default=None)
    iterations: int = 0
    converged: bool = False
    transport: TransportResult | None = field(repr=False, default=None)


# --------------------------------------------------------------------------------------------------
# power diagram


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]


def _check_points(points: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    points = np.asarray(points, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2 or len(points) == 0:
        raise ValueError(f"points must have shape (n, 2) with n >= 1, got {points.shape}")
    if weights.shape != (len(points),):
        raise ValueError(f"weights must have shape ({len(points)},), got {weights.shape}")
    if not (np.isfinite(points).all() and np.isfinite(weights).all()):
        raise ValueError("points and weights must be finite")
    if not ((points > 0) & (points < 1)).all():
        raise ValueError("points must lie strictly inside the unit square (a point on a side coincides with its "
                         "mirror copy); shrink them slightly towards the centre")
    return points, weights


def power_cells(points: np.ndarray, weights: np.ndarray, *, margin: float | None = None, hessian: bool = True,
                backend: str = "qhull") -> PowerCells:
    """Power diagram of weighted points clipped to the unit square: areas, centroids and Hessian.

    The cell of point ``i`` is ``{x in [0, 1]^2 : |x - p_i|^2 - w_i <= |x - p_j|^2 - w_j for all j}``.

    Parameters
    ----------
    points : ndarray, shape (n, 2)
        Sites, strictly inside the open unit square.
    weights : ndarray, shape (n,)
        Power weights (a larger weight gives a larger cell; adding a constant changes nothing).
    backend : {"qhull", "geogram"}
        ``qhull`` (default): the lifted convex hull with mirror copies below, deterministic and robust.
        ``geogram``: :func:`_geogram_cells`, about as fast, not bit-reproducible (see there); ``margin`` does
        not apply to it.
    margin : float, optional
        Mirror the points closer than this to a side instead of those whose cells meet it (the default,
        :func:`_side_winners`); with 64 points or fewer every point is mirrored. Whatever is mirrored, a cell that
        would leave the square is detected, its point and that point's neighbours are mirrored as well and the
        diagram recomputed, so the result does not depend on this choice (only the time does).
    hessian : bool
        Whether to assemble the sparse Hessian (else ``None``).

    Returns
    -------
    PowerCells
        ``areas`` (n,), ``centroids`` (n, 2), ``hessian`` (n, n) CSR with ``hessian[i, j] =
        ∂ areas_i / ∂ weights_j``, ``empty`` (n,) bool (hidden points, area 0) and the ``margin`` used.

    Raises
    ------
    ValueError
        For points outside the open square or non-finite input.
    RuntimeError
        If the diagram is inconsistent even with every point mirrored (numerical breakdown).
    """
    points, weights = _check_points(points, weights)
    if backend == "geogram":
        for attempt in (1, 2):
            cells = _geogram_cells(points, weights, hessian)
            if cells is not None:
                return cells._replace(attempts=attempt)
        warnings.warn(f"geogram returned a power diagram of {len(points)} points whose cells do not tile the square, "
                      "twice; this diagram is computed by Qhull", RuntimeWarning, stacklevel=2)
        # with geogram's weight shift: the Newton iterations before and after this one solve one problem
        cells = power_cells(points, weights + _geogram_jitter(len(points)), margin=margin, hessian=hessian)
        return cells._replace(attempts=cells.attempts + 2)
    if backend != "qhull":
        raise ValueError(f"backend must be one of {POWER_DIAGRAMS}, got {backend!r}")
    n = len(points)
    margin = 1.0 if n <= 64 else margin
    if margin is None:
        mirrored = _side_winners(points, weights)
        margin = 0.0
    else:
        margin = float(margin)
        # distance of each point to the four sides, in the order of _SIDES
        distance = np.stack([points[:, 0], 1.0 - points[:, 0], points[:, 1], 1.0 - points[:, 1]], axis=1)
        mirrored = distance < margin
    for attempt in range(1, 4):
        cells, leaving = _power_cells_once(points, weights, mirrored, hessian)
        if cells is not None:
            return cells._replace(margin=margin, attempts=attempt)
        if leaving is None or not (leaving & ~mirrored).any():  # unbounded, or nothing new to mirror
            break
        mirrored |= leaving
    # Rare: cells kept leaving. Mirror everything (always correct).
    cells, _ = _power_cells_once(points, weights, np.ones((n, 4), dtype=bool), hessian)
    if cells is None:
        raise RuntimeError("power diagram with every point mirrored still has cells leaving the square "
                           "(numerical breakdown: coincident points or extreme weights?)")
    return cells._replace(margin=1.0, attempts=attempt + 1)


def _side_winners(points: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(n, 4) bool: the points whose power cells (unclipped) meet each side of the unit square, in ``_SIDES`` order.

    At position ``t`` along a side, point ``i`` (``a_i`` along the side, ``d_i`` from it) has power distance
    ``t^2 + (-2 a_i t + a_i^2 + d_i^2 - w_i)``: its cell meets the side where its line is lowest. The lines lowest
    somewhere on ``0 <= t <= 1`` are the corners of the lower convex hull of the points ``(-2 a_i, a_i^2 + d_i^2 -
    w_i)`` between the lowest lines at ``t = 0`` and ``t = 1``. A side whose hull Qhull cannot build (degenerate
    input) gets every point.
    """
    n = len(points)
    winners = np.zeros((n, 4), dtype=bool)
    centred = weights - np.median(weights)  # a common shift changes nothing; keep the numbers small
    for s, (axis, value) in enumerate(_SIDES):
        along = points[:, 1 - axis]
        depth = points[:, axis] - value
        slope = -2.0 * along
        offset = along**2 + depth**2 - centred
        try:
            hull = ConvexHull(np.column_stack([slope, offset]))
        except QhullError:
            winners[:, s] = True
            continue
        lower = hull.equations[:, 1] < 0
        # a lower edge with outward normal (n_a, n_b) joins the two lines that are lowest together at t = n_a / n_b
        meet = hull.equations[lower, 0] / hull.equations[lower, 1]
        winners[hull.simplices[lower][(meet >= 0) & (meet <= 1)].ravel(), s] = True
        winners[[np.argmin(offset), np.argmin(slope + offset)], s] = True
    return winners


def _grow(chosen: np.ndarray, adjacency: sp.csr_matrix) -> np.ndarray:
    """Boolean (n, k) sets grown by one ring of neighbours."""
    return chosen | ((adjacency @ chosen.astype(np.int32)) > 0)  # int32: a point may have hundreds of neighbours


def _power_cells_once(points: np.ndarray, weights: np.ndarray, mirrored: np.ndarray,
                      with_hessian: bool) -> tuple[PowerCells | None, np.ndarray | None]:
    """One diagram with the mirror copies ``mirrored`` (n, 4); ``(None, leaving)`` when a cell left the square.

    ``leaving`` (n, 4) marks the points whose cells crossed each side, with their neighbours (None when a cell is
    unbounded).
    """
    n = len(points)
    owners = [np.arange(n)]
    copies = [points]
    for s, (axis, value) in enumerate(_SIDES):
        chosen = np.flatnonzero(mirrored[:, s])
        reflected = points[chosen].copy()
        reflected[:, axis] = 2.0 * value - reflected[:, axis]
        owners.append(chosen)
        copies.append(reflected)
    owner = np.concatenate(owners).astype(np.int32)  # Qhull's indices are int32: so are the Hessian's
    position = np.concatenate(copies) - 0.5  # centred: keeps the lifted coordinate small
    weight = weights[owner] - np.median(weights)  # a common shift changes nothing; keep |weight| small
    lifted = np.column_stack([position, np.einsum("ij,ij->i", position, position) - weight])
    hull = ConvexHull(lifted, qhull_options="Qt Q5")  # Q5: outer planes unused; ~20 % faster

    normal_z = hull.equations[:, 2]
    lower = normal_z < 0
    simplices = hull.simplices
    # An original point on the rim of the lifted hull has an unbounded cell.
    rim_points = simplices[~lower].ravel()
    if (rim_points < n).any():
        return None, None
    keep = lower & (simplices < n).any(axis=1)
    tri = simplices[keep]
    equations = hull.equations[keep]

    # corner coordinates (t, 3), and relative to each triangle's first corner
    x, y = position[tri, 0], position[tri, 1]
    dx, dy = x - x[:, :1], y - y[:, :1]
    det = dx[:, 1] * dy[:, 2] - dy[:, 1] * dx[:, 2]  # negative for a clockwise triangle
    w3 = weight[tri]

    # power centre relative to the first corner: 2 d_k . c = |d_k|^2 - (w_k - w_0), k = 1, 2
    square = dx**2 + dy**2
    r1 = 0.5 * (square[:, 1] - (w3[:, 1] - w3[:, 0]))
    r2 = 0.5 * (square[:, 2] - (w3[:, 2] - w3[:, 0]))
    degenerate = np.abs(det) <= 1e-12 * np.sqrt(square[:, 1] * square[:, 2])  # Qhull's triangulation of a merged facet
    with np.errstate(divide="ignore", invalid="ignore"):
        cx = (r1 * dy[:, 2] - r2 * dy[:, 1]) / det
        cy = (dx[:, 1] * r2 - dx[:, 2] * r1) / det
    if degenerate.any():  # use the facet's plane
        from_plane = -equations[degenerate, :2] / (2.0 * equations[degenerate, 2:3])
        cx[degenerate] = from_plane[:, 0] - x[degenerate, 0]
        cy[degenerate] = from_plane[:, 1] - y[degenerate, 0]

    # every cell of an original point must stay inside the square
    absolute = np.column_stack([cx + x[:, 0], cy + y[:, 0]]) + 0.5
    outside = (absolute < -_OUTSIDE_TOLERANCE) | (absolute > 1 + _OUTSIDE_TOLERANCE)  # (t, 2)
    if outside.any():
        leaving = np.zeros((n, 4), dtype=bool)
        crossed = np.stack([outside[:, 0] & (absolute[:, 0] < 0), outside[:, 0] & (absolute[:, 0] > 1),
                            outside[:, 1] & (absolute[:, 1] < 0), outside[:, 1] & (absolute[:, 1] > 1)], axis=1)
        for s in range(4):
            corners = tri[crossed[:, s]].ravel()
            leaving[corners[corners < n], s] = True
        edges = np.concatenate([tri[:, [0, 1]], tri[:, [1, 2]], tri[:, [2, 0]]])
        return None, _grow(leaving, edge_graph(edges[(edges < n).all(axis=1)], n))  # neighbours among the originals

    # Edge k of a triangle joins corners k and k + 1. The dual edge's piece in this triangle runs from the foot q of
    # the power bisector on edge k to the power centre c; corner k's cell gets the triangle (p_k, q, c) and corner
    # k + 1's the triangle (p_k+1, c, q). All (t, 3): one column per edge, or per corner.
    after, before = [1, 2, 0], [2, 0, 1]
    ex, ey = dx[:, after] - dx, dy[:, after] - dy
    length = np.sqrt(ex**2 + ey**2)
    ux, uy = ex / length, ey / length
    cx, cy = cx[:, None] - dx, cy[:, None] - dy  # the power centre relative to each corner
    # signed length of the dual edge's piece from the foot to the centre, positive towards the triangle's inside
    along = (ux * cy - uy * cx) * np.where(det < 0, -1.0, 1.0)[:, None]
    near = (length**2 + w3 - w3[:, after]) / (2.0 * length)  # from corner k to the bisector of edge k
    far = (length - near)[:, before]  # from corner k to the bisector of edge k - 1
    first = 0.5 * near * along  # corner k's piece along edge k
    second = 0.5 * far * along[:, before]  # corner k's piece along edge k - 1
    piece_area = first + second
    # the pieces' moments about their corner; a piece's centroid is (foot + centre) / 3 from the corner
    mx = (piece_area * cx + first * near * ux - second * far * ux[:, before]) / 3.0
    my = (piece_area * cy + first * near * uy - second * far * uy[:, before]) / 3.0
    corner = tri.ravel()
    total = len(owner)  # mirror copies are counted apart, then dropped
    area = np.bincount(corner, weights=piece_area.ravel(), minlength=total)[:n]
    moment = np.column_stack([np.bincount(corner, weights=mx.ravel(), minlength=total)[:n],
                              np.bincount(corner, weights=my.ravel(), minlength=total)[:n]])

    empty = np.ones(n, dtype=bool)
    empty[corner[corner < n]] = False
    centroids = points.copy()
    filled = ~empty & (area > 0)
    centroids[filled] += moment[filled] / area[filled, None]
    area[empty] = 0.0

    matrix = None
    if with_hessian:
        # d area_i / d w_j = -|dual edge| / (2 |p_i - p_j|), summed over the triangles (and mirror copies) of the edge
        value = (-along / (2.0 * length)).ravel()
        start, end = corner, tri[:, after].ravel()
        rows, cols = np.concatenate([start, end]), np.concatenate([owner[end], owner[start]])
        real = (rows < n) & (rows != cols)  # a mirror copy of i itself moves with i: no net effect
        matrix = _laplacian([rows[real]], [cols[real]], [np.concatenate([value, value])[real]], n)
    return PowerCells(area, centroids, matrix, empty, 0.0), None


def _geogram_jitter(n: int) -> np.ndarray:
    """The weight shift of geogram's diagrams: ``_GEOGRAM_JITTER / n`` times a golden-ratio sequence in [0, 1), so
    that no two points share a shift."""
    return (_GEOGRAM_JITTER / n) * ((np.arange(n) * 0.6180339887498949) % 1.0)


def _laplacian(rows: list, cols: list, values: list, n: int) -> sp.csr_matrix:
    """The Hessian from its off-diagonal pieces (summed where repeated), with the diagonal that makes rows sum to 0."""
    off = sp.csr_matrix((np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
    return (off - sp.diags(np.asarray(off.sum(axis=1)).ravel())).tocsr()


def _geogram_cells(points: np.ndarray, weights: np.ndarray, with_hessian: bool) -> PowerCells | None:
    """Power cells by geogram (B. Lévy; its Python binding ``geogram.Voronoi``), clipped to the square by geogram.

    geogram lifts the points to 3D (height ``sqrt(max w - w_i)``), triangulates them in parallel and restricts the
    Voronoi diagram to the square; cells come back as fans of triangles with the point each belongs to and the
    neighbour across each edge. Areas and centroids are sums over a cell's triangles, and the Hessian a sum over the
    triangle edges between two cells (pieces of their common facet), without a loop over points.

    Caveats of geogram 0.0.7, measured here:

    - Points on one circle with equal weights (a regular grid at zero weights), coincident points, fewer than three
      points or collinear ones crash the process. The last two are refused (``ValueError``); of coincident points
      only the heaviest is passed on (the others are hidden anyway); and the weights are shifted by
      ``_GEOGRAM_JITTER / n`` times a fixed pattern in [0, 1), which broke every cocircular configuration tried (in
      the tests). The transport absorbs the shift: its weights solve the shifted problem exactly, and the cells and
      centroids are those of the shifted weights.
    - The parallel triangulation computes cell corners in a run-dependent order: areas vary in the last bits
      between runs.
    - Rarely (once in ~100 runs of a regular grid) its cells missed a piece of the square: a diagram whose cells do
      not tile the square is not returned (``None``; :func:`power_cells` retries once, then falls back to Qhull).
    """
    try:
        import geogram
    except ImportError as error:
        raise ImportError("the geogram power-diagram backend needs the geogram package (pip install geogram); "
                          "the default backend, qhull, needs nothing more") from error
    n = len(points)
    if n < 3:
        raise ValueError(f"the geogram backend needs at least 3 points, got {n}")
    spread = points - points.mean(axis=0)
    extent = np.linalg.svd(spread, compute_uv=False)  # the point cloud's two principal extents
    if extent[-1] <= 1e-9 * max(extent[0], 1e-300):
        raise ValueError("points are collinear (or coincide): their power diagram is not two-dimensional")
    # centred: a common shift changes nothing, and small weights keep the lifted heights precise
    shifted = weights - np.median(weights) + _geogram_jitter(n)
    # Coincident points also crash it. Of several points at one position only the heaviest can have a cell: the
    # diagram is computed without the others (hidden, as in Qhull's).
    order = np.lexsort((-shifted, points[:, 1], points[:, 0]))
    first = np.r_[True, (np.diff(points[order], axis=0) != 0).any(axis=1)]
    kept = np.sort(order[first])
    diagram = geogram.Voronoi(np.ascontiguousarray(points[kept]), np.ascontiguousarray(shifted[kept]),
                              domain_vertices=_SQUARE, domain_simplices=_SQUARE_TRIANGLES)
    corners = np.asarray(diagram.q, dtype=np.float64)
    triangles = np.asarray(diagram.t, dtype=np.int64)
    owner = kept[np.asarray(diagram.tseed, dtype=np.int64)]
    a, b, c = corners[triangles[:, 0]], corners[triangles[:, 1]], corners[triangles[:, 2]]
    piece_area = 0.5 * _cross(b - a, c - a)
    area = np.bincount(owner, weights=piece_area, minlength=n)
    if abs(area.sum() - 1.0) > 1e-9 or (piece_area < -1e-12).any():
        return None  # seen once in ~100 runs of a regular grid: a piece of the square missing
    piece_moment = piece_area[:, None] * (a + b + c) / 3.0
    moment = np.column_stack([np.bincount(owner, weights=piece_moment[:, 0], minlength=n),
                              np.bincount(owner, weights=piece_moment[:, 1], minlength=n)])
    empty = np.bincount(owner, minlength=n) == 0
    centroids = points.copy()
    filled = area > 0
    centroids[filled] = moment[filled] / area[filled, None]

    matrix = None
    if with_hessian:
        # tadj[t, e] is the triangle across the edge from corner e to corner e + 1 of triangle t
        across = np.asarray(diagram.tadj, dtype=np.int64)
        rows, cols, values = [], [], []
        for e in range(3):
            inside = across[:, e] != _NO_INDEX
            neighbour = np.where(inside, owner[np.where(inside, across[:, e], 0)], -1)
            facet = inside & (neighbour != owner)
            i, j = owner[facet], neighbour[facet]
            piece = corners[triangles[facet, (e + 1) % 3]] - corners[triangles[facet, e]]
            rows.append(i)
            cols.append(j)
            values.append(-np.hypot(piece[:, 0], piece[:, 1]) / (2.0 * np.linalg.norm(points[i] - points[j], axis=1)))
        matrix = _laplacian(rows, cols, values, n)
    return PowerCells(area, centroids, matrix, empty, 0.0, 1)


# --------------------------------------------------------------------------------------------------
# Newton solver


def _relative_error(areas: np.ndarray, target: np.ndarray) -> float:
    return float(np.max(np.abs(areas - target) / target))


def _next_trial(tau: float, areas: np.ndarray, trial: np.ndarray, floor: float) -> float:
    """The damping factor to try after ``tau`` was rejected: half of it, or less when cells fell below the floor.

    Then each cell's area is taken as linear in the step (the secant through the current and the rejected trial's
    area) and the next trial is half the largest step at which no secant has reached the floor (less than tau/2, as a
    cell is below the floor at tau), but at least tau/8.
    Measured on nine transport problems (fs_LR 32k and fsaverage5 hemispheres, warped subjects, 118,530 vertices,
    random targets): 80-100 % of the power diagrams of plain halving, 90 % on average.
    """
    change = trial - areas
    falling = change < 0
    if trial.min() >= floor or not falling.any():  # rejected for too small a decrease: halve
        return tau / 2
    reach = float(np.min((floor - areas[falling]) / change[falling])) * tau  # < tau: a cell is below the floor there
    return max(tau / 8, 0.5 * reach)


def solve_transport(points: np.ndarray, target: np.ndarray, tol: float = 1e-9, max_iterations: int = 100,
                    weights: np.ndarray | None = None, *, min_step: float = 2.0**-20,
                    power_diagram: str = "qhull") -> TransportResult:
    """Weights whose power cells in the unit square have the target areas (damped Newton, KMT 2019).

    Parameters
    ----------
    points : ndarray, shape (n, 2)
        Sites strictly inside the open unit square.
    target : ndarray, shape (n,)
        Positive target areas summing to 1 (they are normalised if the sum differs by roundoff only).
    tol : float
        Stop when ``max |areas - target| / target < tol``.
    max_iterations : int
        Newton iterations at most.
    weights : ndarray, shape (n,), optional
        Initial weights (default zeros: the Voronoi diagram). Every initial cell must be non-empty.
    min_step : float
        Give up (``converged=False``) when step halving goes below this damping factor; also stop when a
        step is rejected while the relative error is already below 1e-11 (the roundoff floor).
    power_diagram : {"qhull", "geogram"}
        The backend of :func:`power_cells`.

    Returns
    -------
    TransportResult
        Weights, cell areas and centroids at the last iterate, per-iteration residuals, timings.

    Raises
    ------
    ValueError
        For invalid targets or an empty initial cell.
    """
    points = np.asarray(points, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    n = len(points)
    if target.shape != (n,) or not np.isfinite(target).all() or (target <= 0).any():
        raise ValueError(f"target must be {n} positive finite areas")
    if abs(target.sum() - 1.0) > 1e-6:
        raise ValueError(f"target areas must sum to 1 (the square's area), got {target.sum()}")
    target = target / target.sum()
    w = np.zeros(n) if weights is None else np.array(weights, dtype=np.float64)

    power_seconds = solve_seconds = 0.0
    tick = time.perf_counter()
    cells = power_cells(points, w, backend=power_diagram)
    power_seconds += time.perf_counter() - tick
    evaluations = 1
    if cells.empty.any():
        raise ValueError(f"{int(cells.empty.sum())} initial cells are empty (coincident points?); "
                         "pass initial weights that give every point a cell")
    residuals = [_relative_error(cells.areas, target)]
    min_ratios = [float((cells.areas / target).min())]
    steps: list[float] = []
    converged = residuals[-1] < tol
    iteration = 0
    pin = int(np.argmax(target))
    floor = 0.5 * min(cells.areas.min(), target.min())  # KMT's epsilon_0: no cell may shrink below it
    factor = None
    while not converged and iteration < max_iterations:
        iteration += 1
        rhs = target - cells.areas
        tick = time.perf_counter()
        # H is a graph Laplacian (constants in its kernel): adding H_pp to one diagonal entry pins
        # dw_pin = sum(rhs) / H_pp = 0 and leaves H dw = rhs unchanged elsewhere.
        hessian = cells.hessian + sp.csr_matrix(([cells.hessian[pin, pin]], ([pin], [pin])), shape=(n, n))
        hessian = 0.5 * (hessian + hessian.T)  # remove roundoff asymmetry
        factor = Cholesky(hessian, reuse=factor)  # same pattern once the diagram's graph settles
        direction = factor.solve(rhs)
        solve_seconds += time.perf_counter() - tick
        norm = np.linalg.norm(rhs)
        # First trial: twice the last accepted step (1 at the start and once full steps are accepted).
        # KMT halve from 1 every time; starting lower only skips trials that were rejected one iteration
        # earlier, and the accepted steps stay bounded below (each retry at least an eighth of the last), which is
        # what their convergence proof needs.
        tau = min(1.0, 2.0 * steps[-1]) if steps else 1.0
        while True:
            tick = time.perf_counter()
            trial = power_cells(points, w + tau * direction, backend=power_diagram)
            power_seconds += time.perf_counter() - tick
            evaluations += 1
            if trial.areas.min() >= floor and np.linalg.norm(target - trial.areas) <= (1 - tau / 2) * norm:
                break
            tau = _next_trial(tau, cells.areas, trial.areas, floor)
            if tau < min_step or residuals[-1] < _ROUNDOFF:  # stuck, or at the roundoff floor already
                trial = None
                break
        if trial is None:
            break
        w = w + tau * direction
        cells = trial
        steps.append(tau)
        residuals.append(_relative_error(cells.areas, target))
        min_ratios.append(float((cells.areas / target).min()))
        converged = residuals[-1] < tol
    return TransportResult(w, cells.areas, cells.centroids, residuals, len(steps), converged, steps,
                           min_ratios, power_seconds, solve_seconds, evaluations)


# --------------------------------------------------------------------------------------------------
# area-preserving map of a mesh



def _snap_boundary(uv: np.ndarray, reference: np.ndarray, boundary: np.ndarray, corners: np.ndarray) -> np.ndarray:
    """Put corners on the square's corners and the other boundary vertices on their sides, in loop order.

    The side of a boundary vertex is the one joining the corners before and after it in loop order; the
    corners' square positions are read from ``reference`` (the conformal ``uv``).
    """
    uv = uv.copy()
    position = np.full(len(uv), -1)
    position[boundary] = np.arange(len(boundary))
    corner_positions = position[corners]
    if (corner_positions < 0).any():
        raise ValueError("every corner must be a boundary vertex")
    start = corner_positions[0]
    offsets = (corner_positions - start) % len(boundary)
    if not (np.diff(offsets) > 0).all():
        raise ValueError("corners must be four distinct boundary vertices in boundary-loop order")
    square = np.rint(reference[corners]).clip(0, 1)
    if (np.abs(reference[corners] - square) > 1e-6).any() or len({tuple(s) for s in square}) != 4:
        raise ValueError(f"corner vertices are not on four distinct corners of the unit square: {reference[corners]}")
    loop = np.roll(boundary, -start)  # starts at corners[0]
    side = np.searchsorted(offsets, np.arange(len(loop)), side="right") - 1  # side k joins corners k and k+1
    is_corner = np.zeros(len(loop), dtype=bool)
    is_corner[offsets] = True
    begin, end = square[side], square[(side + 1) % 4]
    if ((begin == end).sum(axis=1) != 1).any():
        raise ValueError("consecutive corners must be adjacent corners of the square")
    fixed_axis = np.where(begin[:, 0] == end[:, 0], 0, 1)  # the coordinate that is constant along the side
    free_axis = 1 - fixed_axis
    rows = np.arange(len(loop))
    begin_free, end_free = begin[rows, free_axis], end[rows, free_axis]
    # progress along the side in [0, 1] from the side's first corner; sorted within each side and handed
    # out in loop order, so that the boundary keeps its order (``side`` is non-decreasing along ``loop``)
    progress = np.abs(uv[loop, free_axis] - begin_free).clip(0, 1)
    inner = ~is_corner
    progress[inner] = progress[inner][np.lexsort((progress[inner], side[inner]))]
    progress[is_corner] = 0.0
    new = np.empty((len(loop), 2))
    new[rows, fixed_axis] = begin[rows, fixed_axis]
    new[rows, free_axis] = begin_free + np.sign(end_free - begin_free) * progress
    uv[loop] = new
    return uv


def _repair_flips(uv: np.ndarray, faces: np.ndarray, interior: np.ndarray, orientation: float,
                  max_rounds: int) -> tuple[np.ndarray, int]:
    """Local Laplacian smoothing of the interior vertices of flipped triangles (growing the region)."""
    n = len(uv)
    adjacency = mesh_graph(faces, n).astype(np.float64)
    degree = np.asarray(adjacency.sum(axis=1)).ravel()
    uv = uv.copy()
    flipped = orientation * signed_areas(uv, faces) <= 0
    for round_ in range(max_rounds):
        if not flipped.any():
            break
        region = np.zeros(n, dtype=bool)
        region[faces[flipped].ravel()] = True
        for _ in range(round_ // 3):  # widen the region when local smoothing is not enough
            region |= (adjacency @ region.astype(np.float64)) > 0
        region &= interior
        if not region.any():
            break
        for _ in range(10):
            uv[region] = (adjacency @ uv)[region] / degree[region, None]
        flipped = orientation * signed_areas(uv, faces) <= 0
    return uv, int(flipped.sum())


def area_preserving_map(uv: np.ndarray, faces: np.ndarray, vertex_areas: np.ndarray, boundary: np.ndarray,
                        corners: np.ndarray, *, tol: float = 1e-9, max_iterations: int = 100,
                        shrink: float = 1e-3, repair_rounds: int = 30,
                        power_diagram: str = "qhull") -> AreaPreservingMap:
    """Area-preserving re-layout of a disk mesh in the unit square by optimal transport.

    Parameters
    ----------
    uv : ndarray, shape (n, 2)
        Conformal positions in [0, 1]^2 (boundary on the sides, corners on the corners).
    faces : ndarray, shape (m, 3)
        Triangles (any consistent orientation; the orientation of ``uv`` is preserved).
    vertex_areas : ndarray, shape (n,)
        Positive 3D area of each vertex (e.g. one third of its incident triangle areas); normalised to
        sum to 1 as the transport targets.
    boundary : ndarray, shape (b,)
        Boundary vertices in loop order.
    corners : ndarray, shape (4,)
        Corner vertices in loop order; their square corners are read from ``uv``.
    tol : float
        Relative cell-area tolerance of the transport.
    max_iterations : int
        Newton iterations at most.
    shrink : float
        The sites are ``0.5 + (uv - 0.5) * (1 - 2 * shrink)`` so that none lies on a side (where it
        would coincide with its mirror copy).
    repair_rounds : int
        Rounds of local smoothing for flipped triangles.
    power_diagram : {"qhull", "geogram"}
        The backend of :func:`power_cells`.

    Returns
    -------
    AreaPreservingMap
        New ``uv``, flipped-triangle counts before and after the repair, transport residuals, time.
    """
    tick = time.perf_counter()
    uv = np.asarray(uv, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    vertex_areas = np.asarray(vertex_areas, dtype=np.float64)
    boundary = np.asarray(boundary, dtype=np.int64)
    corners = np.asarray(corners, dtype=np.int64)
    n = len(uv)
    if uv.shape != (n, 2) or vertex_areas.shape != (n,):
        raise ValueError("uv must be (n, 2) and vertex_areas (n,)")
    if corners.shape != (4,):
        raise ValueError("corners must be 4 vertex indices")
    if (vertex_areas <= 0).any() or not np.isfinite(vertex_areas).all():
        raise ValueError("vertex_areas must be positive and finite")
    if uv.min() < -1e-9 or uv.max() > 1 + 1e-9:
        raise ValueError("uv must lie in the unit square")
    orientation = np.sign(signed_areas(uv, faces).sum())
    if orientation == 0:
        raise ValueError("the input layout has zero total signed area")

    sites = 0.5 + (uv.clip(0, 1) - 0.5) * (1.0 - 2.0 * shrink)
    target = vertex_areas / vertex_areas.sum()
    result = solve_transport(sites, target, tol=tol, max_iterations=max_iterations, power_diagram=power_diagram)
    if not result.converged:
        warnings.warn(f"area-preserving transport stopped at relative area error {result.residuals[-1]:.3g} "
                      f"after {result.iterations} iterations (tolerance {tol:g})", RuntimeWarning, stacklevel=2)
    mapped = _snap_boundary(result.centroids, uv, boundary, corners)
    before = int((orientation * signed_areas(mapped, faces) <= 0).sum())
    interior = np.ones(n, dtype=bool)
    interior[boundary] = False
    mapped, after = _repair_flips(mapped, faces, interior, orientation, repair_rounds) if before else (mapped, 0)
    return AreaPreservingMap(mapped, before, after, result.residuals, time.perf_counter() - tick,
                             result.areas, result.weights, result.iterations, result.converged, result)
