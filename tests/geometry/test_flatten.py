"""Disk preparation and the conformal square map."""

from __future__ import annotations

import numpy as np
import pytest

from studylib.geometry.conformal import conformal_square
from studylib.geometry.disk import DiskError, prepare_disk
from studylib.geometry.distortion import distortion_summary, parcel_area_ratios, signed_areas

from tests.support import grid, icosphere, union_jack


def _cap(subdivisions=4, z=-30.0):
    vertices, faces = icosphere(subdivisions)
    return vertices, faces, vertices[:, 2] > z


def test_planar_square_maps_with_almost_no_distortion():
    vertices, faces = union_jack(21)
    vertices = vertices * 0.37  # any scale
    disk = prepare_disk(vertices, faces)
    assert disk.removed["ears"] == 0
    corners = disk.boundary[np.isin(disk.boundary, [0, 20, 440, 420])]
    square = conformal_square(disk, corners=corners)
    summary = distortion_summary(disk.vertices, disk.faces, square.uv)
    assert summary["flipped"] == 0
    assert summary["mu_mean"] < 1e-6 and abs(square.aspect - 1) < 1e-9
    assert 1 - 1e-6 < summary["area_ratio_p5"] <= summary["area_ratio_p95"] < 1 + 1e-6
    # a square is its own conformal square: the map is the identity up to a symmetry of the square
    scaled = disk.vertices[:, :2] / disk.vertices[:, :2].max()
    symmetries = [scaled, scaled[:, ::-1], 1 - scaled, 1 - scaled[:, ::-1],
                  np.c_[scaled[:, 0], 1 - scaled[:, 1]], np.c_[1 - scaled[:, 0], scaled[:, 1]],
                  np.c_[scaled[:, 1], 1 - scaled[:, 0]], np.c_[1 - scaled[:, 1], scaled[:, 0]]]
    assert min(np.abs(square.uv - s).max() for s in symmetries) < 1e-8


def test_spherical_cap_is_conformal_and_fills_the_square():
    vertices, faces, keep = _cap()
    disk = prepare_disk(vertices, faces, keep)
    square = conformal_square(disk)
    assert square.residuals[-1] < 1e-9 and len(square.residuals) < 15
    uv = square.uv
    assert uv.min() == pytest.approx(0, abs=1e-12) and uv.max() == pytest.approx(1, abs=1e-12)
    np.testing.assert_allclose(uv[square.corners], [[0, 0], [1, 0], [1, 1], [0, 1]], atol=1e-12)
    on_side = np.isclose(uv[disk.boundary], 0, atol=1e-12) | np.isclose(uv[disk.boundary], 1, atol=1e-12)
    assert on_side.any(axis=1).all()  # every boundary vertex lies on a side
    assert (signed_areas(uv, disk.faces) > 0).all()
    summary = distortion_summary(disk.vertices, disk.faces, square.rectangle_uv)
    assert summary["mu_mean"] < 0.03  # conformal up to discretisation: 0.048, 0.024, 0.013 at 3, 4, 5 subdivisions
    coarse = conformal_square(prepare_disk(*_cap(3)))
    assert distortion_summary(*_cap_disk_arrays(3), coarse.rectangle_uv)["mu_mean"] > summary["mu_mean"]
    assert 0.8 < square.aspect < 1.25


def _cap_disk_arrays(subdivisions):
    disk = prepare_disk(*_cap(subdivisions))
    return disk.vertices, disk.faces


def test_same_input_same_map():
    vertices, faces, keep = _cap(2)
    first = conformal_square(prepare_disk(vertices, faces, keep))
    second = conformal_square(prepare_disk(vertices, faces, keep))
    np.testing.assert_array_equal(first.uv, second.uv)
    np.testing.assert_array_equal(first.corners, second.corners)


def test_ears_are_removed():
    vertices, faces = grid(6)
    extra = np.r_[vertices, [[2.5, -1.0, 0.0]]]
    with_ear = np.r_[faces, [[0, 36, 1]]]  # a triangle hanging off the bottom side
    disk = prepare_disk(extra, with_ear)
    assert disk.removed["ears"] >= 1 and 36 not in disk.vertex_index


def test_hole_is_reported_with_its_location():
    vertices, faces = grid(9)
    keep = np.ones(len(vertices), dtype=bool)
    keep[40] = False  # the centre vertex
    with pytest.raises(DiskError, match=r"2 boundary loops: 1 hole\(s\).*holes: .*around \[4\.0, 4\.0, 0\.0\]"):
        prepare_disk(vertices, faces, keep)


