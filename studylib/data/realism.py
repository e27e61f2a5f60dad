"""How real a cohort looks: yardsticks of regional thickness computed the same way on real and simulated subjects.

Real ABIDE I thickness comes per Desikan–Killiany region (FreeSurfer's tables); a cohort's thickness maps are
summarised the same way by :func:`regional_means` (mean over each region's vertices, 68 regions, corpus
callosum excluded). :func:`thickness_yardsticks` then measures, from a subjects x regions table and the
subjects' site, age, sex and diagnosis:

- ``median_regional_sd``: median over regions of the SD across subjects (mm);
- ``first_eigenvector_share``: largest eigenvalue of the inter-regional correlation matrix over the number of regions;
- ``median_correlation``: median inter-regional correlation;
- ``median_left_right_correlation``: median correlation of each region with its right-hemisphere homologue;
- ``site_mean_min``, ``site_mean_max``, ``site_mean_sd``: the sites' mean thickness (mm), and its SD across sites;
- ``age_slope_controls``: mean thickness per decade of age in controls, adjusted for site (mm/decade);
- ``autism_d_min``, ``autism_d_max``, ``autism_max_abs_d``: regional Cohen's d of autism adjusted for site, age
  and sex (where the cohort has both diagnoses).

:func:`realism_table` sets simulated beside real with the tolerances the simulated cohorts must meet.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["TOLERANCES", "adjusted_d", "cohort_regional_thickness", "design_matrix", "realism_table", "regional_means", "site_dummies", "thickness_yardsticks"]

#: Relative tolerance of each yardstick (simulated vs real); yardsticks not listed are shown, not tested.
TOLERANCES = {"median_regional_sd": 0.2, "first_eigenvector_share": 0.2, "median_correlation": 0.2,
              "median_left_right_correlation": 0.2, "site_mean_sd": 0.3, "age_slope_controls": 0.3}

_DESCRIPTIONS = {
    "median_regional_sd": "median regional SD of thickness (mm)",
    "first_eigenvector_share": "first eigenvector share of the inter-regional correlation",
    "median_correlation": "median inter-regional correlation",
    "median_left_right_correlation": "median left-right homologous correlation",
    "site_mean_min": "lowest site mean thickness (mm)",
    "site_mean_max": "highest site mean thickness (mm)",
    "site_mean_sd": "SD of site mean thickness across sites (mm)",
    "age_slope_controls": "thickness change with age in controls, site-adjusted (mm/decade)",
    "autism_d_min": "most negative regional autism d (site, age, sex adjusted)",
    "autism_d_max": "most positive regional autism d",
    "autism_max_abs_d": "largest regional |d| of autism",
}


def regional_means(maps: dict[str, np.ndarray], labels: dict[str, np.ndarray], names: dict[int, str]) -> pd.DataFrame:
    """Mean of each Desikan–Killiany region per subject, columns ``"left:bankssts"`` ... (corpus callosum and label 0
    excluded; NaN vertices ignored).

    Parameters
    ----------
    maps : dict
        ``{hemisphere: (subjects, vertices)}`` maps on the template.
    labels : dict
        ``{hemisphere: (vertices,)}`` D-K labels on the same template.
    names : dict
        Label -> name (``L_bankssts``, ``R_insula``...), as :class:`studylib.data.templates.Parcellation` gives.
    """
    columns = {}
    for hemisphere, values in maps.items():
        values = np.asarray(values, dtype=np.float64)
        hemisphere_labels = np.asarray(labels[hemisphere])
        for label in sorted(set(np.unique(hemisphere_labels)) - {0}):
            region = names[int(label)].split("_", 1)[1]
            if region == "corpuscallosum":
                continue
            columns[f"{hemisphere}:{region}"] = np.nanmean(values[:, hemisphere_labels == label], axis=1)
    return pd.DataFrame(columns)


def design_matrix(*columns: np.ndarray) -> np.ndarray:
    return np.column_stack([np.asarray(c, dtype=np.float64) for c in columns])


def site_dummies(sites: np.ndarray) -> tuple[np.ndarray, list[str]]:
    names = sorted(set(sites))
    return (sites[:, None] == np.array(names)[None, :]).astype(np.float64), names


def adjusted_d(values: np.ndarray, group: np.ndarray, covariates: np.ndarray) -> np.ndarray:
    """Cohen's d of ``group`` (0/1) per column of ``values`` after adjusting for ``covariates`` (which include an
    intercept or site means): the group coefficient over the residual SD."""
    design = np.column_stack([covariates, group])
    beta, *_ = np.linalg.lstsq(design, values, rcond=None)
    residual = values - design @ beta
    sd = residual.std(axis=0, ddof=design.shape[1])
    return beta[-1] / sd


def cohort_regional_thickness(cohort) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A cohort's regional mean thickness per subject (as the real tables) and its covariates (``site``, ``age``,
    ``female``, ``autism``), from the cohort's files (:class:`studylib.data.cohort.Cohort`)."""
    from .templates import load_parcellation

    if "thickness" not in cohort.metrics:
        raise ValueError(f"cohort {cohort.name} has no thickness maps")
    parcels = load_parcellation("dk", cohort.template)
    maps = {h: cohort.maps(h, "thickness") for h in ("left", "right")}
    values = regional_means(maps, parcels.labels, parcels.names)
    subjects = cohort.subjects
    covariates = pd.DataFrame({"site": subjects["site"].astype(str).to_numpy(), "age": subjects["age"].to_numpy(float),
                               "female": (subjects["sex"] == "female").to_numpy(),
                               "autism": subjects["label"].to_numpy() if cohort.meta.get("task") == "autism" else 0})
    return values, covariates


