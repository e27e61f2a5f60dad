"""Conformal map of a disk onto the unit square (discrete conformal / Ricci flow with a Newton solve).

The paper computes the conformal step with discrete Ricci flow, prescribing target curvature at four
boundary corners and zero elsewhere. We solve the same problem as the convex discrete conformal
equivalence of Springborn, Schröder and Pinkall (CETM, 2008): find log scale factors ``u`` so that the
edge lengths ``l_ij * exp((u_i + u_j) / 2)`` give angle sums of 2π at interior vertices, π along the
boundary and π/2 at the four corners: a flat metric whose boundary is a rectangle. Newton's method
uses the cotangent Laplacian of the current metric as the Jacobian. The flat mesh is laid out exactly:
boundary vertices by arc length along the rectangle's sides, interior vertices by the cotangent
Laplacian of the flat metric (coordinates are harmonic on a flat mesh); both axes are then scaled to
[0, 1], which leaves the map conformal up to the rectangle's aspect ratio (reported).

Sliver triangles (fsaverage5 has one of 2.7° / 174.5°) would stall the flow when a triangle inequality
fails. As in Gillespie, Springborn and Crane (2021), the solve keeps an *intrinsic* triangulation that is
Delaunay for the current metric, flipping edges with the Ptolemy relation; the layout uses it, and the input
mesh's triangles are drawn on the resulting vertex positions.

Corners are placed at four equally spaced positions of the boundary's harmonic measure seen from the
vertex farthest from the boundary, starting at the most anterior boundary vertex (largest y), then
moved to the sharpest convex boundary vertex nearby: a reflex corner stalls the flow.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import dijkstra

from .disk import Disk
from .laplacian import cotangent_matrix
from .mesh import contains, distinct
from .sparse import Cholesky

__all__ = ["ConformalMap", "choose_corners", "conformal_square"]


@dataclass(frozen=True)
class ConformalMap:
    """Result of :func:`conformal_square`.

    Attributes
    ----------
    uv : ndarray, shape (n, 2)
        Vertex positions in the unit square.
    corners : ndarray, shape (4,)
        Corner vertices, mapped to (0, 0), (1, 0), (1, 1), (0, 1) in that order.
    residuals : list of float
        Max angle-sum error (radians) after each Newton iteration.
    intrinsic_flips : int
        Edges of the final intrinsic (Delaunay) triangulation that are not edges of the input mesh.
    aspect : float
        Width / height of the conformal rectangle before scaling to the square.
    seconds : float
    """

    uv: np.ndarray
    corners: np.ndarray
    residuals: list[float]
    aspect: float
    seconds: float
    intrinsic_flips: int = 0

    @property
    def rectangle_uv(self) -> np.ndarray:
        """The conformal map itself: the rectangle of width ``aspect`` and height 1 (before scaling to the square)."""
        return self.uv * np.array([self.aspect, 1.0])


def _edge_lengths(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(m, 3) lengths of the edge opposite each corner of each face."""
    a = np.linalg.norm(vertices[faces[:, 1]] - vertices[faces[:, 2]], axis=1)
    b = np.linalg.norm(vertices[faces[:, 2]] - vertices[faces[:, 0]], axis=1)
    c = np.linalg.norm(vertices[faces[:, 0]] - vertices[faces[:, 1]], axis=1)
    return np.stack([a, b, c], axis=1)


def _angles(lengths: np.ndarray) -> np.ndarray:
    """Corner angles from opposite edge lengths; degenerate triangles get (π, 0, 0) at the long edge."""
    a, b, c = lengths.T
    angles = np.empty_like(lengths)
    for k, (x, y, z) in enumerate(((a, b, c), (b, c, a), (c, a, b))):
        # half-angle formula: accurate for thin triangles
        numerator = (x - y + z) * (x + y - z)
        denominator = (x + y + z) * (-x + y + z)
        with np.errstate(invalid="ignore", divide="ignore"):
            angles[:, k] = 2.0 * np.arctan(np.sqrt(np.clip(numerator, 0, None) / denominator))
    violated = (a >= b + c) | (b >= c + a) | (c >= a + b)
    if violated.any():
        longest = np.argmax(lengths[violated], axis=1)
        angles[violated] = 0.0
        angles[np.flatnonzero(violated), longest] = np.pi
    return angles


def _cotan_matrix(faces: np.ndarray, angles: np.ndarray, n: int) -> sp.csr_matrix:
    """The cotangent Laplacian of an intrinsic metric given by its corner angles (degenerate corners weigh 0)."""
    with np.errstate(divide="ignore"):
        cot = 1.0 / np.tan(np.clip(angles, 1e-12, np.pi - 1e-12))
    cot[(angles <= 1e-12) | (angles >= np.pi - 1e-12)] = 0.0
    return cotangent_matrix(faces, cot, n)


