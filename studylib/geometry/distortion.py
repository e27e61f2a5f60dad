"""How much a flat map distorts areas and angles, per triangle and per parcel.

- Area: ``log2(A_2D / A_3D)`` per triangle after normalising both totals to 1 (0 = exact).
- Angle: the quasi-conformal distortion ``|mu| = (s1 - s2) / (s1 + s2)`` and ``K = s1 / s2`` from the singular
  values of each triangle's affine map (0 and 1 = conformal).
- Flipped triangles: negative signed area in 2D.
- Parcels: each parcel's share of the 2D area over its share of the 3D area.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from .mesh import signed_areas

__all__ = ["distortion_summary", "parcel_area_ratios", "signed_areas", "triangle_distortion"]


def _frames(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each 3D triangle's edges e1 = v1 - v0, e2 = v2 - v0 in a local orthonormal 2D frame."""
    e1 = vertices[faces[:, 1]] - vertices[faces[:, 0]]
    e2 = vertices[faces[:, 2]] - vertices[faces[:, 0]]
    x = e1 / np.linalg.norm(e1, axis=1, keepdims=True)
    normal = np.cross(e1, e2)
    y = np.cross(normal / np.linalg.norm(normal, axis=1, keepdims=True), x)
    return (np.stack([np.einsum("ij,ij->i", e1, x), np.zeros(len(faces))], axis=1),
            np.stack([np.einsum("ij,ij->i", e2, x), np.einsum("ij,ij->i", e2, y)], axis=1))



def triangle_distortion(vertices: np.ndarray, faces: np.ndarray, uv: np.ndarray) -> pd.DataFrame:
    """Per-triangle ``area_3d``, ``area_2d`` (signed), ``log2_area_ratio``, ``mu`` and ``K``."""
    vertices = np.asarray(vertices, dtype=np.float64)
    uv = np.asarray(uv, dtype=np.float64)
    a1, a2 = _frames(vertices, faces)
    area3 = 0.5 * np.abs(a1[:, 0] * a2[:, 1] - a1[:, 1] * a2[:, 0])
    area2 = signed_areas(uv, faces)
    if area2.sum() < 0:  # a mirrored map (clockwise faces) is not flipped: measure it in its own orientation
        uv = uv * np.array([-1.0, 1.0])
        area2 = -area2
    b1 = uv[faces[:, 1]] - uv[faces[:, 0]]
    b2 = uv[faces[:, 2]] - uv[faces[:, 0]]
    source = np.stack([a1, a2], axis=2)  # columns are edges
    target = np.stack([b1, b2], axis=2)
    jacobian = target @ np.linalg.inv(source)
    singular = np.linalg.svd(jacobian, compute_uv=False)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = (area2 / area2.sum()) / (area3 / area3.sum())
        log_ratio = np.log2(np.where(ratio > 0, ratio, np.nan))
        mu = (singular[:, 0] - singular[:, 1]) / (singular[:, 0] + singular[:, 1])
        k = singular[:, 0] / singular[:, 1]
    return pd.DataFrame({"area_3d": area3, "area_2d": area2, "log2_area_ratio": log_ratio, "mu": mu, "K": k})


def parcel_area_ratios(vertices: np.ndarray, faces: np.ndarray, uv: np.ndarray, labels: np.ndarray,
                       names: Mapping[int, str] | None = None) -> pd.DataFrame:
    """Each parcel's 2D area share over its 3D area share (triangles assigned by majority vertex label).

    ``labels`` are per vertex of the mapped mesh; label 0 (no parcel) is left out.
    """
    table = triangle_distortion(vertices, faces, uv)
    corner_labels = np.asarray(labels)[faces]
    # majority label of the three corners (ties: the first corner's)
    majority = np.where(corner_labels[:, 1] == corner_labels[:, 2], corner_labels[:, 1], corner_labels[:, 0])
    frame = pd.DataFrame({"label": majority, "area_3d": table["area_3d"], "area_2d": np.abs(table["area_2d"])})
    frame = frame[frame["label"] != 0]
    sums = frame.groupby("label")[["area_3d", "area_2d"]].sum()
    sums["ratio"] = (sums["area_2d"] / sums["area_2d"].sum()) / (sums["area_3d"] / sums["area_3d"].sum())
    if names is not None:
        sums["name"] = [names.get(int(label), str(label)) for label in sums.index]
    return sums.reset_index()


def distortion_summary(vertices: np.ndarray, faces: np.ndarray, uv: np.ndarray,
                       parcels: Mapping[str, np.ndarray] | None = None) -> dict[str, float]:
    """Headline figures: flipped triangles, p5/p50/p95 of the triangle area ratio, mean and p95 of |mu|,
    median K, and p5/p95 of each parcellation's area ratio (``parcels`` maps a name to vertex labels)."""
    table = triangle_distortion(vertices, faces, uv)
    ratio = 2.0 ** table["log2_area_ratio"].dropna()
    summary = {
        "triangles": int(len(table)),
        "flipped": int((table["area_2d"] <= 0).sum()),
        "area_ratio_p5": float(np.percentile(ratio, 5)),
        "area_ratio_p50": float(np.percentile(ratio, 50)),
        "area_ratio_p95": float(np.percentile(ratio, 95)),
        "mu_mean": float(np.nanmean(table["mu"])),
        "mu_p95": float(np.nanpercentile(table["mu"], 95)),
        "K_median": float(np.nanmedian(table["K"])),
    }
    for name, labels in (parcels or {}).items():
        ratios = parcel_area_ratios(vertices, faces, uv, labels)["ratio"]
        summary[f"{name}_ratio_p5"] = float(np.percentile(ratios, 5))
        summary[f"{name}_ratio_p95"] = float(np.percentile(ratios, 95))
    return summary
