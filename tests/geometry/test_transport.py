from __future__ import annotations

import sys

import numpy as np
import pytest

from studylib.geometry.mesh import signed_areas as _signed_areas
from studylib.geometry.transport import (
    _geogram_jitter,
    _repair_flips,
    _side_winners,
    _snap_boundary,
    area_preserving_map,
    power_cells,
    solve_transport,
)

GRID = 1000  # brute-force samples per axis: pixel size h = 1e-3


def brute_force_cells(points: np.ndarray, weights: np.ndarray, grid: int = GRID):
    """Areas and centroids by assigning each pixel centre to argmin_i |x - p_i|^2 - w_i."""
    x = (np.arange(grid) + 0.5) / grid
    counts = np.zeros(len(points))
    sums = np.zeros((len(points), 2))
    for row in np.array_split(np.arange(grid), 20):  # chunks keep memory small
        samples = np.stack(np.meshgrid(x[row], x, indexing="ij"), axis=-1).reshape(-1, 2)
        power = ((samples[:, None, :] - points[None]) ** 2).sum(axis=2) - weights[None]
        owner = power.argmin(axis=1)
        counts += np.bincount(owner, minlength=len(points))
        sums[:, 0] += np.bincount(owner, weights=samples[:, 0], minlength=len(points))
        sums[:, 1] += np.bincount(owner, weights=samples[:, 1], minlength=len(points))
    with np.errstate(invalid="ignore"):
        return counts / grid**2, sums / counts[:, None], counts


def test_power_cells_match_brute_force_grid():
    rng = np.random.default_rng(0)
    points = rng.uniform(0.01, 0.99, (30, 2))
    weights = rng.normal(0, 0.003, 30)
    cells = power_cells(points, weights)
    assert abs(cells.areas.sum() - 1) < 1e-10
    areas, centroids, counts = brute_force_cells(points, weights)
    h = 1.0 / GRID
    # Misassigned pixels lie along the cell edges (perimeter ~1, error of each ~h^2, signs random):
    # observed errors are ~1e-5; 0.2 h = 2e-4 is a few percent of a typical cell (1/30).
    np.testing.assert_allclose(cells.areas, areas, atol=0.2 * h)
    big = counts > 1000
    assert big.sum() >= 25
    np.testing.assert_allclose(cells.centroids[big], centroids[big], atol=0.5 * h)
    np.testing.assert_array_equal(cells.empty, counts == 0)


def test_power_cells_hessian_matches_finite_differences():
    rng = np.random.default_rng(1)
    n = 40
    points = rng.uniform(0.01, 0.99, (n, 2))
    weights = rng.normal(0, 0.002, n)
    cells = power_cells(points, weights)
    assert not cells.empty.any()
    hessian = cells.hessian.toarray()
    assert abs(hessian.sum(axis=1)).max() < 1e-12
    np.testing.assert_allclose(hessian, hessian.T, atol=1e-12)
    assert (np.diag(hessian) > 0).all() and (hessian - np.diag(np.diag(hessian)) <= 0).all()
    step = 1e-7
    numeric = np.empty((n, n))
    for j in range(n):
        e = np.zeros(n)
        e[j] = step
        numeric[:, j] = (power_cells(points, weights + e).areas - power_cells(points, weights - e).areas) / (2 * step)
    assert abs(numeric - hessian).max() < 1e-4 * abs(hessian).max()


def test_power_cells_regular_grid_is_exact():
    # every four neighbouring sites are cocircular, and so are each site and its mirror copies
    k = 9
    centres = (np.arange(k) + 0.5) / k
    points = np.stack(np.meshgrid(centres, centres), axis=-1).reshape(-1, 2)
    cells = power_cells(points, np.zeros(len(points)))
    np.testing.assert_allclose(cells.areas, 1 / k**2, atol=1e-15)
    np.testing.assert_allclose(cells.centroids, points, atol=1e-14)