def _site_adjusted_slope(y: np.ndarray, x: np.ndarray, sites: np.ndarray) -> float:
    dummies = (sites[:, None] == np.unique(sites)[None, :]).astype(float)
    design = np.column_stack([dummies, x])
    return float(np.linalg.lstsq(design, y, rcond=None)[0][-1])


def thickness_yardsticks(values: pd.DataFrame, covariates: pd.DataFrame) -> dict[str, float]:
    """The yardsticks of the module docstring.

    Parameters
    ----------
    values : DataFrame
        Subjects x regions, columns ``"left:<region>"`` / ``"right:<region>"`` (mm).
    covariates : DataFrame
        ``site``, ``age`` (years), ``female`` (bool) and ``autism`` (0/1), one row per subject in the same order.
    """
    x = values.to_numpy(np.float64)
    if len(x) != len(covariates):
        raise ValueError(f"{len(x)} subjects of regional values but {len(covariates)} rows of covariates")
    if len(x) < 3:
        raise ValueError("yardsticks need at least 3 subjects")
    correlation = np.corrcoef(x.T)
    upper = correlation[np.triu_indices_from(correlation, 1)]
    columns = list(values.columns)
    pairs = [(columns.index(c), columns.index("right:" + c.split(":", 1)[1])) for c in columns
             if c.startswith("left:") and "right:" + c.split(":", 1)[1] in columns]
    sites = covariates["site"].astype(str).to_numpy()
    mean = x.mean(axis=1)
    site_means = pd.Series(mean).groupby(sites).mean()
    autism = covariates["autism"].to_numpy(int)
    controls = autism == 0
    out = {
        "median_regional_sd": float(np.median(x.std(axis=0, ddof=1))),
        "first_eigenvector_share": float(np.linalg.eigvalsh(correlation)[-1] / len(correlation)),
        "median_correlation": float(np.median(upper)),
        "median_left_right_correlation": float(np.median([correlation[i, j] for i, j in pairs])) if pairs else np.nan,
        "site_mean_min": float(site_means.min()),
        "site_mean_max": float(site_means.max()),
        "site_mean_sd": float(site_means.std(ddof=1)) if len(site_means) > 1 else np.nan,
        "age_slope_controls": _site_adjusted_slope(mean[controls], covariates["age"].to_numpy(float)[controls] / 10,
                                                   sites[controls]) if controls.sum() > 2 else np.nan,
    }
    if 0 < autism.sum() < len(autism):
        dummies, _ = site_dummies(sites)
        d = adjusted_d(x, autism.astype(float), design_matrix(dummies, covariates["age"].to_numpy(float) / 10,
                                                          covariates["female"].to_numpy(float)))
        out |= {"autism_d_min": float(d.min()), "autism_d_max": float(d.max()),
                "autism_max_abs_d": float(np.abs(d).max())}
    return {key: round(value, 5) for key, value in out.items()}


def realism_table(simulated: dict[str, float], real: dict[str, float], *, label: str = "simulated") -> pd.DataFrame:
    """Yardsticks side by side: real, ``label``, their relative difference, the tolerance and whether it holds."""
    rows = []
    for key, description in _DESCRIPTIONS.items():
        if key not in real and key not in simulated:
            continue
        r, s = real.get(key, np.nan), simulated.get(key, np.nan)
        tolerance = TOLERANCES.get(key)
        relative = (s - r) / abs(r) if r else np.nan
        rows.append({"yardstick": description, "key": key, "real ABIDE I": r, label: s,
                     "relative difference": relative, "tolerance": tolerance,
                     "within": bool(abs(relative) <= tolerance) if tolerance is not None and np.isfinite(relative)
                     else None})
    return pd.DataFrame(rows)
