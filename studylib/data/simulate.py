"""Simulated cohorts on a template, calibrated to real brains, with planted effects and their Bayes-optimal accuracy.

Generative model, for each metric ``m`` (both hemispheres' cortex vertices concatenated)::

    x_i = mu_m + sd_m * o_s(i) + age_i * a_m + female_i * f_m + tau_i * t_m
          + c_s(i) * (A_m z_i + y_i * delta_m) + c_s(i) * w * sd_m * eps_i

- ``mu_m``: the template's group-average map.
- ``A_m z_i``, ``z_i ~ N(0, I)``: subject variation in two parts. A **regional field**: each Desikan–Killiany
  region's indicator, smoothed on the surface by a few millimetres of diffusion (``G``), carries a value
  whose covariance across the 68 regions is the real ABIDE I residual covariance of regional thickness
  (per-region SD and inter-regional correlation, left–right homology included; :mod:`studylib.data.calibration`).
  Because ``G`` leaks a little across region borders and white noise adds a little regional variance, the
  field's covariance is solved so that the **regional means** of the maps have the real covariance:
  ``M Sigma_u M^T + W = Sigma`` with ``M = P G`` (``P`` averages each region's vertices) and ``W`` the white
  noise's share. A **texture**: smooth Laplace–Beltrami eigenmodes of each hemisphere (variance decaying with
  frequency, per-vertex SD ``TEXTURE * sd_m``) with their regional means removed: variation within regions that
  leaves the regional covariance alone. (A texture with regional means of its own, subtracted from the target,
  left the field rank-deficient: the oracle then saw the planted effect through white noise alone, Bayes 0.96.)
- ``o_s``, ``c_s``: the real sites' offsets (thickness: per region, in mm, spread by ``G``; other metrics: the
  mean thickness offset in units of the median regional SD) and scales (within-site residual SD over the pooled
  one); ``w = NOISE`` white noise.
- ``a_m``: the real per-region thinning with age (controls, site-adjusted); ``f_m``: the real regional sex
  difference (ABIDE I controls aged 18-40, site- and age-adjusted, shrunk by empirical Bayes).
- ``tau_i``: the subject's log intracranial volume relative to the male mean, shared by every metric:
  ``tau_i = female_i * D + s * z'_i`` with the real ABIDE I controls' female-minus-male difference ``D`` and
  within-sex spread ``s`` of log eTIV (``tiv`` in the subjects table, ml). ``t_m``, the map's change per unit
  of log volume: thickness ``k * mu`` with the real allometric exponent ``k`` (about 0: ABIDE I's thickness does
  not grow with head size once site, age and sex are removed); sulcal depth ``mu / 3`` and curvature ``-mu / 3``
  (a brain scaled by ``lambda`` in length has sulci ``lambda`` times deeper and curvature ``1 / lambda``: an
  isometric assumption); myelin 0 (a ratio of two images, an assumption). The sex differences above are the
  real *total* ones: the direct part planted is the total minus what head size already carries.
- ``y_i in {0, 1}`` the label, ``delta_m`` the planted label effect: a regional Cohen's d per region spread by
  ``G`` (``delta = G M^-1 (d * s)``, so that regional mean differences are exactly ``d * s``). Two scenarios:
  ``realistic`` plants the real regional d's of thickness shrunk by empirical Bayes (autism: site-, age- and
  sex-adjusted; sex: the adult controls' d's), in thickness only; ``paper-sized`` plants the same pattern in every
  metric, scaled so that the cohort's Bayes-optimal accuracy is :data:`PAPER_SIZED_CEILING` (a little above the
  paper's best accuracy: 0.6785 for autism, 0.9506 for sex), to test whether the method finds an effect of the
  size it claims.

Only thickness has real tables. Sulcal depth, curvature and myelin take sizes from the literature, recorded in
each cohort's notes with what remains an assumption:

- **between-subject SD** (:data:`SPLIT_HALF_R`): Glasser et al. (2016, Nature 536:171, Supplementary Fig. 1)
  report the correlation of two independent 210-subject group maps of each metric: thickness 0.994, sulcal depth
  0.996, curvature 0.979, myelin 0.998. For group means of ``n`` subjects, ``r = S^2 / (S^2 + sigma^2 / n)``
  (``S``: spatial SD of the true group map, ``sigma``: between-subject SD at a vertex), so
  ``sigma / S = sqrt(n (1/r - 1))``. Each metric's per-vertex SD is set to thickness's (from the real tables)
  times the ratio of the two ``sigma / S`` (``n`` cancels) times the ratio of the template maps' spatial SDs.
  Assumption: the thickness correlation structure across regions.
- **age** (:data:`AGE_PER_DECADE`, a fraction of the group map per decade): sulcal depth shrinks about 0.4 mm
  per decade (Kochunov et al. 2005, Hum Brain Mapp 26:210), 3% of a 13 mm sulcus; T1w/T2w myelin rises in young
  adults by up to about 1% a year (Grydeland et al. 2013, J Neurosci 33:18618; Shafee et al. 2015, NeuroImage
  105:473), taken as half of that everywhere; curvature 0. The uniform spread is an assumption.
- **sex**: no difference besides head size's (an assumption); (``paper-sized`` only) the thickness effect
  pattern in their own SD units.

Every number comes from the calibration shipped with the package, so the same parameters give the same
cohort on every machine, with or without a data directory.

The **Bayes-optimal classifier** knows every parameter and each subject's site, age and sex, not the head size.
Given those, ``x`` (all metrics) is Gaussian with covariance ``c^2 (A A^T + w^2 sd^2 I) + s^2 t t^T`` in both
classes (block-diagonal over metrics plus the rank-one head-size term that links them: Sherman–Morrison), so the
optimal rule is linear and
its accuracy within site ``s`` with prevalence ``p`` and Mahalanobis separation ``D_s`` is
``p Phi(D/2 + t/D) + (1-p) Phi(D/2 - t/D)``, ``t = log(p/(1-p))``; the cohort's figure averages the sites
by their share of subjects. :func:`oracle_log_odds` applies the same rule to maps, so a Monte-Carlo estimate
on fresh samples can check the analytic value.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from scipy.optimize import brentq
from scipy.stats import norm

from ..geometry.laplacian import cotangent_laplacian, laplacian_eigenmodes
from ..geometry.mesh import submesh
from ..hashing import code_digest, sha256_bytes
from ..storage import atomic_path
from .calibration import Calibration, load_calibration
from .templates import HEMISPHERES, Parcellation, Template, load_parcellation

__all__ = [
    "PAPER_SIZED_CEILING",
    "SCENARIOS",
    "CohortModel",
    "bayes_accuracy",
    "build_model",
    "oracle_log_odds",
    "regional_draw",
    "sample_covariates",
    "sample_maps",
    "save_truth",
]

TASKS = ("sex", "autism")
SCENARIOS = ("realistic", "paper-sized")
#: Bayes-optimal accuracy of the ``paper-sized`` scenario: a little above the paper's best (autism 2-stage 0.6785,
#: AUC 0.7237; sex 0.9506).
PAPER_SIZED_CEILING = {"autism": 0.735, "sex": 0.97}

#: Split-half correlations of 210-subject group maps (Glasser et al. 2016, Nature 536:171, Supplementary Fig. 1):
#: they fix each metric's between-subject SD relative to thickness's (module docstring).
SPLIT_HALF_R = {"thickness": 0.994, "sulc": 0.996, "curvature": 0.979, "myelin": 0.998}
#: Change per decade as a fraction of the group map (sulc: of its contrast around the cortex mean), for the
#: metrics without a real table (literature in the module docstring).
AGE_PER_DECADE = {"sulc": -0.03, "curvature": 0.0, "myelin": 0.05}
#: Change of each map per unit of log intracranial volume, as a multiple of the group map (thickness: the real
#: allometric exponent, from the calibration).
TIV_EXPONENT = {"sulc": 1.0 / 3.0, "curvature": -1.0 / 3.0, "myelin": 0.0}
TEXTURE = 0.6  # per-vertex SD of the within-region texture, in units of the metric's regional SD
NOISE = 0.3  # white noise SD, same units
DIFFUSION_MM2 = 9.0  # smoothing of region indicators: diffusion time in mm^2 (about 3 mm)
#: The HCP-like cohort (one site): age mean and SD, range (HCP S1200: 22-37).
_HCP_AGE = (29.0, 3.7, 22.0, 37.0)


@dataclass
class MetricBlock:
    """Generative parameters of one metric over the concatenated cortex vertices of both hemispheres."""

    metric: str
    sd: float
    mean: np.ndarray  # (V,)
    loadings: np.ndarray  # (V, r)
    effect: np.ndarray  # (V,) label effect delta
    sex_effect: np.ndarray  # (V,) female minus male
    age_effect: np.ndarray  # (V,) per decade
    tiv: np.ndarray  # (V,) change per unit of log intracranial volume
    noise: float = NOISE  # white noise SD in units of sd
    site_effect: np.ndarray | None = None  # (sites, V) mean shift of each site; None: sd x the model's site_offset
    # Thin SVD of the loadings, for exact Mahalanobis distances
    _u: np.ndarray = field(init=False, repr=False)
    _s: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._u, self._s, _ = np.linalg.svd(self.loadings, full_matrices=False)

    def precision_times(self, vector: np.ndarray, scale: float) -> np.ndarray:
        """``(scale^2 (A A^T + noise^2 sd^2 I))^-1 vector`` by the SVD of ``A``."""
        white = (self.noise * self.sd) ** 2
        inside = self._u.T @ vector
        return (self._u @ (inside / (self._s**2 + white)) + (vector - self._u @ inside) / white) / scale**2


@dataclass
class CohortModel:
    """All parameters of a simulated cohort: enough to sample it and to score the oracle."""

    task: str
    scenario: str
    template: str
    vertex_index: dict[str, np.ndarray]  # cortex vertices of each hemisphere in the template
    blocks: dict[str, MetricBlock]
    site_names: list[str]
    site_share: np.ndarray
    site_prevalence: np.ndarray
    site_female: np.ndarray
    site_age: np.ndarray  # (sites, 2): mean and SD of age
    site_offset: np.ndarray  # (sites,) in SDs of each metric (metrics without a regional offset)
    site_scale: np.ndarray
    planted: pd.DataFrame  # region, hemisphere, metric, d, source
    notes: list[str]
    tiv_female: float  # female-minus-male log intracranial volume
    tiv_sd: float  # its within-sex SD
    tiv_reference_ml: float  # the males' geometric mean
    effect_scale: float = 1.0  # the paper-sized scenario's factor on the pattern (1 for realistic)

    def label_shift(self, metric: str, site: int) -> np.ndarray:
        """Difference of the classes' mean maps of ``metric`` within ``site`` (label 1 minus label 0)."""
        block = self.blocks[metric]
        shift = self.site_scale[site] * block.effect
        return shift + self.tiv_female * block.tiv if self.task == "sex" else shift

    def precision_times(self, vectors: dict[str, np.ndarray], site: int) -> dict[str, np.ndarray]:
        """The inverse of the within-class covariance of all metrics (block-diagonal plus the shared rank-one
        head-size term, by Sherman–Morrison) times ``vectors`` (metric -> (V,))."""
        scale = self.site_scale[site]
        first = {m: self.blocks[m].precision_times(v, scale) for m, v in vectors.items()}
        tiv = {m: self.blocks[m].precision_times(self.blocks[m].tiv, scale) for m in vectors}
        along = sum(float(self.blocks[m].tiv @ first[m]) for m in vectors)
        curvature = sum(float(self.blocks[m].tiv @ tiv[m]) for m in vectors)
        factor = self.tiv_sd**2 * along / (1.0 + self.tiv_sd**2 * curvature)
        return {m: first[m] - factor * tiv[m] for m in vectors}

    def separation(self, site: int) -> float:
        """Mahalanobis distance between the classes' means within ``site`` (all metrics)."""
        shifts = {m: self.label_shift(m, site) for m in self.blocks}
        weights = self.precision_times(shifts, site)
        return float(np.sqrt(max(0.0, sum(float(shifts[m] @ weights[m]) for m in shifts))))