def test_power_cells_reports_hidden_points():
    rng = np.random.default_rng(2)
    points = np.r_[rng.uniform(0.05, 0.95, (50, 2)), [[0.5, 0.5]]]
    weights = np.r_[np.zeros(50), -0.5]  # far below its neighbours: no cell
    cells = power_cells(points, weights)
    assert cells.empty[-1] and cells.areas[-1] == 0 and cells.empty.sum() == 1
    assert abs(cells.areas.sum() - 1) < 1e-12
    assert cells.hessian[-1].nnz == 0 or abs(cells.hessian[-1].toarray()).max() == 0


def test_power_cells_mirror_more_points_when_a_margin_is_too_narrow():
    rng = np.random.default_rng(3)
    points = rng.uniform(0.02, 0.98, (400, 2))
    weights = np.zeros(400)
    weights[np.argmin(((points - 0.5) ** 2).sum(axis=1))] = 0.05  # one big cell reaching the sides
    narrow = power_cells(points, weights, margin=0.005)
    everything = power_cells(points, weights, margin=1.0)
    assert narrow.attempts > 1  # the first diagram had a cell leaving the square
    assert abs(narrow.areas.sum() - 1) < 1e-10
    np.testing.assert_allclose(narrow.areas, everything.areas, atol=1e-14)
    np.testing.assert_allclose(narrow.centroids, everything.centroids, atol=1e-12)
    assert abs(narrow.hessian - everything.hessian).max() < 1e-9


def test_power_cells_mirror_a_cell_that_crosses_a_side():
    # Points hugging the sides are mirrored with a narrow margin, the heavy centre point is not, yet its
    # cell reaches the sides between them: the crossing must be detected and that point mirrored too.
    t = (np.arange(40) + 0.5) / 40
    near = 0.003
    layer = np.r_[np.c_[t, np.full(40, near)], np.c_[t, np.full(40, 1 - near)],
                  np.c_[np.full(40, near), t], np.c_[np.full(40, 1 - near), t]]
    rng = np.random.default_rng(5)
    points = np.r_[layer, rng.uniform(0.1, 0.9, (100, 2)), [[0.5, 0.5]]]
    weights = np.zeros(len(points))
    weights[-1] = 0.3
    narrow = power_cells(points, weights, margin=0.005)
    everything = power_cells(points, weights, margin=1.0)
    assert narrow.attempts > 1
    assert _side_winners(points, weights)[-1].all()  # its cell meets every side
    assert power_cells(points, weights).attempts == 1  # the default mirrors it from the start
    assert abs(narrow.areas.sum() - 1) < 1e-10 and narrow.areas[-1] > 0.5
    np.testing.assert_allclose(narrow.areas, everything.areas, atol=1e-14)
    np.testing.assert_array_equal(narrow.empty, everything.empty)


def test_power_cells_unbounded_cells_are_never_accepted():
    # With nothing mirrored, the outermost points of a central cloud have unbounded cells, although
    # every power centre (cell vertex) found lies inside the square.
    points = np.random.default_rng(7).uniform(0.3, 0.7, (200, 2))
    narrow = power_cells(points, np.zeros(200), margin=0.01)
    assert narrow.margin == 1.0 and abs(narrow.areas.sum() - 1) < 1e-10
    np.testing.assert_allclose(narrow.areas, power_cells(points, np.zeros(200), margin=1.0).areas, atol=1e-15)


def test_side_winners_are_the_cells_that_meet_each_side():
    # Sampled densely along each side, the point with the smallest power distance is always one of the winners, and
    # every winner is the nearest somewhere (a winner's stretch of side can be short: sample finely).
    rng = np.random.default_rng(8)
    points = rng.uniform(0.01, 0.99, (3000, 2))
    weights = rng.normal(0, 3e-3, 3000)
    winners = _side_winners(points, weights)
    t = np.linspace(0, 1, 200_001)
    for s, (axis, value) in enumerate(((0, 0.0), (0, 1.0), (1, 0.0), (1, 1.0))):
        along, depth = points[:, 1 - axis], points[:, axis] - value
        # power distance minus t^2: a line per point; the lowest at each t in chunks (memory)
        lowest = np.concatenate([np.argmin(-2 * np.outer(chunk, along) + (along**2 + depth**2 - weights), axis=1)
                                 for chunk in np.array_split(t, 200)])
        np.testing.assert_array_equal(np.flatnonzero(winners[:, s]), np.unique(lowest))
    assert 0 < winners.sum() < 600  # a boundary layer, not everything


