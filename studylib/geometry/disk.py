"""Disk preparation: cut the medial wall and check that what remains can be mapped to a square.

A hemisphere with its medial wall removed should be a topological disk (one component, one boundary
loop, manifold, Euler characteristic 1). :func:`prepare_disk` keeps the largest connected piece (small
islands only: a mask that splits the surface into large pieces is an error),
removes boundary "ears" (vertices in a single triangle: pinned to a straight side they collapse), and
raises :class:`DiskError` naming what is wrong (holes, handles, non-manifold edges or vertices, several
components) and where, when the result is not a disk.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from .mesh import contains, mesh_topology, submesh

__all__ = ["Disk", "DiskError", "boundary_loop", "prepare_disk"]


class DiskError(ValueError):
    """The mesh (after cutting) is not a topological disk; the message says why and where."""


@dataclass(frozen=True)
class Disk:
    """A mesh that is a topological disk, with its boundary loop.

    Attributes
    ----------
    vertices : ndarray, shape (k, 3)
    faces : ndarray, shape (f, 3)
    vertex_index : ndarray, shape (k,)
        Index of each kept vertex in the input mesh.
    boundary : ndarray
        Boundary vertices (indices into ``vertices``) in loop order, following the faces' orientation.
    removed : dict
        How many vertices each preparation step removed (``outside mask``, ``small components``, ``ears``).
    """

    vertices: np.ndarray
    faces: np.ndarray
    vertex_index: np.ndarray
    boundary: np.ndarray
    removed: dict


def _boundary_half_edges(faces: np.ndarray) -> np.ndarray:
    """Directed edges (i, j) of faces whose reverse (j, i) is in no face."""
    half = faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
    n = int(faces.max()) + 1
    codes = half[:, 0] * n + half[:, 1]
    reverse = half[:, 1] * n + half[:, 0]
    return half[~contains(np.sort(reverse), codes)]


def boundary_loop(faces: np.ndarray) -> np.ndarray:
    """The boundary vertices of a disk in loop order (the direction the faces' orientation gives).

    Raises
    ------
    DiskError
        When the boundary is not a single simple loop.
    """
    half = _boundary_half_edges(np.asarray(faces, dtype=np.int64))
    if len(half) == 0:
        raise DiskError("the mesh has no boundary (a closed surface): remove the medial wall first")
    starts, counts = np.unique(half[:, 0], return_counts=True)
    if (counts > 1).any():
        pinch = starts[counts > 1][:5].tolist()
        raise DiskError(f"boundary passes through vertices {pinch} more than once (non-manifold vertices)")
    following = dict(zip(half[:, 0].tolist(), half[:, 1].tolist()))
    loop = [int(half[0, 0])]
    for _ in range(len(half)):
        nxt = following[loop[-1]]
        if nxt == loop[0]:
            break
        loop.append(nxt)
    if len(loop) != len(half):
        raise DiskError(f"the boundary has several loops ({len(loop)} of its {len(half)} edges form the first): "
                        "the mask leaves holes")
    return np.asarray(loop, dtype=np.int64)


def _largest_component(faces: np.ndarray, n: int) -> np.ndarray:
    """Boolean mask of vertices in the largest edge-connected component (by face count)."""
    edges = faces[:, [0, 1, 1, 2]].reshape(-1, 2)
    graph = sp.coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    face_counts = np.bincount(labels[faces[:, 0]], minlength=labels.max() + 1)
    return labels == np.argmax(face_counts)


def _ears(faces: np.ndarray, n: int) -> np.ndarray:
    """Boundary vertices that belong to a single face."""
    incidence = np.bincount(faces.ravel(), minlength=n)
    half = _boundary_half_edges(faces)
    on_boundary = np.zeros(n, dtype=bool)
    on_boundary[half.ravel()] = True
    return np.flatnonzero(on_boundary & (incidence == 1))


def _describe(vertices: np.ndarray, faces: np.ndarray) -> str:
    topology = mesh_topology(vertices, faces)
    problems = []
    if topology.components > 1:
        problems.append(f"{topology.components} separate components")
    if topology.nonmanifold_edges:
        half = np.sort(faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
        edges, uses = np.unique(half, axis=0, return_counts=True)
        problems.append(f"{topology.nonmanifold_edges} non-manifold edges (in 3+ triangles), e.g. vertex pairs "
                        f"{edges[uses > 2][:3].tolist()}")
    if topology.boundary_loops == 0:
        problems.append("no boundary: a closed surface (nothing was cut)")
    elif topology.boundary_loops > 1:
        problems.append(f"{topology.boundary_loops} boundary loops: {topology.boundary_loops - 1} hole(s) inside "
                        "the kept region")
    genus = (2 - topology.euler_characteristic - topology.boundary_loops) // 2 if topology.components == 1 else 0
    if genus > 0:
        problems.append(f"{genus} handle(s) (Euler characteristic {topology.euler_characteristic} with "
                        f"{topology.boundary_loops} boundary loop(s))")
    return "; ".join(problems) or f"topology {topology}"


def _hole_locations(vertices: np.ndarray, faces: np.ndarray) -> str:
    half = _boundary_half_edges(faces)
    n = len(vertices)
    graph = sp.coo_matrix((np.ones(len(half)), (half[:, 0], half[:, 1])), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    loops = np.unique(labels[half[:, 0]])
    sizes = sorted(((int((labels[half[:, 0]] == lab).sum()), lab) for lab in loops), reverse=True)
    described = []
    for size, lab in sizes[1:4]:  # the largest loop is the outer boundary
        members = np.unique(half[labels[half[:, 0]] == lab].ravel())
        centre = vertices[members].mean(axis=0).round(1).tolist()
        described.append(f"{size} edges around {centre} (vertex {int(members[0])})")
    return "; holes: " + ", ".join(described) if described else ""


def prepare_disk(vertices: np.ndarray, faces: np.ndarray, keep: np.ndarray | None = None,
                 max_ear_rounds: int = 100, max_dropped_fraction: float = 0.05) -> Disk:
    """Cut a mesh to the vertices in ``keep`` and make it a disk ready for mapping.

    Parameters
    ----------
    vertices : ndarray, shape (n, 3)
    faces : ndarray, shape (m, 3)
    keep : ndarray of bool, shape (n,), optional
        Vertices to keep (the cortex mask); all by default.
    max_ear_rounds : int
        Ear removal repeats until no ear is left (removing one can make another).
    max_dropped_fraction : float
        Smaller components (islands of the mask) are dropped while together they are at most this fraction of
        the largest one; beyond it the mask is taken to be wrong and a :class:`DiskError` says so.

    Raises
    ------
    DiskError
        When the result is not a disk: holes, handles, non-manifold edges or several components remain.
    """
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    keep = np.ones(len(vertices), dtype=bool) if keep is None else np.asarray(keep, dtype=bool)
    removed = {"outside mask": int((~keep).sum())}
    cut_vertices, cut_faces, index = submesh(vertices, faces, keep)
    if len(cut_faces) == 0:
        raise DiskError("no triangle has all three vertices inside the mask")
    used = np.zeros(len(cut_vertices), dtype=bool)
    used[cut_faces.ravel()] = True
    main = _largest_component(cut_faces, len(cut_vertices)) & used
    dropped = int((used & ~main).sum())
    if dropped > max_dropped_fraction * main.sum():
        raise DiskError(f"the mask leaves several components: the largest has {int(main.sum())} vertices and the "
                        f"others {dropped} together (more than {max_dropped_fraction:.0%} of it); only small islands "
                        "are dropped automatically")
    removed["small components"] = int((~main).sum())
    cut_vertices, cut_faces, sub_index = submesh(cut_vertices, cut_faces, main)
    index = index[sub_index]
    ears = 0
    for _ in range(max_ear_rounds):
        found = _ears(cut_faces, len(cut_vertices))
        if len(found) == 0:
            break
        ears += len(found)
        keep_now = np.ones(len(cut_vertices), dtype=bool)
        keep_now[found] = False
        cut_vertices, cut_faces, sub_index = submesh(cut_vertices, cut_faces, keep_now)
        index = index[sub_index]
    removed["ears"] = ears
    topology = mesh_topology(cut_vertices, cut_faces)
    if not topology.is_disk:
        where = _hole_locations(cut_vertices, cut_faces) if topology.boundary_loops > 1 else ""
        raise DiskError(f"not a topological disk after cutting: {_describe(cut_vertices, cut_faces)}{where}")
    return Disk(cut_vertices, cut_faces, index, boundary_loop(cut_faces), removed)