def _cached_arrays(cache: Path | None, name: str, key: str, compute) -> dict[str, np.ndarray]:
    path = cache / f"{name}_{key[:12]}.npz" if cache else None
    if path is not None and path.is_file():
        with np.load(path) as stored:
            return dict(stored)
    arrays = compute()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as partial:
            np.savez(partial, **arrays)
    return arrays


def _cortex_mesh(template: Template, hemisphere: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    surface = template.surfaces[hemisphere]
    return submesh(surface.vertices, surface.faces, surface.cortex)


def _smooth_modes(template: Template, hemisphere: str, n_modes: int, cache: Path | None) -> tuple:
    vertices, faces, index = _cortex_mesh(template, hemisphere)
    # keyed by the mesh, the cortex mask and the eigensolver's code, so a stale cache is never reused
    key = sha256_bytes(vertices.tobytes() + faces.tobytes() + code_digest(laplacian_eigenmodes.__module__).encode())

    def compute():
        eigenvalues, modes = laplacian_eigenmodes(vertices, faces, n_modes + 1)
        return {"eigenvalues": eigenvalues[1:], "modes": modes[:, 1:]}  # the constant mode: the regional field's

    stored = _cached_arrays(cache, f"modes_{template.name}_{hemisphere}_{n_modes}", key, compute)
    return stored["eigenvalues"], stored["modes"], index


def _region_labels(parcels: Parcellation, regions: list[str]) -> dict[str, list[int]]:
    """The parcellation's label of each calibration region (``"left:bankssts"``), per hemisphere, in order."""
    label_of = {name: label for label, name in parcels.names.items()}
    out: dict[str, list[int]] = {h: [] for h in HEMISPHERES}
    for region in regions:
        hemisphere, name = region.split(":")
        key = ("L_" if hemisphere == "left" else "R_") + name
        if key not in label_of:
            raise ValueError(f"parcellation {parcels.name!r} has no region {key}; simulated cohorts need the "
                             f"Desikan–Killiany regions")
        out[hemisphere].append(label_of[key])
    return out


def _region_fields(template: Template, hemisphere: str, labels: np.ndarray, wanted: list[int],
                   cache: Path | None) -> tuple[np.ndarray, np.ndarray]:
    """Smoothed indicators ``G`` (cortex vertices x regions) of one hemisphere and the averaging matrix ``P``
    (regions x cortex vertices, rows summing to 1)."""
    vertices, faces, _ = _cortex_mesh(template, hemisphere)
    indicators = (labels[:, None] == np.asarray(wanted)[None, :]).astype(np.float64)
    counts = indicators.sum(0)
    if (counts == 0).any():
        empty = [wanted[i] for i in np.flatnonzero(counts == 0)]
        raise ValueError(f"{template.name} {hemisphere}: region label(s) {empty} have no cortex vertex")
    key = sha256_bytes(vertices.tobytes() + faces.tobytes() + indicators.tobytes()
                       + f"{DIFFUSION_MM2}".encode() + code_digest(cotangent_laplacian.__module__).encode())

    def compute():
        stiffness, mass = cotangent_laplacian(vertices, faces)
        system = (sp.diags(mass) + DIFFUSION_MM2 * stiffness).tocsc()
        return {"fields": spla.splu(system).solve(mass[:, None] * indicators)}

    fields = _cached_arrays(cache, f"regions_{template.name}_{hemisphere}", key, compute)["fields"]
    return fields, (indicators / counts).T


def _texture(template: Template, n_modes: int, cache: Path | None) -> tuple[np.ndarray, dict]:
    """Texture loadings (V x 2 n_modes), mean per-vertex variance 1, and each hemisphere's cortex index."""
    smooth = {h: _smooth_modes(template, h, n_modes, cache) for h in HEMISPHERES}
    sizes = [len(smooth[h][2]) for h in HEMISPHERES]
    texture = np.zeros((sum(sizes), 2 * n_modes))
    for k, h in enumerate(HEMISPHERES):
        eigenvalues, modes, _ = smooth[h]
        spectrum = 1.0 / (1.0 + eigenvalues / eigenvalues[min(9, len(eigenvalues) - 1)])
        variance = (modes**2 * spectrum).sum(1).mean()
        rows = slice(0, sizes[0]) if k == 0 else slice(sizes[0], None)
        texture[rows, k * n_modes:(k + 1) * n_modes] = modes * np.sqrt(spectrum / variance)
    return texture, {h: smooth[h][2] for h in HEMISPHERES}


def _block_diag(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    out = np.zeros((left.shape[0] + right.shape[0], left.shape[1] + right.shape[1]))
    out[: left.shape[0], : left.shape[1]] = left
    out[left.shape[0]:, left.shape[1]:] = right
    return out


def _sites(task: str, n_sites: int, calibration: Calibration) -> dict[str, np.ndarray]:
    """Site names, shares, prevalence, share of females, age distribution, offsets (in SDs) and scales."""
    if task == "sex":  # one acquisition site, balanced sexes, young adults (HCP: ages 22-37)
        return {"names": ["site01"], "share": np.ones(1), "prevalence": np.full(1, 0.5), "female": np.full(1, 0.5),
                "age": np.array([_HCP_AGE[:2]]), "offset": np.zeros(1), "scale": np.ones(1),
                "offset_regional_mm": np.zeros((1, len(calibration.regions)))}
    real = calibration.sites.sort_values("n", ascending=False, kind="stable").reset_index(drop=True)
    chosen = real.iloc[np.arange(n_sites) % len(real)]
    # more sites than ABIDE I has: the real ones repeat, named apart
    names = [s if i < len(real) else f"{s}_{i}" for i, s in enumerate(chosen["site"])]
    unit = float(np.median(calibration.array("thickness", "residual_sd_mm")))
    return {"names": names, "share": chosen["n"].to_numpy(float) / chosen["n"].sum(),
            "prevalence": chosen["autism"].to_numpy(float), "female": chosen["female"].to_numpy(float),
            "age": chosen[["age_mean", "age_sd"]].to_numpy(float),
            "offset": chosen["thickness_offset_mm"].to_numpy(float) / unit,
            "scale": chosen["thickness_scale"].to_numpy(float),
            "offset_regional_mm": np.array(chosen["thickness_offset_regional_mm"].tolist(), dtype=float)}


def _site_accuracy(separation: np.ndarray, prevalence: np.ndarray) -> np.ndarray:
    """Bayes-optimal accuracy of two Gaussian classes ``separation`` (Mahalanobis) apart with ``prevalence``."""
    separation = np.maximum(separation, 1e-12)
    threshold = np.log(prevalence / (1 - prevalence))
    return prevalence * norm.cdf(separation / 2 + threshold / separation) + \
        (1 - prevalence) * norm.cdf(separation / 2 - threshold / separation)


def _accuracy(separations: np.ndarray, prevalence: np.ndarray, share: np.ndarray) -> float:
    return float((share * _site_accuracy(separations, prevalence)).sum())


def build_model(template: Template, task: str, metrics: list[str], n_sites: int, *,
                scenario: str = "paper-sized", n_modes: int = 60, cache: Path | None = None,
                parcels: Parcellation | None = None, calibration: Calibration | None = None) -> CohortModel:
    """The parameters of a simulated cohort: every one calibrated, none random (the subjects' draw is seeded by
    the caller).

    Parameters
    ----------
    template : Template
    task : {"sex", "autism"}
        ``sex``: HCP-like, one site, label 1 = female. ``autism``: ABIDE-like, label 1 = autism, the ``n_sites``
        largest ABIDE I sites (repeated when more are asked for) with their sizes, prevalence, sex ratio, ages,
        thickness offsets and scales.
    metrics : list of str
    n_sites : int
    scenario : {"realistic", "paper-sized"}
        The planted label effect (see the module docstring).
    n_modes : int
        Texture modes per hemisphere.
    cache : Path, optional
        Folder to keep eigenmodes and smoothed region indicators in (they take seconds to compute).
    parcels : Parcellation, optional
        Regions named like the Desikan–Killiany atlas (default: the D-K atlas of ``template``).
    calibration : Calibration, optional
        Default: the one shipped with the package.
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose from {', '.join(TASKS)}")
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; choose from {', '.join(SCENARIOS)}")
    if task == "sex" and n_sites != 1:
        raise ValueError(f"the HCP-like sex cohort is simulated with one site, not {n_sites}")
    calibration = calibration or load_calibration()
    parcels = parcels or load_parcellation("dk", template.name)
    regions = calibration.regions
    texture, vertex_index = _texture(template, n_modes, cache)
    wanted = _region_labels(parcels, regions)
    fields, averaging = [], []
    for h in HEMISPHERES:
        labels = np.asarray(parcels.labels[h])[vertex_index[h]]
        g, p = _region_fields(template, h, labels, wanted[h], cache)
        fields.append(g)
        averaging.append(p)
    fields_all = _block_diag(*fields)  # V x 68, regions in calibration order (left block, then right)
    average = _block_diag(*averaging)  # 68 x V
    order = np.argsort([0 if r.startswith("left:") else 1 for r in regions], kind="stable")
    if not np.array_equal(order, np.arange(len(regions))):
        raise ValueError("calibration regions must list the left hemisphere first")
    mixing = average @ fields_all  # M: regional means of the smoothed indicators
    unmix = np.linalg.inv(mixing)
    spread = fields_all @ unmix  # regional values -> a smooth vertex map with exactly those regional means
    texture = texture - spread @ (average @ texture)  # within-region texture: no regional mean of its own
    counts = np.concatenate([np.asarray((p > 0).sum(1)).ravel() for p in averaging])

    residual_sd = calibration.array("thickness", "residual_sd_mm")
    correlation = calibration.array("thickness", "residual_correlation")
    contrast = "autism" if task == "autism" else "sex"
    shrunk = calibration.array(contrast, "shrunk_d")
    pattern = shrunk if np.any(shrunk) else calibration.array(contrast, "d")
    sex_pattern = calibration.array("sex", "shrunk_d")
    carriers = ["thickness"] if scenario == "realistic" else list(metrics)
    notes = [
        "calibrated to ABIDE I regional thickness (studylib/data/resources/abide1_calibration.json): per-region "
        "SD and inter-regional correlation, site offsets and scales, age slopes, sex differences",
        f"scenario {scenario}: " + (
            f"regional {contrast} d's of ABIDE I thickness shrunk by empirical Bayes (tau^2 = "
            f"{calibration.raw[contrast]['tau2']}), planted in thickness only (no real table for the other metrics)"
            if scenario == "realistic" else
            f"the shrunk real {contrast} pattern of ABIDE I thickness, planted in every metric and scaled to a "
            f"Bayes-optimal accuracy of {PAPER_SIZED_CEILING[task]}"),
        f"sex differences of thickness from ABIDE I controls aged 18-40 (n = {calibration.raw['sex']['n']}, "
        f"{calibration.raw['sex']['n_female']} female), site- and age-adjusted, shrunk by empirical Bayes",
    ]
    if parcels.note:
        notes.append(parcels.note)
    notes += list(template.notes)
    site = _sites(task, n_sites, calibration)
    head = calibration.raw["tiv"]
    tiv_female, tiv_sd = float(head["female_minus_male_log"]), float(head["within_sex_sd_log"])
    notes.append(f"head size: log intracranial volume female - male {tiv_female:+.3f}, within-sex SD {tiv_sd:.3f} "
                 f"(ABIDE I controls, n = {head['n']}, {head['n_female']} female, site- and age-adjusted eTIV); "
                 f"thickness's allometric exponent {head['thickness_exponent']:.3f} "
                 f"(SE {head['thickness_exponent_se']:.3f}); sulc and curvature scale isometrically, myelin not")

    def group_map(metric: str) -> np.ndarray:
        return np.concatenate([template.metric_map(h, metric)[vertex_index[h]] for h in HEMISPHERES])

    def field_loadings(regional_sd: np.ndarray, tiv_regional: np.ndarray) -> tuple[np.ndarray, float]:
        """Loadings whose regional means have the target covariance (less head size's share), and the SD unit."""
        sd = float(np.median(regional_sd))
        target = correlation * np.outer(regional_sd, regional_sd) - tiv_sd**2 * np.outer(tiv_regional, tiv_regional)
        white = np.diag((NOISE * sd) ** 2 / counts)  # what white noise adds to regional means
        try:
            field_factor = np.linalg.cholesky(unmix @ (target - white) @ unmix.T)
        except np.linalg.LinAlgError:
            raise ValueError(f"{template.name}: the regional covariance left after head size's share (within-sex "
                             f"SD {tiv_sd}) and white noise is not positive definite; head size explains more "
                             f"of the regions' variance than they have") from None
        return np.hstack([fields_all @ field_factor, TEXTURE * sd * texture]), sd

    def vertex_sd(loadings: np.ndarray, sd: float) -> float:
        return float(np.sqrt((loadings**2).sum(1).mean() + (NOISE * sd) ** 2))

    thickness_map = group_map("thickness")
    thickness_unit = vertex_sd(*field_loadings(residual_sd, np.zeros(len(regions)))) / np.std(thickness_map)
    thickness_ratio = np.sqrt(1 / SPLIT_HALF_R["thickness"] - 1)
    blocks, planted = {}, []
    for metric in metrics:
        mean = group_map(metric)
        if metric == "thickness":
            tiv = float(head["thickness_exponent"]) * mean
            regional_sd = residual_sd
            age_effect = spread @ calibration.array("thickness", "age_slope_mm_per_decade")
            sex_direct = sex_pattern * regional_sd - tiv_female * (average @ tiv)  # the real ones are totals
        else:
            tiv = TIV_EXPONENT[metric] * mean
            # per-vertex SD from the split-half ratios; the regional SD that gives it (everything scales with it)
            wanted_sd = thickness_unit * np.std(mean) * np.sqrt(1 / SPLIT_HALF_R[metric] - 1) / thickness_ratio
            regional_sd = np.full(len(regions), wanted_sd / vertex_sd(*field_loadings(np.ones(len(regions)),
                                                                                         np.zeros(len(regions)))))
            centre = mean.mean() if metric == "sulc" else 0.0
            age_effect = AGE_PER_DECADE[metric] * (mean - centre)
            sex_direct = np.zeros(len(regions))
            notes.append(f"{metric}: between-subject SD at a vertex {wanted_sd:.3g} (Glasser et al. 2016 split-half "
                         f"r {SPLIT_HALF_R[metric]} vs thickness {SPLIT_HALF_R['thickness']}); regional SD "
                         f"{regional_sd[0]:.3g}; age {AGE_PER_DECADE[metric]:+.2f} x the group map per decade; "
                         f"assumptions: the thickness correlation structure, no sex difference but head size's")
        tiv_regional = average @ tiv
        loadings, sd = field_loadings(regional_sd, tiv_regional)
        d = pattern if metric in carriers else np.zeros(len(regions))
        site_effect = site["offset_regional_mm"] @ spread.T if metric == "thickness" else None
        effect = d * regional_sd
        if task == "sex" and scenario == "realistic" and metric == "thickness":
            effect = sex_direct  # the real d's are the total sex difference, head size's share included
        blocks[metric] = MetricBlock(metric, sd, mean, loadings, effect=spread @ effect,
                                     sex_effect=spread @ sex_direct, age_effect=age_effect, tiv=tiv,
                                     site_effect=site_effect)
        planted.append(pd.DataFrame({"hemisphere": [r.split(":")[0] for r in regions],
                                     "region": [r.split(":")[1] for r in regions],
                                     "label": np.concatenate([wanted[h] for h in HEMISPHERES]),
                                     "metric": metric, "d": d, "sd": regional_sd}))
    model = CohortModel(
        task=task, scenario=scenario, template=template.name, vertex_index=vertex_index, blocks=blocks,
        site_names=site["names"], site_share=site["share"], site_prevalence=site["prevalence"],
        site_female=site["female"], site_age=site["age"], site_offset=site["offset"], site_scale=site["scale"],
        planted=pd.concat(planted, ignore_index=True), notes=notes, tiv_female=tiv_female, tiv_sd=tiv_sd,
        tiv_reference_ml=float(head["male_geometric_mean_ml"]),
    )
    if scenario == "paper-sized":
        # squared separation as a quadratic in the pattern's factor k: the head-size shift (sex) does not scale
        terms = []
        for s in range(len(model.site_names)):
            pattern_shift = {m: model.site_scale[s] * b.effect for m, b in blocks.items()}
            head_shift = {m: model.label_shift(m, s) - pattern_shift[m] for m in blocks}
            on_pattern, on_head = model.precision_times(pattern_shift, s), model.precision_times(head_shift, s)
            terms.append([sum(float(pattern_shift[m] @ on_pattern[m]) for m in blocks),
                          sum(float(pattern_shift[m] @ on_head[m]) for m in blocks),
                          sum(float(head_shift[m] @ on_head[m]) for m in blocks)])
        a, b, c = np.array(terms).T

        def separations(k: float) -> np.ndarray:
            return np.sqrt(np.maximum(k * k * a + 2 * k * b + c, 0.0))

        target = PAPER_SIZED_CEILING[task]
        scale = brentq(lambda k: _accuracy(separations(k), model.site_prevalence, model.site_share) - target,
                       1e-6, 1e6)
        for block in blocks.values():
            block.effect = block.effect * scale
        model.effect_scale = float(scale)
        model.planted["d"] *= scale
    model.planted["source"] = (f"ABIDE I thickness {contrast} d, EB-shrunk" +
                               ("" if scenario == "realistic" else f", x {model.effect_scale:.3g} (paper-sized)"))
    return model


def sample_covariates(model: CohortModel, n_subjects: int, rng: np.random.Generator) -> pd.DataFrame:
    """Subjects table (site, label, sex, age, head size) drawn from the model's site structure.

    ``tiv_log`` is the log intracranial volume relative to the males' mean (what the maps depend on), ``tiv`` the
    volume in ml.
    """
    counts = rng.multinomial(n_subjects, model.site_share)
    site = np.repeat(np.arange(len(counts)), counts)
    label = (rng.random(n_subjects) < model.site_prevalence[site]).astype(int)
    if model.task == "sex":
        female = label.astype(bool)
        age = np.clip(rng.normal(model.site_age[site, 0], model.site_age[site, 1]), *_HCP_AGE[2:])
    else:
        female = rng.random(n_subjects) < model.site_female[site]
        age = np.clip(rng.normal(model.site_age[site, 0], model.site_age[site, 1]), 6, 60)
    tiv_log = model.tiv_female * female + model.tiv_sd * rng.standard_normal(n_subjects)
    order = rng.permutation(n_subjects)
    return pd.DataFrame({"site_index": site[order], "label": label[order], "female": female[order],
                         "age": np.round(age[order], 1), "tiv_log": tiv_log[order],
                         "tiv": np.round(model.tiv_reference_ml * np.exp(tiv_log[order]), 1)})


def _known_mean(model: CohortModel, block: MetricBlock, covariates: pd.DataFrame) -> np.ndarray:
    site = covariates["site_index"].to_numpy()
    decades = (covariates["age"].to_numpy() - model.site_age[:, 0].mean()) / 10.0
    shift = block.site_effect[site] if block.site_effect is not None else block.sd * model.site_offset[site, None]
    mean = block.mean + shift + decades[:, None] * block.age_effect
    if model.task == "autism":
        mean = mean + covariates["female"].to_numpy()[:, None] * block.sex_effect
    return mean


def sample_maps(model: CohortModel, metric: str, covariates: pd.DataFrame, rng: np.random.Generator) -> np.ndarray:
    """Maps of one metric for the given subjects: (subjects, cortex vertices of both hemispheres), float32."""
    block = model.blocks[metric]
    site = covariates["site_index"].to_numpy()
    label = covariates["label"].to_numpy()[:, None]
    latent = rng.standard_normal((len(covariates), block.loadings.shape[1]))
    varying = latent @ block.loadings.T + label * block.effect
    noise = rng.standard_normal(varying.shape, dtype=np.float32)
    maps = _known_mean(model, block, covariates) + model.site_scale[site, None] * varying
    maps += covariates["tiv_log"].to_numpy()[:, None] * block.tiv
    maps += (model.site_scale[site] * block.noise * block.sd)[:, None] * noise
    return maps.astype(np.float32)


def regional_draw(model: CohortModel, n_subjects: int, rng: np.random.Generator, metrics: tuple[str, ...] = ("thickness",),
                  chunk: int = 128) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """Draw ``n_subjects`` and return, per metric, their Desikan–Killiany regional means (columns
    ``"left:bankssts"`` ..., as the real FreeSurfer tables) and their covariates (``site``, ``age``, ``female``,
    ``autism``), without keeping the maps."""
    from .realism import regional_means

    parcels = load_parcellation("dk", model.template)
    covariates = sample_covariates(model, n_subjects, rng)
    sizes = [len(model.vertex_index[h]) for h in HEMISPHERES]
    labels = {h: np.asarray(parcels.labels[h])[model.vertex_index[h]] for h in HEMISPHERES}
    parts: dict[str, list[pd.DataFrame]] = {m: [] for m in metrics}
    for first in range(0, n_subjects, chunk):
        for metric in metrics:
            maps = sample_maps(model, metric, covariates.iloc[first: first + chunk], rng)
            parts[metric].append(regional_means({"left": maps[:, : sizes[0]], "right": maps[:, sizes[0]:]}, labels,
                                                parcels.names))
    table = pd.DataFrame({"site": [model.site_names[s] for s in covariates["site_index"]],
                          "age": covariates["age"].to_numpy(), "female": covariates["female"].to_numpy(),
                          "autism": covariates["label"].to_numpy() if model.task == "autism" else 0})
    return {m: pd.concat(p, ignore_index=True) for m, p in parts.items()}, table


def oracle_log_odds(model: CohortModel, maps: dict[str, np.ndarray], covariates: pd.DataFrame) -> np.ndarray:
    """The Bayes-optimal log-odds of label 1 for each subject, from maps and known covariates (site, age, sex; the
    head size is not known to it, only its distribution)."""
    site = covariates["site_index"].to_numpy()
    prevalence = model.site_prevalence[site]
    log_odds = np.log(prevalence / (1 - prevalence))
    expected_tiv = (model.tiv_female * covariates["female"].to_numpy(float) if model.task == "autism"
                    else np.zeros(len(covariates)))
    for s in np.unique(site):
        rows = site == s
        shifts = {m: model.label_shift(m, s) for m in model.blocks}
        weights = model.precision_times(shifts, s)
        for metric, block in model.blocks.items():
            residual = (maps[metric][rows] - _known_mean(model, block, covariates[rows])
                        - expected_tiv[rows, None] * block.tiv - shifts[metric] / 2)
            log_odds[rows] += residual @ weights[metric]
    return log_odds


def bayes_accuracy(model: CohortModel) -> pd.DataFrame:
    """Analytic Bayes-optimal accuracy per site and over the cohort (last row, ``site = "all"``)."""
    rows = []
    for s, name in enumerate(model.site_names):
        separation = model.separation(s)
        p = model.site_prevalence[s]
        accuracy = float(_site_accuracy(np.asarray(separation), np.asarray(p)))
        rows.append({"site": name, "share": model.site_share[s], "prevalence": p, "separation": separation,
                     "bayes_accuracy": accuracy, "balanced_accuracy_equal_priors": norm.cdf(separation / 2)})
    table = pd.DataFrame(rows)
    overall = {"site": "all", "share": 1.0, "prevalence": float((table["share"] * table["prevalence"]).sum()),
               "separation": np.nan,
               "bayes_accuracy": float((table["share"] * table["bayes_accuracy"]).sum()),
               "balanced_accuracy_equal_priors": float(
                   (table["share"] * table["balanced_accuracy_equal_priors"]).sum())}
    return pd.concat([table, pd.DataFrame([overall])], ignore_index=True)


def model_summary(model: CohortModel) -> dict[str, Any]:
    """JSON-ready description of the model (for ``truth/model.json``)."""
    return {"task": model.task, "scenario": model.scenario, "effect_scale": model.effect_scale,
            "template": model.template, "sites": model.site_names,
            "site_share": model.site_share.tolist(), "site_prevalence": model.site_prevalence.tolist(),
            "site_female": model.site_female.tolist(), "site_offset": model.site_offset.tolist(),
            "site_scale": model.site_scale.tolist(), "noise": {m: b.noise for m, b in model.blocks.items()},
            "tiv": {"female_minus_male_log": model.tiv_female, "within_sex_sd_log": model.tiv_sd,
                    "male_geometric_mean_ml": model.tiv_reference_ml},
            "metric_sd": {m: b.sd for m, b in model.blocks.items()}, "notes": model.notes}


def save_truth(model: CohortModel, folder: Path, n_vertices: dict[str, int]) -> None:
    """Planted effect maps on the full template (NaN outside cortex), planted regions and the Bayes table."""
    folder.mkdir(parents=True, exist_ok=True)
    for metric, block in model.blocks.items():
        start = 0
        for h in HEMISPHERES:
            index = model.vertex_index[h]
            full = np.full(n_vertices[h], np.nan, dtype=np.float32)
            full[index] = block.effect[start: start + len(index)]
            np.save(folder / f"{h}_{metric}_effect.npy", full)
            start += len(index)
    model.planted.to_csv(folder / "planted_regions.csv", index=False)
    bayes_accuracy(model).to_csv(folder / "bayes_accuracy.csv", index=False)
    (folder / "model.json").write_text(json.dumps(model_summary(model), indent=2) + "\n")