def test_power_cells_mirror_the_side_winners_and_need_one_diagram():
    # Weights that push cells across the sides (a large spread): the default mirrors exactly the points whose cells
    # meet a side, the first diagram is accepted, and it equals the diagram with every point mirrored.
    rng = np.random.default_rng(9)
    points = rng.uniform(0.01, 0.99, (3000, 2))
    for spread in (1e-4, 1e-3, 3e-3):
        weights = rng.normal(0, spread, 3000)
        cells = power_cells(points, weights)
        everything = power_cells(points, weights, margin=1.0)
        assert cells.attempts == 1 and cells.margin == 0.0
        np.testing.assert_allclose(cells.areas, everything.areas, atol=1e-14)
        np.testing.assert_allclose(cells.centroids, everything.centroids, atol=1e-12)
        np.testing.assert_array_equal(cells.empty, everything.empty)
        assert abs(cells.hessian - everything.hessian).max() < 1e-9


def test_power_cells_rejects_points_on_a_side():
    with pytest.raises(ValueError, match="strictly inside"):
        power_cells(np.array([[0.0, 0.5], [0.5, 0.5]]), np.zeros(2))


# ---- the geogram backend: the same cells as Qhull's


@pytest.fixture
def needs_geogram():
    pytest.importorskip("geogram")


def test_geogram_cells_match_brute_force_and_qhull(needs_geogram):
    rng = np.random.default_rng(0)
    points = rng.uniform(0.01, 0.99, (30, 2))
    weights = rng.normal(0, 0.003, 30)
    cells = power_cells(points, weights, backend="geogram")
    reference = power_cells(points, weights)
    assert abs(cells.areas.sum() - 1) < 1e-12
    areas, _, counts = brute_force_cells(points, weights)
    np.testing.assert_allclose(cells.areas, areas, atol=0.2 / GRID)
    np.testing.assert_array_equal(cells.empty, counts == 0)
    np.testing.assert_allclose(cells.areas, reference.areas, atol=1e-10)  # the shift of _geogram_cells: ~1e-11
    np.testing.assert_allclose(cells.centroids, reference.centroids, atol=1e-9)
    assert abs(cells.hessian - reference.hessian).max() < 1e-8


def test_geogram_cells_clip_a_cell_that_reaches_every_side_and_report_hidden_points(needs_geogram):
    t = (np.arange(12) + 0.5) / 12
    near = 0.003
    layer = np.r_[np.c_[t, np.full(12, near)], np.c_[t, np.full(12, 1 - near)],
                  np.c_[np.full(12, near), t], np.c_[np.full(12, 1 - near), t]]
    rng = np.random.default_rng(5)
    points = np.r_[layer, rng.uniform(0.1, 0.9, (10, 2)), [[0.5, 0.5]], [[0.52, 0.5]]]
    weights = np.zeros(len(points))
    weights[-2] = 0.3  # one big cell reaching the four sides
    weights[-1] = -0.5  # hidden
    cells = power_cells(points, weights, backend="geogram")
    reference = power_cells(points, weights)
    assert cells.empty[-1] and cells.areas[-1] == 0 and cells.areas[-2] > 0.5
    np.testing.assert_array_equal(cells.empty, reference.empty)
    np.testing.assert_allclose(cells.areas, reference.areas, atol=1e-10)


