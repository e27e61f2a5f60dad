"""Figures shared by the notebooks; each returns a matplotlib Figure for ``StageContext.save_figure``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from matplotlib.figure import Figure

    from .data.templates import Template

__all__ = [
    "atlas_figure",
    "confusion_figure",
    "display_mesh",
    "distortion_histograms",
    "distortion_maps",
    "flat_panel",
    "flattening_figure",
    "image_grid",
    "label_colormap",
    "metric_bars_figure",
    "occlusion_flat_figure",
    "recovery_figure",
    "roc_figure",
    "site_composition",
    "surface_panels",
]


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
                   columns_per_row: int = 4, surface: str | None = None) -> Figure:
    """Maps on the template's 3D surface: one panel per (title, hemisphere, values) and view.

    ``values`` are per template vertex (NaN outside the cortex, drawn grey). Each map gets its own colour
    range (the 2nd-98th percentile, symmetric about 0 when ``symmetric``). ``surface`` draws on another of the
    template's surfaces (``inflated``...; :func:`display_mesh`) instead of its own.
    """
    import matplotlib.pyplot as plt
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from nilearn import plotting

    cells = [(title, hemisphere, values, view) for title, hemisphere, values in panels for view in views]
    columns = min(columns_per_row, len(cells))
    rows = int(np.ceil(len(cells) / columns))
    figure = plt.figure(figsize=(2.6 * columns, 2.7 * rows))
    for index, (title, hemisphere, values, view) in enumerate(cells):
        axis = figure.add_subplot(rows, columns, index + 1, projection="3d")
        mesh = (display_mesh(template.name, hemisphere, surface) if surface
                else (template.surfaces[hemisphere].vertices, template.surfaces[hemisphere].faces))
        finite = values[np.isfinite(values)]
        low, high = np.percentile(finite, [2, 98]) if finite.size else (0.0, 1.0)
        if symmetric:
            high = max(abs(low), abs(high)) or 1.0
            low = -high
        plotting.plot_surf_stat_map(mesh, values, hemi=hemisphere, view=view,
                                    axes=axis, figure=figure, colorbar=False, cmap=cmap, vmin=low, vmax=high,
                                    symmetric_cbar=symmetric)
        # nilearn's own colorbar sits to the right, over the next panel: a short one under each brain instead
        bar = figure.colorbar(ScalarMappable(Normalize(low, high), cmap), ax=axis, orientation="horizontal",
                              fraction=0.05, pad=0.0, shrink=0.6, aspect=15)
        bar.set_ticks([low, (low + high) / 2, high])
        bar.set_ticklabels([f"{tick:.3g}" for tick in (low, (low + high) / 2, high)])
        bar.ax.tick_params(labelsize=6, length=2)
        axis.set_title(f"{title}\n{hemisphere}, {view}", fontsize=8)
        for collection in axis.collections:  # tens of thousands of triangles: embed them as pixels in SVG
            collection.set_rasterized(True)
    figure.subplots_adjust(left=0.02, right=0.98, bottom=0.04, top=0.9, wspace=0.05, hspace=0.25)
    return figure


def label_colormap(n_labels: int):
    """A qualitative colormap for integer labels 0..n_labels (0, no parcel, is light grey)."""
    from matplotlib.colors import ListedColormap
    import matplotlib.pyplot as plt

    palette = [plt.get_cmap("tab20")(i % 20) for i in range(n_labels)]
    rng = np.random.default_rng(0)  # neighbouring labels get distinct colours
    palette = [palette[i] for i in rng.permutation(n_labels)]
    return ListedColormap([(0.85, 0.85, 0.85, 1.0), *palette])


def flat_panel(axis, uv: np.ndarray, faces: np.ndarray, values: np.ndarray, *, cmap="viridis", vmin=None,
               vmax=None, corners: np.ndarray | None = None, title: str = "", per_face: bool = False):
    """Draw a flat map (triangles coloured by vertex or face values) on a matplotlib axis."""
    if per_face:
        artist = axis.tripcolor(uv[:, 0], uv[:, 1], faces, facecolors=values, cmap=cmap, vmin=vmin, vmax=vmax,
                                rasterized=True)
    else:
        artist = axis.tripcolor(uv[:, 0], uv[:, 1], faces, values, cmap=cmap, vmin=vmin, vmax=vmax,
                                shading="gouraud", rasterized=True)
    if corners is not None:
        axis.plot(*uv[corners].T, "o", color="red", markersize=4)
    axis.set_aspect("equal")
    axis.set_axis_off()
    axis.set_title(title, fontsize=9)
    return artist


def flattening_figure(vertices: np.ndarray, faces: np.ndarray, conformal_uv: np.ndarray, flat_uv: np.ndarray,
                      labels: np.ndarray, corners: np.ndarray, hemisphere: str, title: str) -> Figure:
    """The paper's Figure 1: 3D hemisphere -> conformal square -> area-preserving square, corners in red."""
    import matplotlib.pyplot as plt
    from nilearn import plotting

    cmap = label_colormap(int(labels.max()))
    face_labels = labels[faces[:, 0]]
    figure = plt.figure(figsize=(10, 3.4))
    axis = figure.add_subplot(1, 3, 1, projection="3d")
    # the corners lie on the medial wall's edge: the medial view shows them
    plotting.plot_surf_roi((vertices, faces), labels, hemi=hemisphere, view="medial", axes=axis, figure=figure,
                           cmap=cmap, vmin=0, vmax=int(labels.max()), colorbar=False)
    axis.plot(*vertices[corners].T, "o", color="red", markersize=4, zorder=10)
    axis.set_title("3D surface (medial), medial wall removed", fontsize=9)
    for collection in axis.collections:
        collection.set_rasterized(True)
    for index, (uv, name) in enumerate(((conformal_uv, "conformal (Ricci flow / CETM)"),
                                        (flat_uv, "area-preserving (optimal transport)")), start=2):
        flat_panel(figure.add_subplot(1, 3, index), uv, faces, face_labels, cmap=cmap, vmin=0,
                   vmax=int(labels.max()), corners=corners, title=name, per_face=True)
    figure.suptitle(title, fontsize=10)
    return figure


