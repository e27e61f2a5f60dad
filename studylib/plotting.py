"""Figures shared by the notebooks; each returns a matplotlib Figure for ``StageContext.save_figure``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from matplotlib.figure import Figure

    from .data.templates import Template

__all__ = ["site_composition", "surface_panels"]


def site_composition(summary: pd.DataFrame, title: str) -> Figure:
    """Stacked bars of subjects per site and label, from :func:`studylib.data.summary.subjects_by_site`."""
    import matplotlib.pyplot as plt

    sites = summary[summary["site"] != "all sites"]
    labels = [c for c in summary.columns if c not in ("site", "subjects", "female", "age mean", "age sd")]
    figure, axis = plt.subplots(figsize=(max(6.0, 0.35 * len(sites)), 3.2))
    bottom = np.zeros(len(sites))
    for label, colour in zip(labels, ("#4c72b0", "#c44e52", "#55a868")):
        axis.bar(sites["site"], sites[label], bottom=bottom, label=label, color=colour)
        bottom += sites[label].to_numpy()
    axis.set_ylabel("subjects")
    axis.set_title(title)
    axis.tick_params(axis="x", labelrotation=90)
    axis.legend(frameon=False)
    figure.tight_layout()
    return figure


def surface_panels(template: Template, panels: Sequence[tuple[str, str, np.ndarray]], *,
                   views: Sequence[str] = ("lateral", "medial"), cmap: str = "viridis", symmetric: bool = False,
                   columns_per_row: int = 4) -> Figure:
    """Maps on the template's 3D surface: one panel per (title, hemisphere, values) and view.

    ``values`` are per template vertex (NaN outside the cortex, drawn grey). Each map gets its own colour
    range (the 2nd-98th percentile, symmetric about 0 when ``symmetric``).
    """
    import matplotlib.pyplot as plt
    from nilearn import plotting

    cells = [(title, hemisphere, values, view) for title, hemisphere, values in panels for view in views]
    columns = min(columns_per_row, len(cells))
    rows = int(np.ceil(len(cells) / columns))
    figure = plt.figure(figsize=(2.6 * columns, 2.3 * rows))
    for index, (title, hemisphere, values, view) in enumerate(cells):
        axis = figure.add_subplot(rows, columns, index + 1, projection="3d")
        surface = template.surfaces[hemisphere]
        finite = values[np.isfinite(values)]
        low, high = np.percentile(finite, [2, 98]) if finite.size else (0.0, 1.0)
        if symmetric:
            high = max(abs(low), abs(high)) or 1.0
            low = -high
        plotting.plot_surf_stat_map((surface.vertices, surface.faces), values, hemi=hemisphere, view=view,
                                    axes=axis, figure=figure, colorbar=True, cmap=cmap, vmin=low, vmax=high,
                                    symmetric_cbar=symmetric)
        axis.set_title(f"{title}\n{hemisphere}, {view}", fontsize=8)
        for collection in axis.collections:  # tens of thousands of triangles: embed them as pixels in SVG
            collection.set_rasterized(True)
    figure.subplots_adjust(left=0.0, right=0.95, bottom=0.0, top=0.9, wspace=0.05, hspace=0.15)
    return figure
