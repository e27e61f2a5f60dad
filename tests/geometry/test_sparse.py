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


def test_cholesky_reuses_the_symbolic_analysis_of_the_same_pattern_only():
    _, laplacian = _grid(20)
    rng = np.random.default_rng(1)
    rhs = rng.normal(size=400)
    first = Cholesky(laplacian)
    assert not first.reused
    scale = sp.diags(rng.uniform(0.5, 2.0, size=400))
    scaled = (scale @ laplacian @ scale).tocsr()  # the same pattern, other values, still positive definite
    fresh = Cholesky(scaled).solve(rhs)
    again = Cholesky(scaled, reuse=first)
    assert again.reused
    np.testing.assert_array_equal(again.solve(rhs), fresh)  # the same factor, bit for bit
    with pytest.raises(RuntimeError, match="reused by a later one"):
        first.solve(rhs)
    # another pattern (one more off-diagonal pair): analysed anew, and the earlier factor is left alone
    extra = laplacian.tolil()
    extra[0, 399] = extra[399, 0] = -1e-3
    extra[0, 0] += 1e-3
    extra[399, 399] += 1e-3
    other = Cholesky(extra.tocsr(), reuse=again)
    assert not other.reused
    np.testing.assert_array_equal(again.solve(rhs), fresh)
    np.testing.assert_allclose(extra.tocsr() @ other.solve(rhs), rhs, atol=1e-9)