def atlas_figure(template: Template, flats: dict, labels: dict[str, np.ndarray], title: str) -> Figure:
    """The paper's Figure 2: a parcellation in 3D views (lateral, medial) and as the 2D flat atlas."""
    import matplotlib.pyplot as plt
    from nilearn import plotting

    top = int(max(labels[h].max() for h in labels))
    cmap = label_colormap(top)
    figure = plt.figure(figsize=(10, 6))
    for column, (hemisphere, view) in enumerate((("left", "lateral"), ("left", "medial"), ("right", "lateral"),
                                                 ("right", "medial"))):
        axis = figure.add_subplot(2, 4, column + 1, projection="3d")
        surface = template.surfaces[hemisphere]
        plotting.plot_surf_roi((surface.vertices, surface.faces), labels[hemisphere], hemi=hemisphere, view=view,
                               axes=axis, figure=figure, cmap=cmap, vmin=0, vmax=top, colorbar=False)
        for collection in axis.collections:
            collection.set_rasterized(True)
        axis.set_title(f"{hemisphere}, {view}", fontsize=9)
    for column, hemisphere in enumerate(("left", "right")):
        flat = flats[hemisphere]
        axis = figure.add_subplot(2, 2, 3 + column)
        face_labels = labels[hemisphere][flat.vertex_index][flat.faces[:, 0]]
        flat_panel(axis, flat.uv, flat.faces, face_labels, cmap=cmap, vmin=0, vmax=top, corners=flat.corners,
                   title=f"{hemisphere} hemisphere, flat", per_face=True)
    figure.suptitle(title, fontsize=10)
    return figure


def distortion_histograms(tables: dict[str, pd.DataFrame]) -> Figure:
    """Histograms of log2 triangle area ratio and |mu| for several maps (name -> triangle_distortion table)."""
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
    for name, table in tables.items():
        left.hist(table["log2_area_ratio"].dropna().clip(-4, 4), bins=120, histtype="step", label=name)
        right.hist(table["mu"].dropna(), bins=120, range=(0, 1), histtype="step", label=name)
    left.set_xlabel("log2 (2D area share / 3D area share) per triangle")
    right.set_xlabel("quasi-conformal distortion |mu| per triangle")
    for axis in (left, right):
        axis.set_ylabel("triangles")
        axis.set_yscale("log")
    left.legend(frameon=False, fontsize=8)
    figure.tight_layout()
    return figure


