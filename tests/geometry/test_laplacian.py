from __future__ import annotations

import numpy as np

from studylib.geometry.laplacian import cotangent_laplacian, laplacian_eigenmodes
from studylib.geometry.mesh import fill_missing

from tests.support import icosphere


def test_sphere_spectrum_and_mass():
    vertices, faces = icosphere(4)
    radius = 50.0
    stiffness, mass = cotangent_laplacian(vertices, faces)
    assert np.isclose(mass.sum(), 4 * np.pi * radius**2, rtol=0.01)
    assert abs(stiffness @ np.ones(len(vertices))).max() < 1e-9  # constants are in the kernel
    eigenvalues, modes = laplacian_eigenmodes(vertices, faces, 9)
    expected = np.array([0, 2, 2, 2, 6, 6, 6, 6, 6]) / radius**2  # l (l + 1) / r^2
    np.testing.assert_allclose(eigenvalues, expected, atol=0.02 / radius**2)
    np.testing.assert_allclose(modes.T @ (mass[:, None] * modes), np.eye(9), atol=1e-8)


def test_eigenmodes_are_deterministic():
    vertices, faces = icosphere(3)
    first = laplacian_eigenmodes(vertices, faces, 10)[1]
    second = laplacian_eigenmodes(vertices, faces, 10)[1]
    np.testing.assert_array_equal(first, second)


def test_fill_missing_grows_inward_and_keeps_known_values():
    vertices, faces = icosphere(2)
    values = vertices[:, 0].copy()
    gap = vertices[:, 2] > 30
    filled = fill_missing(np.where(gap, np.nan, values), faces, gap)
    np.testing.assert_array_equal(filled[~gap], values[~gap])
    assert np.isfinite(filled).all()
    assert abs(filled[gap] - values[gap]).max() < 40  # smooth-ish, within the data's range