def _angle_sums(faces: np.ndarray, angles: np.ndarray, n: int) -> np.ndarray:
    return np.bincount(faces.ravel(), weights=angles.ravel(), minlength=n)


def choose_corners(disk: Disk) -> np.ndarray:
    """Four boundary vertices (indices into ``disk.vertices``) in loop order; see the module docstring."""
    vertices, faces, loop = disk.vertices, disk.faces, disk.boundary
    n = len(vertices)
    lengths = _edge_lengths(vertices, faces)
    angles = _angles(lengths)
    stiffness = _cotan_matrix(faces, angles, n)
    # the vertex farthest (along edges) from the boundary
    edges = np.r_[faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]
    edge_length = np.linalg.norm(vertices[edges[:, 0]] - vertices[edges[:, 1]], axis=1)
    graph = sp.coo_matrix((edge_length, (edges[:, 0], edges[:, 1])), shape=(n, n)).tocsr()
    distance = dijkstra(graph, directed=False, indices=loop, min_only=True)
    centre = int(np.argmax(distance))
    # harmonic measure of each boundary vertex seen from the centre: boundary flux of the Green's function
    interior = np.ones(n, dtype=bool)
    interior[loop] = False
    inner = np.flatnonzero(interior)
    rhs = np.zeros(len(inner))
    rhs[np.searchsorted(inner, centre)] = 1.0
    green = np.zeros(n)
    green[inner] = Cholesky(stiffness[inner][:, inner]).solve(rhs)  # P1 stiffness, boundary fixed: positive definite
    flux = -(stiffness[loop] @ green)
    measure = np.clip(flux, 0, None)
    measure /= measure.sum()
    start = int(np.argmax(vertices[loop, 1]))  # most anterior boundary vertex
    order = np.roll(np.arange(len(loop)), -start)
    cumulative = np.cumsum(measure[order]) - measure[order][0]
    sums = _angle_sums(faces, angles, n)[loop]
    window = max(2, len(loop) // 50)
    chosen = []
    for quarter in range(4):
        target = int(np.searchsorted(cumulative, quarter / 4))
        candidates = order[np.clip(np.arange(target - window, target + window + 1), 0, len(loop) - 1)]
        candidates = np.unique(candidates)
        chosen.append(int(candidates[np.argmin(sums[candidates])]))  # sharpest (smallest angle sum)
    positions = [int(np.flatnonzero(order == c)[0]) for c in chosen]
    if len(set(positions)) < 4 or positions != sorted(positions):
        raise ValueError("could not place four distinct corners in loop order; the boundary is too short")
    return loop[np.asarray(chosen)]


def conformal_square(disk: Disk, corners: np.ndarray | None = None, *, tolerance: float = 1e-9,
                     max_iterations: int = 100) -> ConformalMap:
    """Map a disk conformally onto the unit square with four corners.

    Parameters
    ----------
    disk : Disk
        From :func:`studylib.geometry.disk.prepare_disk`.
    corners : ndarray, shape (4,), optional
        Corner vertices in boundary-loop order; chosen by :func:`choose_corners` by default.
    tolerance : float
        Stop when the largest angle-sum error (radians) is below this.
    max_iterations : int

    Raises
    ------
    RuntimeError
        When Newton's method does not reach ``tolerance`` (the message gives the residuals).
    """
    tick = time.perf_counter()
    vertices, faces, loop = disk.vertices, disk.faces, disk.boundary
    n = len(vertices)
    corners = choose_corners(disk) if corners is None else np.asarray(corners, dtype=np.int64)
    target = np.full(n, 2 * np.pi)
    target[loop] = np.pi
    target[corners] = np.pi / 2
    log_base = np.log(_edge_lengths(vertices, faces))

    def state(u: np.ndarray, faces: np.ndarray, log_base: np.ndarray, twin: np.ndarray | None) -> tuple:
        faces, log_base, lengths, twin = _delaunay(faces, log_base, u, n, twin)
        angles = _angles(lengths)
        return faces, log_base, angles, _angle_sums(faces, angles, n) - target, twin

    u = np.zeros(n)
    intrinsic, log_base, angles, error, twin = state(u, faces, log_base, None)
    residuals = [float(np.abs(error).max())]
    keep = np.arange(1, n)  # the solution is defined up to a constant: pin u[0]
    factor = None
    for _ in range(max_iterations):
        if residuals[-1] < tolerance:
            break
        jacobian = -_cotan_matrix(intrinsic, angles, n)  # d(angle sums)/du (checked against finite differences)
        step = np.zeros(n)
        # -jacobian is a cotangent Laplacian on an intrinsic Delaunay mesh (non-negative weights), positive definite
        # with one vertex pinned
        factor = Cholesky(-jacobian[keep][:, keep], reuse=factor)  # the same pattern once no edge flips
        step[keep] = factor.solve(error[keep])
        scale = 1.0
        while True:  # damped: the error must decrease
            trial = state(u + scale * step, intrinsic, log_base, twin)
            if np.linalg.norm(trial[3]) < np.linalg.norm(error) or scale < 1e-6:
                break
            scale *= 0.5
        u = u + scale * step
        intrinsic, log_base, angles, error, twin = trial
        residuals.append(float(np.abs(error).max()))
    if residuals[-1] >= tolerance:
        raise RuntimeError(f"conformal map did not converge: max angle error per iteration {residuals}")
    lengths = _scaled_lengths(intrinsic, log_base, u)
    uv, aspect = _layout(intrinsic, lengths, _angles(lengths), loop, corners, n)
    intrinsic_edges = distinct(_edge_codes(intrinsic, n))
    flips = int((~contains(distinct(_edge_codes(faces, n)), intrinsic_edges)).sum())
    return ConformalMap(uv, corners, residuals, aspect, time.perf_counter() - tick, flips)


def _scaled_lengths(faces: np.ndarray, log_base: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Edge lengths (opposite each corner) of the metric scaled by exp(u/2) at both ends."""
    opposite_sum = u[faces[:, [1, 2, 0]]] + u[faces[:, [2, 0, 1]]]
    return np.exp(log_base + 0.5 * opposite_sum)


def _edge_codes(faces: np.ndarray, n: int) -> np.ndarray:
    """An integer per (face, corner) naming the undirected edge opposite that corner."""
    return _edge_code(faces[:, [1, 2, 0]], faces[:, [2, 0, 1]], n)


def _edge_code(a: np.ndarray, b: np.ndarray, n: int) -> np.ndarray:
    """The integer naming the undirected edge between vertices ``a`` and ``b`` (of ``n``)."""
    return np.minimum(a, b) * n + np.maximum(a, b)


def _delaunay(faces: np.ndarray, log_base: np.ndarray, u: np.ndarray, n: int, twin: np.ndarray | None = None,
              max_passes: int = 1000) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Flip interior edges until the triangulation is intrinsically Delaunay for the metric scaled by ``u``.

    Flips use the Ptolemy relation (Gillespie, Springborn and Crane 2021), which is invariant under vertex
    scaling, so the unscaled log lengths ``log_base`` are flipped along with the faces. A flip replaces faces
    (i, j, k) and (j, i, l) by (k, i, l) and (l, j, k). The boundary is never flipped.

    Each pass flips the non-Delaunay edges worst first, each face at most once. The first pass checks every edge;
    later ones only the edges of the faces that the last pass flipped (no other edge can have changed), with the
    lengths and the edge pairing updated on those faces and their neighbours: most passes flip a few hundred edges
    of ~10^5 faces, and re-checking every edge made them cost as much as the first.

    ``twin`` (optional, from an earlier call with these ``faces``) gives, for each (face * 3 + corner) slot, the slot
    on the other side of its edge (-1 on the boundary); it is returned updated with the faces.
    """
    faces, log_base = faces.copy(), log_base.copy()
    lengths = _scaled_lengths(faces, log_base, u)
    cot = _cotangents(lengths)
    if twin is None:
        twin = np.full(faces.size, -1)
        _pair_slots(faces, np.arange(faces.size), twin, n)
    else:
        twin = twin.copy()
    check = np.arange(faces.size)  # slots whose edges may be non-Delaunay
    for _ in range(max_passes):
        other = twin[check]
        checked = np.zeros(faces.size, dtype=bool)
        checked[check] = True
        once = (other >= 0) & ((check < other) | ~checked[np.maximum(other, 0)])  # each interior edge once
        first, second = np.minimum(check, other)[once], np.maximum(check, other)[once]
        weight = cot.ravel()[first] + cot.ravel()[second]
        bad = np.flatnonzero(weight < -1e-12)
        if len(bad) == 0:
            return faces, log_base, lengths, twin
        used = np.zeros(len(faces), dtype=bool)
        for index in bad[np.argsort(weight[bad], kind="stable")]:  # worst first (ties: slot order); faces once a pass
            f1, c1 = divmod(int(first[index]), 3)
            f2, c2 = divmod(int(second[index]), 3)
            if used[f1] or used[f2]:
                continue
            used[f1] = used[f2] = True
            k, i, j = faces[f1, c1], faces[f1, (c1 + 1) % 3], faces[f1, (c1 + 2) % 3]
            l = faces[f2, c2]
            ij, jk, ki = log_base[f1, c1], log_base[f1, (c1 + 1) % 3], log_base[f1, (c1 + 2) % 3]
            # in face 2 = (l, j, i) up to rotation: the edge opposite j is (i, l), opposite i is (l, j)
            il, lj = log_base[f2, (c2 + 1) % 3], log_base[f2, (c2 + 2) % 3]
            kl = np.logaddexp(ki + lj, jk + il) - ij  # Ptolemy: l_kl l_ij = l_ki l_lj + l_jk l_il
            faces[f1], log_base[f1] = (k, i, l), (il, kl, ki)
            faces[f2], log_base[f2] = (l, j, k), (jk, kl, lj)
        flipped = np.flatnonzero(used)
        lengths[flipped] = _scaled_lengths(faces[flipped], log_base[flipped], u)
        cot[flipped] = _cotangents(lengths[flipped])
        slots = (3 * flipped[:, None] + np.arange(3)).ravel()
        outer = twin[slots]
        outer = outer[(outer >= 0) & ~used[outer // 3]]  # the unflipped neighbours' sides of the quads' edges
        _pair_slots(faces, np.concatenate([slots, outer]), twin, n)
        check = slots
    raise RuntimeError("intrinsic Delaunay flips did not terminate")


def _cotangents(lengths: np.ndarray) -> np.ndarray:
    return 1.0 / np.tan(np.clip(_angles(lengths), 1e-12, np.pi - 1e-12))


def _pair_slots(faces: np.ndarray, slots: np.ndarray, twin: np.ndarray, n: int) -> None:
    """Set ``twin`` of each (face * 3 + corner) slot in ``slots`` to the slot among them on the other side of its edge
    (the edge opposite that corner), or -1 on the boundary; ``slots`` must hold both sides of every interior edge."""
    face, corner = np.divmod(slots, 3)
    codes = _edge_code(faces[face, (corner + 1) % 3], faces[face, (corner + 2) % 3], n)  # these slots' edges only
    order = np.argsort(codes, kind="stable")
    pairs = np.flatnonzero(codes[order][1:] == codes[order][:-1])
    first, second = slots[order[pairs]], slots[order[pairs + 1]]
    twin[slots] = -1
    twin[first], twin[second] = second, first


def _layout(faces: np.ndarray, lengths: np.ndarray, angles: np.ndarray, loop: np.ndarray, corners: np.ndarray,
            n: int) -> tuple[np.ndarray, float]:
    """Boundary on the rectangle's sides by arc length; interior harmonic in the flat metric; scaled to [0,1]²."""
    # the length of each boundary edge (a, next a): the face side from corner k + 1 to corner k + 2 (opposite k)
    directed = np.concatenate([faces[:, (k + 1) % 3] * n + faces[:, (k + 2) % 3] for k in range(3)])
    order = np.argsort(directed)
    wanted = loop * n + np.roll(loop, -1)
    position = np.searchsorted(directed[order], wanted).clip(max=len(directed) - 1)
    if (directed[order][position] != wanted).any():
        raise ValueError("the boundary loop does not follow the faces' orientation")
    steps = lengths.T.ravel()[order][position]
    start = int(np.flatnonzero(loop == corners[0])[0])
    loop = np.roll(loop, -start)
    steps = np.roll(steps, -start)
    corner_positions = [int(np.flatnonzero(loop == c)[0]) for c in corners] + [len(loop)]
    uv = np.zeros((n, 2))
    sides = ((0, 0), (1, 0)), ((1, 0), (1, 1)), ((1, 1), (0, 1)), ((0, 1), (0, 0))
    side_lengths = []
    for (begin, end), a, b in zip(sides, corner_positions[:-1], corner_positions[1:]):
        travelled = np.r_[0.0, np.cumsum(steps[a:b])]
        side_lengths.append(travelled[-1])
        fraction = travelled[:-1] / travelled[-1]
        uv[loop[a:b]] = np.asarray(begin) + fraction[:, None] * (np.asarray(end) - np.asarray(begin))
    aspect = float((side_lengths[0] + side_lengths[2]) / (side_lengths[1] + side_lengths[3]))
    laplacian = _cotan_matrix(faces, angles, n)
    interior = np.ones(n, dtype=bool)
    interior[loop] = False
    inner, outer = np.flatnonzero(interior), loop
    rhs = -(laplacian[inner][:, outer] @ uv[outer])
    # the cotangent Laplacian (positive diagonal) with the boundary fixed is positive definite
    uv[inner] = Cholesky(laplacian[inner][:, inner]).solve(rhs)
    return uv, aspect