def image_grid(images: Sequence[tuple[str, np.ndarray]], *, columns: int = 4, cmap: str = "viridis",
               symmetric: bool = False) -> Figure:
    """Square images with titles, drawn with v up (``origin="lower"``, the rasterizer's convention)."""
    import matplotlib.pyplot as plt

    rows = int(np.ceil(len(images) / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(2.4 * columns, 2.4 * rows), squeeze=False)
    for axis in axes.ravel():
        axis.set_axis_off()
    for axis, (title, image) in zip(axes.ravel(), images):
        low, high = np.percentile(image, [1, 99])
        if symmetric:
            high = max(abs(low), abs(high)) or 1.0
            low = -high
        artist = axis.imshow(image, origin="lower", cmap=cmap, vmin=low, vmax=high)
        axis.set_title(title, fontsize=8)
        figure.colorbar(artist, ax=axis, fraction=0.046, pad=0.02)
    figure.tight_layout()
    return figure


def distortion_maps(flat, conformal: pd.DataFrame, area_preserving: pd.DataFrame) -> Figure:
    """Where each map distorts: log2 area ratio of the conformal and the area-preserving map, and the
    area-preserving map's |mu|, each drawn on its own flat coordinates (tables from ``triangle_distortion``)."""
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 3, figsize=(11, 3.6))
    panels = ((flat.conformal_uv, conformal["log2_area_ratio"], "conformal: log2 area ratio", "RdBu_r", (-4, 4)),
              (flat.uv, area_preserving["log2_area_ratio"], "area-preserving: log2 area ratio", "RdBu_r", (-0.3, 0.3)),
              (flat.uv, area_preserving["mu"], "area-preserving: |mu|", "magma", (0, 1)))
    for axis, (uv, values, title, cmap, (low, high)) in zip(axes, panels):
        artist = flat_panel(axis, uv, flat.faces, np.nan_to_num(np.asarray(values)), cmap=cmap, vmin=low, vmax=high,
                            title=title, per_face=True)
        figure.colorbar(artist, ax=axis, fraction=0.046)
    return figure


def filter_variation_figure(variation: pd.DataFrame) -> Figure:
    """Mean (band: SD over models) relative filter change per convolution layer, one line per arm and one
    panel per (cohort, backbone)."""
    import matplotlib.pyplot as plt

    panels = sorted(variation.groupby(["cohort", "backbone"]).groups)
    figure, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.4), squeeze=False)
    for axis, (cohort, backbone) in zip(axes[0], panels):
        subset = variation[(variation["cohort"] == cohort) & (variation["backbone"] == backbone)]
        for arm, group in subset.groupby("arm", sort=True):
            curve = group.groupby("depth")["variation"].agg(["mean", "std"]).fillna(0.0)
            axis.plot(curve.index, curve["mean"], label=arm)
            axis.fill_between(curve.index, curve["mean"] - curve["std"], curve["mean"] + curve["std"], alpha=0.2)
        axis.set(title=f"{cohort}, {backbone}", xlabel="convolution layer (input -> output)",
                 ylabel="relative filter change")
        axis.legend(frameon=False)
    figure.tight_layout()
    return figure


