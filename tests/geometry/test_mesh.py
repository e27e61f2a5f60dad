from __future__ import annotations

import numpy as np
import pytest

from studylib.geometry.mesh import contains, distinct, mesh_topology, submesh
from tests.support import grid


def tetrahedron() -> tuple[np.ndarray, np.ndarray]:
    vertices = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=float)
    faces = np.array([[0, 2, 1], [0, 1, 3], [1, 2, 3], [0, 3, 2]])
    return vertices, faces


def test_grid_is_a_disk():
    topology = mesh_topology(*grid(5))
    assert topology.euler_characteristic == 1
    assert (topology.components, topology.boundary_loops, topology.nonmanifold_edges) == (1, 1, 0)
    assert topology.boundary_edges == 16
    assert topology.is_disk


def test_closed_surface_is_not_a_disk():
    topology = mesh_topology(*tetrahedron())
    assert (topology.euler_characteristic, topology.boundary_loops) == (2, 0)
    assert not topology.is_disk


def test_hole_gives_two_boundary_loops():
    vertices, faces = grid(5)
    keep = np.ones(len(vertices), bool)
    keep[12] = False  # the centre vertex: removing it opens a hole
    topology = mesh_topology(*submesh(vertices, faces, keep)[:2])
    assert (topology.boundary_loops, topology.euler_characteristic, topology.components) == (2, 0, 1)
    assert not topology.is_disk


def test_two_components_and_non_manifold_edge():
    v1, f1 = grid(3)
    vertices = np.r_[v1, v1 + [10, 0, 0]]
    faces = np.r_[f1, f1 + len(v1)]
    assert mesh_topology(vertices, faces).components == 2
    fan = np.array([[0, 1, 2], [0, 1, 3], [0, 1, 4]])  # three faces on edge (0, 1)
    topology = mesh_topology(np.random.default_rng(0).normal(size=(5, 3)), fan)
    assert topology.nonmanifold_edges == 1
    assert not topology.is_disk


def test_unused_vertices_are_reported():
    vertices, faces = grid(3)
    topology = mesh_topology(np.r_[vertices, [[9.0, 9.0, 9.0]]], faces)
    assert topology.isolated_vertices == 1 and topology.vertices == 9 and topology.components == 1


def test_submesh_reindexes_and_keeps_original_indices():
    vertices, faces = grid(3)
    keep = np.ones(9, bool)
    keep[0] = False
    kept_vertices, kept_faces, index = submesh(vertices, faces, keep)
    np.testing.assert_array_equal(index, np.arange(1, 9))
    np.testing.assert_array_equal(kept_vertices, vertices[1:])
    assert kept_faces.max() < 8 and len(kept_faces) == len(faces) - 2  # vertex 0 touched two faces
    np.testing.assert_array_equal(index[kept_faces], faces[~np.isin(faces, 0).any(axis=1)])


@pytest.mark.parametrize(
    ("vertices", "faces", "message"),
    [
        (np.zeros((3, 2)), np.array([[0, 1, 2]]), "vertices must have shape"),
        (np.zeros((3, 3)), np.array([[0, 1, 3]]), "outside 0..2"),
        (np.zeros((3, 3)), np.array([[0.0, 1.0, 2.0]]), "integer array"),
    ],
)
def test_bad_arrays_are_rejected(vertices, faces, message):
    with pytest.raises(ValueError, match=message):
        mesh_topology(vertices, faces)


def test_distinct_and_contains_agree_with_numpy():
    rng = np.random.default_rng(0)
    values = rng.integers(0, 10**12, 5000)
    values[::7] = values[0]  # repeats
    np.testing.assert_array_equal(distinct(values), np.unique(values))
    assert distinct(np.array([], dtype=np.int64)).size == 0
    queries = np.r_[values[:100], rng.integers(0, 10**12, 100), [-1, 10**13]]
    np.testing.assert_array_equal(contains(distinct(values), queries), np.isin(queries, values))
    assert not contains(np.array([], dtype=np.int64), queries).any()
