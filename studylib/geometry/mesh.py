"""Topology of triangle meshes given as plain arrays.

``vertices`` is an ``(n, 3)`` float array and ``faces`` an ``(m, 3)`` integer
array of vertex indices. Everything is vectorised (sparse matrices, no loops
over vertices).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from .sparse import mesh_graph

__all__ = ["MeshTopology", "contains", "distinct", "fill_missing", "mesh_topology", "signed_areas", "submesh",
           "triangle_areas", "vertex_adjacency"]


@dataclass(frozen=True)
class MeshTopology:
    """Counts that decide whether a mesh can be mapped to a square (a disk: ``is_disk``)."""

    vertices: int
    faces: int
    edges: int
    euler_characteristic: int
    components: int
    boundary_edges: int
    boundary_loops: int
    nonmanifold_edges: int
    isolated_vertices: int

    @property
    def is_disk(self) -> bool:
        """One component, one boundary loop, manifold edges, Euler characteristic 1."""
        return (
            self.components == 1
            and self.boundary_loops == 1
            and self.nonmanifold_edges == 0
            and self.isolated_vertices == 0
            and self.euler_characteristic == 1
        )


def _check(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces)
    if vertices.ndim != 2 or vertices.shape[1] != 3:
        raise ValueError(f"vertices must have shape (n, 3), got {vertices.shape}")
    if faces.ndim != 2 or faces.shape[1] != 3 or not np.issubdtype(faces.dtype, np.integer):
        raise ValueError(f"faces must be an (m, 3) integer array, got shape {faces.shape} and dtype {faces.dtype}")
    if faces.size and (faces.min() < 0 or faces.max() >= len(vertices)):
        raise ValueError(f"faces index vertices outside 0..{len(vertices) - 1}")
    return vertices, faces.astype(np.int64)


def _count_components(n: int, edges: np.ndarray) -> int:
    graph = sp.coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n, n))
    return connected_components(graph, directed=False)[0]


def distinct(values: np.ndarray) -> np.ndarray:
    """Sorted distinct values of an integer array.

    By sorting: NumPy 2.4's ``np.unique`` hashes when it returns the values only, ~100x slower than a sort on the
    10^5-10^6 int64 edge codes of a mesh.
    """
    values = np.sort(np.asarray(values).ravel())
    return values[np.r_[True, values[1:] != values[:-1]]] if len(values) else values


def contains(sorted_values: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Whether each of ``values`` is in ``sorted_values`` (sorted ascending), by binary search."""
    if len(sorted_values) == 0:
        return np.zeros(np.shape(values), dtype=bool)
    position = np.searchsorted(sorted_values, values).clip(max=len(sorted_values) - 1)
    return sorted_values[position] == values


def mesh_topology(vertices: np.ndarray, faces: np.ndarray) -> MeshTopology:
    """Count vertices, edges, faces, components, boundary loops and non-manifold edges.

    Components and loops count only vertices used by a face; unused vertices are
    reported as ``isolated_vertices``.
    """
    vertices, faces = _check(vertices, faces)
    n = len(vertices)
    half_edges = np.sort(faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    codes, uses = np.unique(half_edges[:, 0] * n + half_edges[:, 1], return_counts=True)  # sorts (with counts)
    edges = np.column_stack([codes // n, codes % n])
    used = np.flatnonzero(np.bincount(faces.ravel(), minlength=n))
    boundary = edges[uses == 1]
    if len(boundary):
        # Boundary vertices each touch two boundary edges on a manifold; count loops as components of that graph.
        boundary_vertices, relabelled = np.unique(boundary, return_inverse=True)
        loops = _count_components(len(boundary_vertices), relabelled.reshape(-1, 2))
    else:
        loops = 0
    components = _count_components(len(vertices), edges) - (len(vertices) - len(used))
    return MeshTopology(
        vertices=len(used),
        faces=len(faces),
        edges=len(edges),
        euler_characteristic=int(len(used) - len(edges) + len(faces)),
        components=int(components),
        boundary_edges=int(len(boundary)),
        boundary_loops=int(loops),
        nonmanifold_edges=int((uses > 2).sum()),
        isolated_vertices=int(len(vertices) - len(used)),
    )


def submesh(vertices: np.ndarray, faces: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The faces whose three vertices are all kept, re-indexed to the kept vertices.

    Parameters
    ----------
    vertices, faces : ndarray
        The mesh.
    keep : ndarray of bool, shape (n,)
        Vertices to keep (e.g. the cortex mask, ``False`` on the medial wall).

    Returns
    -------
    vertices : ndarray, shape (k, 3)
    faces : ndarray, shape (f, 3)
    vertex_index : ndarray, shape (k,)
        Index in the input mesh of each kept vertex.
    """
    vertices, faces = _check(vertices, faces)
    keep = np.asarray(keep, dtype=bool)
    if keep.shape != (len(vertices),):
        raise ValueError(f"keep must be a boolean mask of shape ({len(vertices)},), got {keep.shape}")
    vertex_index = np.flatnonzero(keep)
    new_index = np.full(len(vertices), -1, dtype=np.int64)
    new_index[vertex_index] = np.arange(len(vertex_index))
    kept_faces = faces[keep[faces].all(axis=1)]
    return vertices[vertex_index], new_index[kept_faces], vertex_index


def vertex_adjacency(n_vertices: int, faces: np.ndarray) -> sp.csr_matrix:
    """Symmetric 0/1 sparse matrix (float64) of the mesh's edges."""
    return mesh_graph(np.asarray(faces, dtype=np.int64), n_vertices).astype(np.float64)


def fill_missing(values: np.ndarray, faces: np.ndarray, missing: np.ndarray, max_rounds: int = 1000) -> np.ndarray:
    """Fill ``values[missing]`` by repeated averaging of already-known mesh neighbours.

    Each round gives every missing vertex that touches a known one (not missing and finite)
    the mean of its known neighbours, growing inward from the edge of the gap. Non-finite
    vertices outside ``missing`` stay as they are and never count as known.

    Raises
    ------
    ValueError
        When a missing vertex has no path to a known one.
    """
    values = np.array(values, dtype=np.float64)
    missing = np.array(missing, dtype=bool)
    adjacency = vertex_adjacency(len(values), faces)
    for _ in range(max_rounds):
        if not missing.any():
            return values
        known = ~missing & np.isfinite(values)
        counts = adjacency @ known.astype(np.float64)
        sums = adjacency @ np.where(known, values, 0.0)
        reachable = missing & (counts > 0)
        if not reachable.any():
            break
        values[reachable] = sums[reachable] / counts[reachable]
        missing &= ~reachable
    raise ValueError(f"{int(missing.sum())} vertices have no path to a vertex with a value")


def triangle_areas(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area of each triangle of a 3D mesh."""
    vertices = np.asarray(vertices, dtype=np.float64)
    return 0.5 * np.linalg.norm(np.cross(vertices[faces[:, 1]] - vertices[faces[:, 0]],
                                         vertices[faces[:, 2]] - vertices[faces[:, 0]]), axis=1)


def signed_areas(uv: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Signed area of each triangle of a 2D map (positive: counter-clockwise)."""
    e1 = uv[faces[:, 1]] - uv[faces[:, 0]]
    e2 = uv[faces[:, 2]] - uv[faces[:, 0]]
    return 0.5 * (e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0])