def learning_curve_figure(curves: pd.DataFrame, title: str) -> Figure:
    """Training loss per epoch (mean over folds), one panel per image set, one line per arm; mix-up epochs
    shaded (their soft targets make the loss higher by construction)."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    images = sorted(curves.groupby(["hemisphere", "metric"]).groups)
    if not images:
        raise ValueError("no learning curves to plot")
    columns = min(4, len(images))
    rows = int(np.ceil(len(images) / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.5 * rows + 0.6), squeeze=False,
                                sharey=True)
    mixup = sorted(curves.loc[curves["mixup"].astype(bool), "epoch"].unique())
    for axis, (hemisphere, metric) in zip(axes.flat, images):
        if mixup:
            axis.axvspan(min(mixup) - 0.5, max(mixup) + 0.5, color="0.92", zorder=0)
        subset = curves[(curves["hemisphere"] == hemisphere) & (curves["metric"] == metric)]
        for (arm, backbone), group in subset.groupby(["arm", "backbone"], sort=True):
            axis.plot(group["epoch"], group["loss"], marker="o", markersize=3, label=f"{arm} ({backbone})")
        axis.set(title=f"{hemisphere} {metric}", xlabel="epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    for axis in axes.flat[len(images):]:
        axis.set_visible(False)
    for axis in axes[:, 0]:
        axis.set_ylabel("training loss")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncols=min(len(labels), 4), frameon=False, fontsize=8)
    figure.suptitle(f"{title} (shaded: mix-up epochs)" if mixup else title)
    figure.tight_layout(rect=(0, 0.08 if rows == 1 else 0.05, 1, 1))
    return figure


def arm_comparison_figure(scores: pd.DataFrame, title: str) -> Figure:
    """Accuracy per image set (hemisphere and metric), bars per arm (the content of the paper's Figure 3)."""
    import matplotlib.pyplot as plt

    scores = scores.assign(image=scores["hemisphere"].str[0].str.upper() + " " + scores["metric"])
    images = sorted(scores["image"].unique())
    arms = list(dict.fromkeys(scores["arm"]))
    width = 0.8 / len(arms)
    figure, axis = plt.subplots(figsize=(max(5.0, 1.1 * len(images) * max(len(arms), 2) / 2), 3.4))
    for position, arm in enumerate(arms):
        values = scores[scores["arm"] == arm].set_index("image")["accuracy"].reindex(images) * 100
        axis.bar(np.arange(len(images)) + (position - (len(arms) - 1) / 2) * width, values, width, label=arm)
    axis.axhline(50, color="0.5", linewidth=0.8, linestyle=":")
    axis.set_xticks(np.arange(len(images)), images, rotation=30, ha="right")
    axis.set(ylabel="accuracy (%)", title=title, ylim=(0, 100))
    axis.legend(frameon=False, ncols=len(arms), fontsize=8, loc="upper left")
    figure.tight_layout()
    return figure


def metric_bars_figure(scores: pd.DataFrame, title: str) -> Figure:
    """The paper's Figure 3 with intervals: accuracy, sensitivity, specificity and AUC per image set (hemisphere and
    metric), one bar per arm, with the 95% interval of each (columns ``<metric> low``/``high`` of
    :func:`studylib.evaluate.uncertainty.metric_intervals`)."""
    import matplotlib.pyplot as plt

    scores = scores.assign(image=scores["hemisphere"].str[0].str.upper() + " " + scores["metric"])
    images = sorted(scores["image"].unique())
    arms = list(dict.fromkeys(scores["arm"]))
    width = 0.8 / len(arms)
    figure, axes = plt.subplots(4, 1, figsize=(max(6.0, 0.6 * len(images) * max(len(arms), 2)), 9.5), sharex=True)
    for axis, metric in zip(axes, ("accuracy", "sensitivity", "specificity", "auc")):
        for position, arm in enumerate(arms):
            rows = scores[scores["arm"] == arm].set_index("image").reindex(images)
            value = rows[metric].to_numpy(float)
            error = np.vstack([value - rows[f"{metric} low"].to_numpy(float),
                               rows[f"{metric} high"].to_numpy(float) - value])
            axis.bar(np.arange(len(images)) + (position - (len(arms) - 1) / 2) * width, value, width, label=arm,
                     yerr=np.nan_to_num(error), capsize=2, error_kw={"linewidth": 0.8})
        axis.axhline(0.5, color="0.5", linewidth=0.8, linestyle=":")
        axis.set(ylabel=metric if metric != "auc" else "AUC", ylim=(0, 1))
    axes[-1].set_xticks(np.arange(len(images)), images, rotation=30, ha="right")
    axes[0].legend(frameon=False, ncols=len(arms), fontsize=8, loc="lower left")
    axes[0].set_title(f"{title} (bars: 95% bootstrap intervals over subjects)")
    figure.tight_layout()
    return figure


def roc_figure(stacked: pd.DataFrame, title: str) -> Figure:
    """ROC curves of stacked predictions, one line per arm (``arm``, ``label``, ``probability`` columns), AUC in the
    legend."""
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_auc_score, roc_curve

    figure, axis = plt.subplots(figsize=(4.2, 4.0))
    for arm, group in stacked.groupby("arm", sort=False):
        if group["label"].nunique() < 2:
            continue
        false_positive, true_positive, _ = roc_curve(group["label"], group["probability"])
        axis.plot(false_positive, true_positive, label=f"{arm} (AUC {roc_auc_score(group['label'], group['probability']):.3f})")
    axis.plot([0, 1], [0, 1], color="0.6", linewidth=0.8, linestyle=":")
    axis.set(xlabel="1 - specificity", ylabel="sensitivity", title=title, xlim=(0, 1), ylim=(0, 1), aspect="equal")
    axis.legend(frameon=False, fontsize=7, loc="lower right")
    figure.tight_layout()
    return figure


def confusion_figure(stacked: pd.DataFrame, title: str, class_names: tuple[str, str] = ("0", "1")) -> Figure:
    """Confusion matrices (threshold 1/2) of stacked predictions, one panel per arm."""
    import matplotlib.pyplot as plt
    from sklearn.metrics import confusion_matrix

    arms = list(dict.fromkeys(stacked["arm"]))
    figure, axes = plt.subplots(1, len(arms), figsize=(2.6 * len(arms), 2.8), squeeze=False)
    for axis, arm in zip(axes[0], arms):
        group = stacked[stacked["arm"] == arm]
        matrix = confusion_matrix(group["label"], (group["probability"] >= 0.5).astype(int), labels=[0, 1])
        axis.imshow(matrix, cmap="Blues")
        for (row, column), count in np.ndenumerate(matrix):
            axis.text(column, row, str(count), ha="center", va="center",
                      color="white" if count > matrix.max() / 2 else "black")
        axis.set_xticks([0, 1], class_names)
        axis.set_yticks([0, 1], class_names)
        axis.set(xlabel="predicted", ylabel="true" if axis is axes[0, 0] else None, title=arm)
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def display_mesh(template: str, hemisphere: str, surface: str = "inflated") -> tuple[np.ndarray, np.ndarray]:
    """Vertices and faces of a template's display surface (``inflated``, ``midthickness``...) for 3D figures."""
    if template == "fs_LR_32k":
        from .data.templates import fslr32k_surface

        mesh = fslr32k_surface(hemisphere, surface)
        return mesh.vertices, mesh.faces
    if template == "fsaverage5":
        from nilearn.datasets import load_fsaverage

        part = load_fsaverage("fsaverage5")["pial" if surface == "midthickness" else surface].parts[hemisphere]
        return np.asarray(part.coordinates, np.float64), np.asarray(part.faces, np.int64)
    raise ValueError(f"unknown template {template!r}")


def occlusion_flat_figure(panels: Sequence[tuple[str, np.ndarray]], outlines: dict[str, np.ndarray], *,
                          columns: int = 4, cmap: str = "hot", symmetric: bool = False) -> Figure:
    """Flat-image maps (the paper's Figure 4 before its 3D rendering) with the Desikan–Killiany borders drawn over
    them. ``panels``: (title, image (H, W)); the title's first word names the hemisphere whose outline is drawn
    (``outlines[hemisphere]``: a label image of the same shape). Each panel gets its own colour range."""
    import matplotlib.pyplot as plt

    rows = int(np.ceil(len(panels) / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(2.6 * columns, 2.6 * rows), squeeze=False)
    for axis in axes.ravel():
        axis.set_axis_off()
    for axis, (title, image) in zip(axes.ravel(), panels):
        finite = image[np.isfinite(image)]
        high = np.percentile(np.abs(finite), 99) if finite.size else 1.0
        low = -high if symmetric else min(0.0, float(np.percentile(finite, 1)) if finite.size else 0.0)
        artist = axis.imshow(image, origin="lower", cmap=cmap, vmin=low, vmax=high or 1.0, interpolation="nearest")
        labels = outlines.get(title.split()[0])
        if labels is not None:
            border = np.zeros(labels.shape, dtype=bool)
            border[:, 1:] |= labels[:, 1:] != labels[:, :-1]
            border[1:, :] |= labels[1:, :] != labels[:-1, :]
            axis.imshow(np.ma.masked_where(~border, border), origin="lower", cmap="Greys", vmin=0, vmax=1,
                        alpha=0.6, interpolation="nearest")
        axis.set_title(title, fontsize=8)
        figure.colorbar(artist, ax=axis, fraction=0.046, pad=0.02)
    figure.tight_layout()
    return figure


def recovery_figure(recovery: pd.DataFrame, title: str) -> Figure:
    """Recovery AUC of the planted vertices per image set, occlusion beside the t-map, with 95% intervals."""
    import matplotlib.pyplot as plt

    labels = (recovery["hemisphere"].str[0] + " " + recovery["metric"]).unique().tolist()
    explainers = recovery["explainer"].unique().tolist()
    figure, axis = plt.subplots(figsize=(max(5.0, 0.8 * len(labels) + 2), 3.2))
    width = 0.8 / max(len(explainers), 1)
    for k, explainer in enumerate(explainers):
        rows = recovery[recovery["explainer"] == explainer]
        position = np.arange(len(rows)) + (k - (len(explainers) - 1) / 2) * width
        error = np.vstack([rows["auc"] - rows["auc low"], rows["auc high"] - rows["auc"]])
        axis.bar(position, rows["auc"], width, yerr=error, capsize=2, label=explainer)
    axis.axhline(0.5, color="grey", linestyle=":", linewidth=1)
    axis.set_xticks(np.arange(len(labels)), labels, rotation=45, ha="right", fontsize=8)
    axis.set_ylim(0, 1)
    axis.set_ylabel("AUC, planted vertices")
    axis.set_title(title, fontsize=9)
    axis.legend(frameon=False, fontsize=7)
    figure.tight_layout()
    return figure
