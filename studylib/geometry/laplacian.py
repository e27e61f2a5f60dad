"""Cotangent Laplace–Beltrami operator and its low-frequency eigenmodes."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import eigsh

__all__ = ["cotangent_laplacian", "cotangent_matrix", "laplacian_eigenmodes"]


def cotangent_matrix(faces: np.ndarray, cotangents: np.ndarray, n: int) -> sp.csr_matrix:
    """The positive semi-definite cotangent Laplacian ``L`` with edge weights ``(cot α + cot β) / 2``.

    Parameters
    ----------
    faces : ndarray, shape (m, 3)
    cotangents : ndarray, shape (m, 3)
        Cotangent of the angle at each corner of each face (the corner opposite edge ``(k+1, k+2)``); from 3D
        positions (:func:`cotangent_laplacian`) or from the intrinsic angles of a metric (the conformal solve).
    n : int
        Number of vertices.
    """
    rows, cols, weights = [], [], []
    for k in range(3):  # the angle at corner k is opposite the edge (k+1, k+2)
        i, j = faces[:, (k + 1) % 3], faces[:, (k + 2) % 3]
        rows += [i, j]
        cols += [j, i]
        weights += [0.5 * cotangents[:, k]] * 2
    off = sp.coo_matrix((np.concatenate(weights), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)).tocsr()
    return (sp.diags(np.asarray(off.sum(axis=1)).ravel()) - off).tocsr()


def cotangent_laplacian(vertices: np.ndarray, faces: np.ndarray) -> tuple[sp.csr_matrix, np.ndarray]:
    """Stiffness matrix ``L`` (positive semi-definite) and lumped (barycentric) vertex areas ``m``.

    ``L f = λ diag(m) f`` are the discrete Laplace–Beltrami eigenproblems.
    """
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    n = len(vertices)
    corners = vertices[faces]  # (m, 3 corners, 3)
    areas = 0.5 * np.linalg.norm(np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]), axis=1)
    if (areas <= 0).any():
        raise ValueError(f"{int((areas <= 0).sum())} degenerate (zero-area) faces")
    cotangents = np.empty((len(faces), 3))
    for k in range(3):
        u = corners[:, (k + 1) % 3] - corners[:, k]
        v = corners[:, (k + 2) % 3] - corners[:, k]
        cotangents[:, k] = np.einsum("ij,ij->i", u, v) / (2.0 * areas)
    mass = np.bincount(faces.ravel(), weights=np.repeat(areas / 3.0, 3), minlength=n)
    return cotangent_matrix(faces, cotangents, n), mass


def laplacian_eigenmodes(vertices: np.ndarray, faces: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` lowest Laplace–Beltrami eigenpairs, modes orthonormal under the lumped mass.

    Returns
    -------
    eigenvalues : ndarray, shape (k,)
        Ascending; the first is ~0 (the constant mode) on a connected mesh.
    modes : ndarray, shape (n, k)
        ``modes.T @ diag(mass) @ modes = I``.
    """
    stiffness, mass = cotangent_laplacian(vertices, faces)
    if (mass <= 0).any():
        raise ValueError(f"{int((mass <= 0).sum())} vertices belong to no triangle; remove them first")
    if not 1 <= k < len(vertices) - 1:
        raise ValueError(f"k must be between 1 and {len(vertices) - 2}, got {k}")
    # A fixed start vector makes ARPACK deterministic (a random one picks arbitrary bases of repeated eigenvalues).
    start = np.cos(np.arange(len(vertices)) * 0.61803398875) + 1.5
    eigenvalues, modes = eigsh(stiffness, k=k, M=sp.diags(mass), sigma=-1e-6, which="LM", v0=start)
    order = np.argsort(eigenvalues)
    eigenvalues, modes = eigenvalues[order], modes[:, order]
    # Fix each mode's sign so that repeated computations give identical fields.
    signs = np.sign(modes[np.argmax(np.abs(modes), axis=0), np.arange(k)])
    return np.maximum(eigenvalues, 0.0), modes * signs