@pytest.mark.parametrize("k", [9, 30])
def test_geogram_cells_survive_a_regular_grid_at_equal_weights(needs_geogram, k):
    # cocircular points with equal weights crash geogram 0.0.7's triangulation unless the weights are shifted
    centres = (np.arange(k) + 0.5) / k
    points = np.stack(np.meshgrid(centres, centres), axis=-1).reshape(-1, 2)
    for weights in (np.zeros(len(points)), np.full(len(points), 0.123)):
        cells = power_cells(points, weights, backend="geogram")
        np.testing.assert_allclose(cells.areas, 1 / k**2, rtol=1e-6)
        np.testing.assert_allclose(cells.centroids, points, atol=1e-6)


def test_geogram_cells_that_do_not_tile_the_square_are_recomputed_by_qhull(needs_geogram, monkeypatch):
    import geogram

    real = geogram.Voronoi
    calls = []

    class Incomplete:  # a diagram with some cells' pieces missing
        def __init__(self, *args, **kwargs):
            calls.append(1)
            diagram = real(*args, **kwargs)
            keep = slice(0, len(np.asarray(diagram.t)) - 10)
            self.q, self.t = diagram.q, np.asarray(diagram.t)[keep]
            self.tseed, self.tadj = np.asarray(diagram.tseed)[keep], np.asarray(diagram.tadj)[keep]

    rng = np.random.default_rng(9)
    points = rng.uniform(0.01, 0.99, (200, 2))
    weights = rng.normal(0, 1e-4, 200)
    monkeypatch.setattr(geogram, "Voronoi", Incomplete)
    with pytest.warns(RuntimeWarning, match="do not tile the square, twice"):
        cells = power_cells(points, weights, backend="geogram")
    assert len(calls) == 2
    # Qhull gets geogram's weight shift: the Newton steps on either side of a fallback solve one problem
    reference = power_cells(points, weights + _geogram_jitter(len(points)))
    np.testing.assert_array_equal(cells.areas, reference.areas)
    assert cells.attempts == 2 + reference.attempts  # the two geogram diagrams count


def test_geogram_backend_without_geogram_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "geogram", None)  # as if not installed
    points = np.random.default_rng(1).uniform(0.1, 0.9, (10, 2))
    with pytest.raises(ImportError, match="pip install geogram"):
        power_cells(points, np.zeros(10), backend="geogram")
    assert power_cells(points, np.zeros(10)).areas.sum() == pytest.approx(1)  # the default needs nothing more


def test_geogram_cells_reject_what_it_cannot_triangulate(needs_geogram):
    with pytest.raises(ValueError, match="at least 3"):
        power_cells(np.array([[0.2, 0.5], [0.5, 0.5]]), np.zeros(2), backend="geogram")
    with pytest.raises(ValueError, match="collinear"):
        power_cells(np.array([[0.1, 0.1], [0.5, 0.5], [0.9, 0.9]]), np.zeros(3), backend="geogram")
    with pytest.raises(ValueError, match="backend must be one of"):
        power_cells(np.array([[0.1, 0.1], [0.5, 0.5], [0.9, 0.2]]), np.zeros(3), backend="cgal")


def test_next_trial_step_halves_or_follows_the_secant_of_the_falling_cells():
    from studylib.geometry.transport import _next_trial

    areas = np.array([0.4, 0.4, 0.2])
    assert _next_trial(1.0, areas, np.array([0.41, 0.39, 0.2]), floor=0.1) == 0.5  # only the decrease failed
    # cell 2 fell from 0.2 to 0.0 at tau = 1: its secant reaches the floor 0.1 at tau = 0.5; half of that is tried
    assert _next_trial(1.0, areas, np.array([0.5, 0.5, 0.0]), floor=0.1) == pytest.approx(0.25)
    assert _next_trial(1.0, areas, np.array([0.45, 0.5, 0.05]), floor=0.1) == pytest.approx(1 / 3)
    # never less than an eighth of the rejected step
    assert _next_trial(0.8, areas, np.array([0.5, 0.5, -10.0]), floor=0.1) == pytest.approx(0.1)


