"""Nested-dissection ordering and the symmetric factorisation of the conformal map's Newton steps."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse.linalg import spsolve, splu

from studylib.geometry.sparse import SymmetricFactor, mesh_graph, nested_dissection, restrict_order


def _grid(side: int) -> tuple[np.ndarray, sp.csr_matrix]:
    """Faces of a side x side vertex grid and its graph Laplacian plus a small diagonal (positive definite)."""
    index = np.arange(side * side).reshape(side, side)
    a, b, c, d = index[:-1, :-1].ravel(), index[:-1, 1:].ravel(), index[1:, 1:].ravel(), index[1:, :-1].ravel()
    faces = np.r_[np.c_[a, b, c], np.c_[a, c, d]]
    graph = mesh_graph(faces, side * side).astype(np.float64)
    laplacian = sp.diags(np.asarray(graph.sum(axis=1)).ravel() + 1e-3) - graph
    return faces, laplacian.tocsr()


def test_nested_dissection_is_a_permutation_that_fills_less_than_the_natural_order():
    faces, laplacian = _grid(60)
    order = nested_dissection(mesh_graph(faces, 3600))
    np.testing.assert_array_equal(np.sort(order), np.arange(3600))
    natural = splu(laplacian.tocsc(), permc_spec="NATURAL", diag_pivot_thresh=0.0, options={"SymmetricMode": True})
    factor = SymmetricFactor(laplacian, order)
    assert factor._lu.L.nnz < 0.5 * natural.L.nnz  # a banded grid fills its whole band; dissection does not


def test_nested_dissection_handles_several_components_and_ignores_the_diagonal():
    faces, _ = _grid(12)
    two = np.r_[faces, faces + 144]  # two separate grids
    graph = mesh_graph(two, 288) + sp.identity(288, dtype=np.int8)
    order = nested_dissection(graph, leaf=8)
    np.testing.assert_array_equal(np.sort(order), np.arange(288))
    with pytest.raises(ValueError, match="square"):
        nested_dissection(sp.csr_matrix((3, 4)))


def test_symmetric_factor_solves_like_spsolve_also_on_a_restricted_order():
    faces, laplacian = _grid(30)
    rng = np.random.default_rng(0)
    order = nested_dissection(mesh_graph(faces, 900))
    rhs = rng.normal(size=(900, 2))
    np.testing.assert_allclose(SymmetricFactor(laplacian, order).solve(rhs), spsolve(laplacian.tocsc(), rhs),
                               rtol=1e-9, atol=1e-9)
    inner = np.sort(rng.choice(900, 700, replace=False))  # e.g. interior vertices, or all but a pinned one
    sub = laplacian[inner][:, inner]
    restricted = restrict_order(order, inner)
    np.testing.assert_array_equal(inner[restricted], order[np.isin(order, inner)])  # same relative order
    np.testing.assert_allclose(SymmetricFactor(sub, restricted).solve(rhs[inner, 0]),
                               spsolve(sub.tocsc(), rhs[inner, 0]), rtol=1e-9, atol=1e-9)
    with pytest.raises(ValueError, match="order has"):
        SymmetricFactor(laplacian, order[:-1])
    with pytest.raises(ValueError, match="permutation"):
        SymmetricFactor(laplacian, np.r_[order[:-1], order[0]])
