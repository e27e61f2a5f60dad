"""Mesh graphs and the sparse Cholesky factorisation of the flattening's Newton steps."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse.linalg import spsolve

from studylib.geometry.sparse import Cholesky, edge_graph, mesh_graph


def _grid(side: int) -> tuple[np.ndarray, sp.csr_matrix]:
    """Faces of a side x side vertex grid and its graph Laplacian plus a small diagonal (positive definite)."""
    index = np.arange(side * side).reshape(side, side)
    a, b, c, d = index[:-1, :-1].ravel(), index[:-1, 1:].ravel(), index[1:, 1:].ravel(), index[1:, :-1].ravel()
    faces = np.r_[np.c_[a, b, c], np.c_[a, c, d]]
    graph = mesh_graph(faces, side * side).astype(np.float64)
    laplacian = sp.diags(np.asarray(graph.sum(axis=1)).ravel() + 1e-3) - graph
    return faces, laplacian.tocsr()


def test_mesh_graph_is_a_symmetric_0_1_adjacency_without_self_loops():
    faces, _ = _grid(4)
    graph = mesh_graph(faces, 16)
    assert (graph != graph.T).nnz == 0 and set(np.unique(graph.data)) == {1}
    assert graph.diagonal().sum() == 0
    assert graph.nnz == 2 * (12 + 12 + 9)  # horizontal, vertical and diagonal edges, each in both directions
    np.testing.assert_array_equal(edge_graph(np.array([[0, 1], [1, 0], [0, 1]]), 3).toarray(),
                                  [[0, 1, 0], [1, 0, 0], [0, 0, 0]])  # repeated edges count once
    degenerate = mesh_graph(np.array([[0, 1, 1], [1, 2, 0]]), 3)  # a face with a repeated corner
    assert degenerate.diagonal().sum() == 0 and degenerate.nnz == 6


def test_cholesky_solves_like_spsolve_for_vectors_and_blocks():
    _, laplacian = _grid(30)
    rng = np.random.default_rng(0)
    rhs = rng.normal(size=(900, 3))
    factor = Cholesky(laplacian)
    np.testing.assert_allclose(factor.solve(rhs), spsolve(laplacian.tocsc(), rhs), rtol=1e-9, atol=1e-9)
    solution = factor.solve(rhs[:, 0])
    assert solution.shape == (900,)
    np.testing.assert_allclose(laplacian @ solution, rhs[:, 0], atol=1e-9)
    # only the lower triangle is read: the upper one may be anything (e.g. missing)
    np.testing.assert_allclose(Cholesky(sp.tril(laplacian)).solve(rhs[:, 0]), solution, rtol=1e-12)


def test_cholesky_rejects_matrices_it_cannot_factor():
    _, laplacian = _grid(10)
    with pytest.raises(ValueError, match="not positive definite"):
        Cholesky(-laplacian)
    with pytest.raises(ValueError, match="square"):
        Cholesky(sp.csr_matrix((3, 4)))
    for wrong in (np.ones(99), np.float64(1.0), np.ones((100, 2, 2))):
        with pytest.raises(ValueError, match="rhs must have shape"):
            Cholesky(laplacian).solve(wrong)
