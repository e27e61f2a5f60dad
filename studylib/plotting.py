"""Figures shared by the notebooks; each returns a matplotlib Figure for ``StageContext.save_figure``."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from matplotlib.figure import Figure

__all__ = ["site_composition"]


def site_composition(summary: pd.DataFrame, title: str) -> Figure:
    """Stacked bars of autism and control subjects per site, from :func:`studylib.data.abide.site_summary`."""
    import matplotlib.pyplot as plt

    sites = summary[summary["site"] != "all sites"]
    figure, axis = plt.subplots(figsize=(max(6.0, 0.35 * len(sites)), 3.2))
    axis.bar(sites["site"], sites["autism"], label="autism", color="#c44e52")
    axis.bar(sites["site"], sites["control"], bottom=sites["autism"], label="control", color="#4c72b0")
    axis.set_ylabel("subjects")
    axis.set_title(title)
    axis.tick_params(axis="x", labelrotation=90)
    axis.legend(frameon=False)
    figure.tight_layout()
    return figure
