from __future__ import annotations

import numpy as np
import pytest

import studylib.raster as raster_module
from studylib.raster import Rasterizer, bilinear_operator, pixel_centres

SIDE = 41  # vertices per side of the test grids


def grid_mesh(nside: int = SIDE, jitter: float = 0.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Regular triangulation of the unit square, 2 triangles per cell; interior vertices optionally jittered.

    Faces ``0 .. cells-1`` are the lower-right triangles ``(a, b, d)``, faces ``cells ..`` the upper-left
    ``(a, d, c)``: the two share the cell's diagonal ``a-d``.
    """
    t = np.linspace(0.0, 1.0, nside)
    u, v = np.meshgrid(t, t)
    uv = np.column_stack([u.ravel(), v.ravel()])
    if jitter:
        h = 1.0 / (nside - 1)
        inner = (uv > 0).all(axis=1) & (uv < 1).all(axis=1)
        uv[inner] += np.random.default_rng(seed).uniform(-jitter * h, jitter * h, (int(inner.sum()), 2))
    i = np.arange(nside - 1)
    a = (i[:, None] * nside + i[None, :]).ravel()
    b, c, d = a + 1, a + nside, a + nside + 1
    faces = np.concatenate([np.column_stack([a, b, d]), np.column_stack([a, d, c])]).astype(np.int64)
    corners = uv[faces]
    e1, e2 = corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]
    assert (e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0] > 0).all()  # no flipped triangles
    return uv, faces


MESHES = {"regular": grid_mesh(), "jittered": grid_mesh(jitter=0.3)}


@pytest.fixture(params=sorted(MESHES))
def mesh(request):
    return MESHES[request.param]


def centres_of(shape):
    """Pixel-centre coordinates computed independently of the module: u follows columns, v follows rows."""
    height, width = shape
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    return (cols + 0.5) / width, (rows + 0.5) / height


def linear(u, v):
    return 0.7 * u - 1.3 * v + 0.25


def smooth(u, v):
    return np.sin(3 * u) * np.cos(2 * v)


@pytest.mark.parametrize("size", [32, 224, (48, 64)])
def test_linear_function_is_exact_at_pixel_centres(mesh, size):
    uv, faces = mesh
    raster = Rasterizer(uv, faces, size)
    image = raster.to_image(linear(uv[:, 0], uv[:, 1]))
    expected_shape = (size, size) if isinstance(size, int) else size
    assert image.shape == expected_shape == raster.shape
    u, v = centres_of(expected_shape)
    np.testing.assert_allclose(image, linear(u, v), atol=1e-6, rtol=0)
    # Orientation: columns follow u, row 0 is at v near 0.
    image_u = raster.to_image(uv[:, 0])
    assert (np.diff(image_u, axis=1) > 0).all() and np.allclose(np.diff(image_u, axis=0), 0)
    assert raster.to_image(uv[:, 1])[0, 0] < 1.0 / expected_shape[0]


@pytest.mark.parametrize("size", [32, 224, (48, 64)])
def test_operator_rows_are_weights_and_no_pixel_is_empty(mesh, size):
    uv, faces = mesh
    raster = Rasterizer(uv, faces, size)
    height, width = raster.shape
    operator = raster.operator
    assert operator.format == "csr" and operator.shape == (height * width, len(uv))
    assert raster.n_vertices == len(uv)
    assert np.isfinite(operator.data).all() and (operator.data >= 0).all()
    assert (np.diff(operator.indptr) > 0).all()  # no empty pixel
    np.testing.assert_allclose(np.asarray(operator.sum(axis=1)).ravel(), 1.0, atol=1e-12)
    assert not raster.pixel_outside.any()
    triangle = raster.pixel_triangle
    assert triangle.shape == (height * width,) and triangle.min() >= 0 and triangle.max() < len(faces)
    # The recorded triangle and coordinates rebuild each pixel centre (the centre lies in that triangle).
    rebuilt = np.einsum("pk,pkd->pd", raster.pixel_barycentric, uv[faces[triangle]])
    np.testing.assert_allclose(rebuilt, pixel_centres(raster.shape), atol=1e-12)
    assert not np.isnan(raster.to_image(np.random.default_rng(1).standard_normal(len(uv)))).any()


def test_shared_edges_go_to_the_first_triangle():
    uv, faces = MESHES["regular"]
    raster = Rasterizer(uv, faces, 80)  # pixel centres with r == c lie exactly on the cells' diagonals
    diagonal = np.arange(80) * 80 + np.arange(80)
    cells = (SIDE - 1) ** 2
    assert (raster.pixel_triangle[diagonal] < cells).all()  # (a, b, d) comes before (a, d, c)


def test_gaps_take_the_nearest_triangle():
    uv, faces = MESHES["jittered"]
    shrunk = 0.5 + 0.97 * (uv - 0.5)  # the mesh no longer reaches the outer pixel centres
    raster = Rasterizer(shrunk, faces, 64)
    assert raster.pixel_outside.any()
    operator = raster.operator
    assert (np.diff(operator.indptr) > 0).all() and (operator.data >= 0).all()
    np.testing.assert_allclose(np.asarray(operator.sum(axis=1)).ravel(), 1.0, atol=1e-12)
    image = raster.to_image(linear(shrunk[:, 0], shrunk[:, 1]))
    assert np.isfinite(image).all()
    # A linear function takes, outside the mesh, its value at the closest point of the (square) mesh.
    u, v = centres_of(raster.shape)
    lo, hi = shrunk.min(axis=0), shrunk.max(axis=0)
    np.testing.assert_allclose(image, linear(np.clip(u, lo[0], hi[0]), np.clip(v, lo[1], hi[1])), atol=1e-9)


def test_batches_equal_stacked_single_calls(mesh):
    uv, faces = mesh
    raster = Rasterizer(uv, faces, (48, 64))
    rng = np.random.default_rng(2)
    values = rng.standard_normal((11, len(uv)))  # not a multiple of the chunk size
    images = raster.to_image(values)
    assert images.shape == (11, 48, 64) and images.dtype == np.float64
    np.testing.assert_allclose(images, np.stack([raster.to_image(row) for row in values]), atol=1e-13)
    assert raster.to_image(values[:1]).shape == (1, 48, 64)
    single32 = raster.to_image(values.astype(np.float32))
    assert single32.dtype == np.float32
    np.testing.assert_allclose(single32, images, atol=1e-5)
    back = raster.to_vertices(images)
    assert back.shape == (11, len(uv))
    np.testing.assert_allclose(back, np.stack([raster.to_vertices(image) for image in images]), atol=1e-13)
    assert raster.to_vertices(images.astype(np.float32)).dtype == np.float32
    assert raster.to_image(np.ones(len(uv), dtype=np.int64)).dtype == np.float64


def test_round_trip_recovers_a_smooth_function(mesh):
    uv, faces = mesh
    f = smooth(uv[:, 0], uv[:, 1])
    raster = Rasterizer(uv, faces, 224)
    back = raster.to_vertices(raster.to_image(f))
    assert back.shape == f.shape
    assert abs(back - f).max() < 1e-2
    # The plain normalised adjoint averages at the pixels' weighted centroid: worse at the boundary.
    adjoint = Rasterizer(uv, faces, 224, inverse="adjoint")
    assert abs(adjoint.to_vertices(adjoint.to_image(f)) - f).max() > abs(back - f).max()
    assert (adjoint.inverse_operator.data >= 0).all()


@pytest.mark.parametrize("inverse", ["local-linear", "adjoint"])
@pytest.mark.parametrize("size", [8, 32, 224])
def test_constant_image_gives_constant_vertices(mesh, inverse, size):
    uv, faces = mesh
    raster = Rasterizer(uv, faces, size, inverse=inverse)
    assert raster.inverse_operator.shape == (len(uv), size * size)
    back = raster.to_vertices(np.full((size, size), 3.7))
    assert abs(back - 3.7).max() < 1e-12


def test_to_vertices_reproduces_linear_images_and_falls_back_to_bilinear(mesh):
    uv, faces = mesh
    size = 48  # about a pixel per triangle: some vertices touch too few pixel centres for a plane fit
    raster = Rasterizer(uv, faces, size)
    assert raster.vertex_fallback.any() and not raster.vertex_fallback.all()
    u, v = centres_of(raster.shape)
    back = raster.to_vertices(linear(u, v))
    # Plane fits are exact everywhere; bilinear sampling inside the pixel centres' range (clamped outside).
    inside = ((uv >= 0.5 / size) & (uv <= 1 - 0.5 / size)).all(axis=1)
    exact = ~raster.vertex_fallback | inside
    np.testing.assert_allclose(back[exact], linear(uv[exact, 0], uv[exact, 1]), atol=1e-9)
    # Fallback vertices are exactly bilinear samples, computed here independently of the module.
    image = np.random.default_rng(3).standard_normal((size, size))
    x = np.clip(uv[:, 0] * size - 0.5, 0, size - 1)
    y = np.clip(uv[:, 1] * size - 0.5, 0, size - 1)
    x0, y0 = np.minimum(np.floor(x).astype(int), size - 2), np.minimum(np.floor(y).astype(int), size - 2)
    fx, fy = x - x0, y - y0
    expected = (image[y0, x0] * (1 - fx) * (1 - fy) + image[y0, x0 + 1] * fx * (1 - fy)
                + image[y0 + 1, x0] * (1 - fx) * fy + image[y0 + 1, x0 + 1] * fx * fy)
    fallback = raster.vertex_fallback
    np.testing.assert_allclose(raster.to_vertices(image)[fallback], expected[fallback], atol=1e-12)
    np.testing.assert_allclose(bilinear_operator(uv, (size, size)) @ image.ravel(), expected, atol=1e-12)


def test_vertices_without_pixels_use_bilinear_under_the_plain_adjoint():
    uv, faces = MESHES["jittered"]
    raster = Rasterizer(uv, faces, 8, inverse="adjoint")
    weight = np.asarray(raster.operator.sum(axis=0)).ravel()
    np.testing.assert_array_equal(raster.vertex_fallback, weight == 0)
    assert raster.vertex_fallback.any()


@pytest.mark.parametrize("size", [32, (48, 64)])
def test_paper_average(mesh, size):
    uv, faces = mesh
    raster = Rasterizer(uv, faces, size, method="paper-average")
    height, width = raster.shape
    operator = raster.operator
    np.testing.assert_allclose(np.asarray(operator.sum(axis=1)).ravel(), 1.0, atol=1e-12)
    assert (np.diff(operator.indptr) > 0).all() and (operator.data >= 0).all()
    values = np.random.default_rng(4).standard_normal(len(uv))
    image = raster.to_image(values).ravel()
    pixel = (np.clip(np.floor(uv[:, 1] * height), 0, height - 1).astype(int) * width
             + np.clip(np.floor(uv[:, 0] * width), 0, width - 1).astype(int))
    np.testing.assert_array_equal(raster.vertex_pixels(), pixel)
    count = np.bincount(pixel, minlength=height * width)
    assert (count == 1).any()
    if mesh is MESHES["jittered"]:  # every kind of pixel occurs: no vertex, one, several
        assert (count == 0).any() and (count > 1).any()
    single = count[pixel] == 1
    np.testing.assert_allclose(image[pixel[single]], values[single], atol=1e-12)
    mean = np.bincount(pixel, weights=values, minlength=height * width)[count > 0] / count[count > 0]
    np.testing.assert_allclose(image[count > 0], mean, atol=1e-12)
    # Pixels without a vertex keep the barycentric value.
    plain = Rasterizer(uv, faces, size).to_image(values).ravel()
    np.testing.assert_allclose(image[count == 0], plain[count == 0], atol=1e-12)
    assert not np.allclose(image, plain)


def test_bad_input_is_refused_with_helpful_messages():
    uv, faces = MESHES["regular"]
    n = len(uv)
    with pytest.raises(ValueError, match=r"uv must have shape \(n, 2\).*\(1681, 3\)"):
        Rasterizer(np.column_stack([uv, uv[:, :1]]), faces, 32)
    with pytest.raises(ValueError, match="faces must be an"):
        Rasterizer(uv, faces[:, :2], 32)
    with pytest.raises(ValueError, match="outside 0..1680"):
        Rasterizer(uv, faces + 1, 32)
    with pytest.raises(ValueError, match="size must be"):
        Rasterizer(uv, faces, (32, 32, 3))
    with pytest.raises(ValueError, match="positive"):
        Rasterizer(uv, faces, 0)
    with pytest.raises(ValueError, match="method must be one of"):
        Rasterizer(uv, faces, 32, method="nearest")
    raster = Rasterizer(uv, faces, 32)
    with pytest.raises(ValueError, match=r"values must have shape \(1681,\) or \(k, 1681\).*\(1680,\)"):
        raster.to_image(np.zeros(n - 1))
    with pytest.raises(ValueError, match=r"got \(2, 3, 1681\)"):
        raster.to_image(np.zeros((2, 3, n)))
    values = np.zeros((3, n))
    values[0, [5, 9]] = np.nan
    values[2, 5] = np.nan
    with pytest.raises(ValueError, match=r"2 of 1681 vertices are NaN \(in 2 of 3 maps\).*medial wall"):
        raster.to_image(values)
    with pytest.raises(ValueError, match=r"images must have shape \(32, 32\)"):
        raster.to_vertices(np.zeros((32, 31)))
    with pytest.raises(ValueError, match="NaN"):
        raster.to_vertices(np.full((32, 32), np.nan))


def test_builds_are_deterministic_and_independent_of_chunking(monkeypatch):
    uv, faces = MESHES["jittered"]
    first = Rasterizer(uv, faces, (48, 64))
    second = Rasterizer(uv.copy(), faces.copy(), (48, 64))
    monkeypatch.setattr(raster_module, "_CANDIDATES_PER_CHUNK", 500)  # many chunks of triangles
    chunked = Rasterizer(uv, faces, (48, 64))
    for other in (second, chunked):
        for name in ("operator", "inverse_operator"):
            a, b = getattr(first, name), getattr(other, name)
            np.testing.assert_array_equal(a.indptr, b.indptr)
            np.testing.assert_array_equal(a.indices, b.indices)
            np.testing.assert_array_equal(a.data, b.data)
        np.testing.assert_array_equal(first.pixel_triangle, other.pixel_triangle)


def test_inverse_weights_stay_bounded_on_an_irregular_delaunay_mesh():
    from scipy.spatial import Delaunay

    rng = np.random.default_rng(0)
    t = np.linspace(0.0, 1.0, 31)[:-1]
    sides = np.concatenate([np.column_stack([t, 0 * t]), np.column_stack([1 + 0 * t, t]),
                            np.column_stack([1 - t, 1 + 0 * t]), np.column_stack([0 * t, 1 - t])])
    uv = np.concatenate([sides, rng.uniform(0.01, 0.99, (1500, 2))])
    faces = Delaunay(uv).simplices
    raster = Rasterizer(uv, faces, 48)  # here an uncapped plane fit has a vertex with sum |w| of 4.4
    gain = np.asarray(abs(raster.inverse_operator).sum(axis=1)).ravel()
    assert gain.max() <= 4.0 + 1e-9
    u, v = centres_of(raster.shape)
    np.testing.assert_allclose(raster.to_image(linear(uv[:, 0], uv[:, 1])), linear(u, v), atol=1e-6)
    assert abs(raster.to_vertices(np.full(raster.shape, -2.0)) + 2.0).max() < 1e-12