def test_solve_transport_random_targets():
    rng = np.random.default_rng(4)
    n = 2000
    points = rng.uniform(0.001, 0.999, (n, 2))
    target = np.exp(rng.uniform(0, 2, n))  # 7x spread of cell areas
    target /= target.sum()
    result = solve_transport(points, target, tol=1e-9)
    assert result.converged and result.iterations < 30
    assert result.residuals[0] > 1  # far from the solution at the start
    assert result.residuals[-1] < 1e-8
    assert min(result.min_area_ratios) > 0  # no cell ever vanished
    assert min(result.step_sizes) < 1  # damping was needed at least once
    check = power_cells(points, result.weights)
    assert abs(check.areas - target).max() / target.min() < 1e-8
    np.testing.assert_allclose(check.centroids, result.centroids)


def grid_disk(k: int):
    """A k x k grid triangulation of the unit square with its boundary loop and corners."""
    x = np.linspace(0, 1, k)
    uv = np.stack(np.meshgrid(x, x), axis=-1).reshape(-1, 2)
    index = np.arange(k * k).reshape(k, k)  # index[row (y), column (x)]
    a, b, c, d = index[:-1, :-1].ravel(), index[:-1, 1:].ravel(), index[1:, 1:].ravel(), index[1:, :-1].ravel()
    faces = np.r_[np.c_[a, b, c], np.c_[a, c, d]]
    boundary = np.r_[index[0, :-1], index[:-1, -1], index[-1, :0:-1], index[:0:-1, 0]]
    corners = np.array([index[0, 0], index[0, -1], index[-1, -1], index[-1, 0]])
    return uv, faces, boundary, corners


def vertex_areas(uv: np.ndarray, faces: np.ndarray) -> np.ndarray:
    areas = np.abs(_signed_areas(uv, faces))
    return np.bincount(faces.ravel(), weights=np.repeat(areas / 3, 3), minlength=len(uv))


def distort(uv: np.ndarray, strength: float = 1.2) -> np.ndarray:
    """Smooth monotone map of the square onto itself (sides to sides) with a gentle twist inside."""
    warped = np.expm1(strength * uv) / np.expm1(strength)
    bump = 0.05 * np.sin(np.pi * warped[:, 0]) * np.sin(np.pi * warped[:, 1])
    return warped + bump[:, None] * np.c_[np.sin(2 * np.pi * warped[:, 1]), -np.sin(2 * np.pi * warped[:, 0])]


def area_shares(uv: np.ndarray, faces: np.ndarray) -> np.ndarray:
    signed = _signed_areas(uv, faces)
    return signed / signed.sum()


def test_area_preserving_map_on_a_distorted_grid():
    k = 40
    grid, faces, boundary, corners = grid_disk(k)
    conformal = distort(grid)
    original_shares = area_shares(grid, faces)
    start = area_shares(conformal, faces) / original_shares
    assert start.min() > 0 and start.max() / start.min() > 8  # ~10x area distortion to undo
    assert np.percentile(start, 5) < 0.5 and np.percentile(start, 95) > 1.5
    targets = vertex_areas(grid, faces)

    result = area_preserving_map(conformal, faces, targets, boundary, corners)
    assert result.converged and result.flipped == 0
    shares = targets / targets.sum()
    assert abs(result.areas - shares).max() / shares.min() < 1e-6
    assert result.residuals[-1] < 1e-6
    ratio = area_shares(result.uv, faces) / original_shares
    assert ratio.min() > 0
    low, high = np.percentile(ratio, [5, 95])
    assert 0.9 <= low and high <= 1.1, (low, high)
    # corners on the corners, the rest of the boundary on its sides in loop order
    np.testing.assert_array_equal(result.uv[corners], [[0, 0], [1, 0], [1, 1], [0, 1]])
    bottom = boundary[: k - 1]
    assert (result.uv[bottom, 1] == 0).all() and (np.diff(result.uv[bottom, 0]) > 0).all()
    left = boundary[3 * (k - 1):]
    assert (result.uv[left, 0] == 0).all() and (np.diff(result.uv[left, 1]) < 0).all()

    again = area_preserving_map(conformal, faces, targets, boundary, corners)
    np.testing.assert_array_equal(result.uv, again.uv)