def test_handle_is_reported():
    vertices, faces = icosphere(2)
    # cut a disk then glue two boundary regions? Simpler: a torus band with one boundary loop removed.
    n_u, n_v = 12, 6
    angle_u, angle_v = np.meshgrid(np.linspace(0, 2 * np.pi, n_u, endpoint=False),
                                   np.linspace(0, 2 * np.pi, n_v, endpoint=False), indexing="ij")
    torus = np.c_[((3 + np.cos(angle_v)) * np.cos(angle_u)).ravel(), ((3 + np.cos(angle_v)) * np.sin(angle_u)).ravel(),
                  np.sin(angle_v).ravel()]
    index = np.arange(n_u * n_v).reshape(n_u, n_v)
    a, b = index, np.roll(index, -1, axis=0)
    c, d = np.roll(index, -1, axis=1), np.roll(np.roll(index, -1, axis=0), -1, axis=1)
    torus_faces = np.r_[np.c_[a.ravel(), b.ravel(), d.ravel()], np.c_[a.ravel(), d.ravel(), c.ravel()]]
    keep = np.ones(len(torus), dtype=bool)
    keep[0] = False  # a torus with one hole: one boundary loop, one handle
    with pytest.raises(DiskError, match=r"1 handle\(s\)"):
        prepare_disk(torus, torus_faces, keep)


def test_components_are_reduced_to_the_largest_and_non_manifold_edges_fail():
    vertices, faces = grid(6)
    small_v, small_f = grid(3)
    both = np.r_[vertices, small_v + [20, 0, 0]]
    with pytest.raises(DiskError, match="several components: the largest has 36 vertices and the others 9"):
        prepare_disk(both, np.r_[faces, small_f + len(vertices)])  # 9 of 36: too large to be an island
    disk = prepare_disk(both, np.r_[faces, small_f + len(vertices)], max_dropped_fraction=0.3)
    assert disk.removed["small components"] == 9
    assert disk.removed["ears"] == 2 and len(disk.vertices) == 34  # this grid's two one-triangle corners
    fin = np.r_[vertices, [[1.5, 1.5, 2.0], [1.5, 1.0, 3.0]]]
    # a closed pocket of triangles on interior edge (7, 8): the edge is then in four triangles
    fin_faces = np.r_[faces, [[7, 8, 36], [8, 7, 37], [7, 36, 37], [8, 37, 36]]]
    with pytest.raises(DiskError, match="non-manifold"):
        prepare_disk(fin, fin_faces)


def test_closed_surface_and_empty_mask():
    vertices, faces = icosphere(1)
    with pytest.raises(DiskError, match="closed surface"):
        prepare_disk(vertices, faces)
    with pytest.raises(DiskError, match="no triangle"):
        prepare_disk(vertices, faces, np.zeros(len(vertices), dtype=bool))


def test_parcel_area_ratios_are_one_for_the_identity():
    vertices, faces = grid(11)
    labels = (vertices[:, 0] > 5).astype(int) + 1
    ratios = parcel_area_ratios(vertices, faces, vertices[:, :2], labels, names={1: "west", 2: "east"})
    np.testing.assert_allclose(ratios["ratio"], 1.0)
    assert list(ratios["name"]) == ["west", "east"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_intrinsic_delaunay_flips_rechecking_only_flipped_faces_give_a_delaunay_mesh(monkeypatch, seed):
    from studylib.geometry import conformal

    vertices, faces = union_jack(16)
    rng = np.random.default_rng(seed)
    vertices[:, :2] += rng.uniform(-0.3, 0.3, size=(len(vertices), 2))
    n = len(vertices)
    u = rng.normal(scale=0.2, size=n)  # stronger scalings can call for parallel edges, which edge codes cannot pair
    log_base = np.log(conformal._edge_lengths(vertices, faces))
    paired = []
    pair_slots = conformal._pair_slots
    monkeypatch.setattr(conformal, "_pair_slots", lambda f, slots, twin, n: (paired.append(len(slots)),
                                                                                 pair_slots(f, slots, twin, n)))
    flipped, flipped_log, lengths, twin = conformal._delaunay(faces, log_base, u, n)
    assert (flipped != faces).any(axis=1).sum() > 20
    assert len(paired) >= 3 and max(paired[1:]) < faces.size  # passes after the first re-paired a few slots only
    np.testing.assert_allclose(lengths, conformal._scaled_lengths(flipped, flipped_log, u), rtol=1e-12)
    fresh = np.full(faces.size, -1)
    pair_slots(flipped, np.arange(faces.size), fresh, n)
    np.testing.assert_array_equal(twin, fresh)  # the updated pairing is the mesh's
    cot = conformal._cotangents(lengths).ravel()
    interior = np.flatnonzero(fresh >= 0)
    assert (cot[interior] + cot[fresh[interior]] >= -1e-12).all()  # every interior edge is Delaunay
    again = conformal._delaunay(flipped, flipped_log, u, n, twin)  # with the pairing handed on: nothing left to flip
    np.testing.assert_array_equal(again[0], flipped)
    np.testing.assert_array_equal(again[3], twin)
