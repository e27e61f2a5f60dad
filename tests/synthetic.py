"""Small synthetic templates for fast tests: two icosphere 'hemispheres' with a cap removed as medial wall."""

from __future__ import annotations

import numpy as np

from studylib.data.templates import HemisphereSurface, Parcellation, Template


def icosphere(subdivisions: int = 3) -> tuple[np.ndarray, np.ndarray]:
    t = (1 + 5**0.5) / 2
    vertices = [[-1, t, 0], [1, t, 0], [-1, -t, 0], [1, -t, 0], [0, -1, t], [0, 1, t], [0, -1, -t], [0, 1, -t],
                [t, 0, -1], [t, 0, 1], [-t, 0, -1], [-t, 0, 1]]
    faces = [[0, 11, 5], [0, 5, 1], [0, 1, 7], [0, 7, 10], [0, 10, 11], [1, 5, 9], [5, 11, 4], [11, 10, 2],
             [10, 7, 6], [7, 1, 8], [3, 9, 4], [3, 4, 2], [3, 2, 6], [3, 6, 8], [3, 8, 9], [4, 9, 5], [2, 4, 11],
             [6, 2, 10], [8, 6, 7], [9, 8, 1]]
    vertices = np.array(vertices, dtype=float)
    faces = np.array(faces)
    for _ in range(subdivisions):
        edges = np.sort(np.r_[faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]], axis=1)
        unique, inverse = np.unique(edges, axis=0, return_inverse=True)
        midpoints = len(vertices) + inverse.reshape(3, -1).T  # per face: (01, 12, 20)
        vertices = np.r_[vertices, (vertices[unique[:, 0]] + vertices[unique[:, 1]]) / 2]
        a, b, c = faces.T
        ab, bc, ca = midpoints.T
        faces = np.r_[np.c_[a, ab, ca], np.c_[b, bc, ab], np.c_[c, ca, bc], np.c_[ab, bc, ca]]
    vertices /= np.linalg.norm(vertices, axis=1, keepdims=True)
    return vertices * 50.0, faces


def synthetic_template(subdivisions: int = 3) -> tuple[Template, Parcellation]:
    """Template 'synthetic' (642 vertices per hemisphere at 3 subdivisions) with thickness and sulc maps,
    and a parcellation of 8 octant regions per hemisphere."""
    vertices, faces = icosphere(subdivisions)
    cortex = vertices[:, 2] > -40  # the cap below z = -40 plays the medial wall
    surfaces, maps, labels = {}, {}, {}
    for offset, hemisphere in ((0, "left"), (8, "right")):
        surfaces[hemisphere] = HemisphereSurface("synthetic", hemisphere, "sphere", vertices, faces, cortex)
        x, y, z = (vertices / 50.0).T
        maps[(hemisphere, "thickness")] = np.where(cortex, 2.5 + 0.3 * x + 0.2 * y * z, np.nan)
        maps[(hemisphere, "sulc")] = np.where(cortex, np.sin(3 * x) + 0.5 * z, np.nan)
        octant = (x > 0).astype(int) + 2 * (y > 0) + 4 * (z > 0) + 1 + offset
        labels[hemisphere] = np.where(cortex, octant, 0)
    names = {k: f"octant{k}" for k in range(1, 17)}
    return Template("synthetic", surfaces, maps), Parcellation("octants", "synthetic", labels, names)