def test_area_preserving_map_with_geogram_matches_qhull(needs_geogram):
    # a regular grid: cocircular sites at equal (zero) weights at the start, the case geogram cannot take unshifted
    grid, faces, boundary, corners = grid_disk(30)
    conformal = distort(grid)
    targets = vertex_areas(grid, faces)
    fast = area_preserving_map(conformal, faces, targets, boundary, corners, power_diagram="geogram")
    reference = area_preserving_map(conformal, faces, targets, boundary, corners)
    assert fast.converged and fast.flipped == 0
    shares = targets / targets.sum()
    assert abs(fast.areas - shares).max() / shares.min() < 1e-6
    np.testing.assert_allclose(fast.uv, reference.uv, atol=1e-8)
    with pytest.raises(ValueError, match="backend must be one of"):
        area_preserving_map(conformal, faces, targets, boundary, corners, power_diagram="voro++")


def test_area_preserving_map_keeps_clockwise_orientation_and_checks_corners():
    grid, faces, boundary, corners = grid_disk(12)
    mirrored = grid[:, ::-1].copy()  # swap axes: the layout becomes clockwise
    result = area_preserving_map(distort(mirrored), faces, vertex_areas(grid, faces), boundary, corners)
    assert result.flipped == 0 and (_signed_areas(result.uv, faces) < 0).all()
    with pytest.raises(ValueError, match="loop order"):
        area_preserving_map(grid, faces, vertex_areas(grid, faces), boundary, corners[[0, 2, 1, 3]])


def test_flip_repair_untangles_a_displaced_vertex():
    grid, faces, boundary, _ = grid_disk(15)
    interior = np.ones(len(grid), dtype=bool)
    interior[boundary] = False
    tangled = grid.copy()
    centre = 7 * 15 + 7
    tangled[centre] += [0.2, 0.13]  # far past its neighbours
    assert (_signed_areas(tangled, faces) <= 0).sum() > 0
    repaired, flipped = _repair_flips(tangled, faces, interior, 1.0, max_rounds=30)
    assert flipped == 0 and (_signed_areas(repaired, faces) > 0).all()
    np.testing.assert_array_equal(repaired[boundary], grid[boundary])


def test_snap_boundary_puts_vertices_on_their_sides_in_loop_order():
    k = 10
    grid, faces, boundary, corners = grid_disk(k)
    rng = np.random.default_rng(6)
    moved = grid + rng.uniform(-0.08, 0.08, grid.shape)  # off the sides, partly out of order
    snapped = _snap_boundary(moved, grid, boundary, corners)
    np.testing.assert_array_equal(snapped[corners], [[0, 0], [1, 0], [1, 1], [0, 1]])
    sides = [boundary[s * (k - 1): (s + 1) * (k - 1)] for s in range(4)]  # each starts at its corner
    for side, (axis, value, direction) in zip(sides, [(1, 0, 1), (0, 1, 1), (1, 1, -1), (0, 0, -1)]):
        assert (snapped[side, axis] == value).all()
        along = snapped[side, 1 - axis]
        assert (direction * np.diff(along) >= 0).all()
        assert ((along >= 0) & (along <= 1)).all()
    # the same positions, only re-ordered along each side
    np.testing.assert_allclose(np.sort(snapped[sides[0][1:], 0]), np.sort(moved[sides[0][1:], 0].clip(0, 1)))
    np.testing.assert_array_equal(snapped[~np.isin(np.arange(len(grid)), boundary)],
                                  moved[~np.isin(np.arange(len(grid)), boundary)])
