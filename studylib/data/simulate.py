"""Simulated cohorts on a template, calibrated to real brains, with planted effects and their Bayes-optimal accuracy.

Generative model, for each metric ``m`` (both hemispheres' cortex vertices concatenated)::

    x_i = mu_m + sd_m * o_s(i) + age_i * a_m + female_i * f_m
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
- ``y_i in {0, 1}`` the label, ``delta_m`` the planted label effect: a regional Cohen's d per region spread by
  ``G`` (``delta = G M^-1 (d * s)``, so that regional mean differences are exactly ``d * s``). Two scenarios:
  ``realistic`` plants the real regional d's of thickness shrunk by empirical Bayes (autism: site-, age- and
  sex-adjusted; sex: the adult controls' d's), in thickness only; ``paper-sized`` plants the same pattern in every
  metric, scaled so that the cohort's Bayes-optimal accuracy is :data:`PAPER_SIZED_CEILING` (a little above the
  paper's best accuracy: 0.6785 for autism, 0.9506 for sex), to test whether the method finds an effect of the
  size it claims.

Only thickness has real tables. Sulcal depth, curvature and myelin take the **assumptions** recorded in each
cohort's notes: a between-subject SD that is a fixed fraction of the template map's spatial SD (:data:`_SUBJECT_SD`),
the thickness correlation structure, fixed age effects, no sex difference, and (``paper-sized`` only) the
thickness effect pattern in their own SD units.

Every number comes from the calibration shipped with the package, so the same parameters give the same
cohort on every machine, with or without a data directory.

The **Bayes-optimal classifier** knows every parameter and each subject's site, age and sex. Given those,
``x`` is Gaussian with covariance ``c^2 (A A^T + w^2 sd^2 I)`` in both classes, so the optimal rule is linear and
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

#: Between-subject SD of the metrics without a real table, as a fraction of the template map's spatial SD
#: (an assumption; thickness uses the real regional SDs).
_SUBJECT_SD = {"sulc": 0.35, "curvature": 0.5, "myelin": 0.4}
#: Effect of age per decade (in SDs) for the metrics without a real table (an assumption).
_AGE_PER_DECADE = {"sulc": 0.05, "curvature": 0.0, "myelin": 0.1}
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
    effect_scale: float = 1.0  # the paper-sized scenario's factor on the pattern (1 for realistic)

    def separation(self, site: int) -> float:
        """Mahalanobis distance between the classes' means within ``site`` (all metrics)."""
        total = 0.0
        for block in self.blocks.values():
            delta = self.site_scale[site] * block.effect
            total += float(delta @ block.precision_times(delta, self.site_scale[site]))
        return float(np.sqrt(total))


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
    blocks, planted = {}, []
    for metric in metrics:
        mean = np.concatenate([template.metric_map(h, metric)[vertex_index[h]] for h in HEMISPHERES])
        if metric == "thickness":
            regional_sd = residual_sd
            age_regional = calibration.array("thickness", "age_slope_mm_per_decade")
        else:
            notes.append(f"{metric}: assumptions (no real table): between-subject SD {_SUBJECT_SD[metric]} x the "
                         f"template map's spatial SD, the thickness correlation structure, age effect "
                         f"{_AGE_PER_DECADE[metric]} SD per decade, no sex difference")
            regional_sd = np.full(len(regions), _SUBJECT_SD[metric] * float(np.std(mean)))
            age_regional = np.full(len(regions), _AGE_PER_DECADE[metric]) * regional_sd
        sd = float(np.median(regional_sd))
        target = correlation * np.outer(regional_sd, regional_sd)
        white = np.diag((NOISE * sd) ** 2 / counts)  # what white noise adds to regional means
        field_factor = np.linalg.cholesky(unmix @ (target - white) @ unmix.T)
        loadings = np.hstack([fields_all @ field_factor, TEXTURE * sd * texture])
        d = pattern if metric in carriers else np.zeros(len(regions))
        sex_d = sex_pattern if metric == "thickness" else np.zeros(len(regions))
        site_effect = site["offset_regional_mm"] @ spread.T if metric == "thickness" else None
        blocks[metric] = MetricBlock(metric, sd, mean, loadings, effect=spread @ (d * regional_sd),
                                     sex_effect=spread @ (sex_d * regional_sd), age_effect=spread @ age_regional,
                                     site_effect=site_effect)
        planted.append(pd.DataFrame({"hemisphere": [r.split(":")[0] for r in regions],
                                     "region": [r.split(":")[1] for r in regions],
                                     "label": np.concatenate([wanted[h] for h in HEMISPHERES]),
                                     "metric": metric, "d": d, "sd": regional_sd}))
    model = CohortModel(
        task=task, scenario=scenario, template=template.name, vertex_index=vertex_index, blocks=blocks,
        site_names=site["names"], site_share=site["share"], site_prevalence=site["prevalence"],
        site_female=site["female"], site_age=site["age"], site_offset=site["offset"], site_scale=site["scale"],
        planted=pd.concat(planted, ignore_index=True), notes=notes,
    )
    if scenario == "paper-sized":
        base = np.array([model.separation(s) for s in range(len(model.site_names))])
        target = PAPER_SIZED_CEILING[task]
        scale = brentq(lambda k: _accuracy(k * base, model.site_prevalence, model.site_share) - target, 1e-6, 1e6)
        for block in blocks.values():
            block.effect = block.effect * scale
        model.effect_scale = float(scale)
        model.planted["d"] *= scale
    model.planted["source"] = (f"ABIDE I thickness {contrast} d, EB-shrunk" +
                               ("" if scenario == "realistic" else f", x {model.effect_scale:.3g} (paper-sized)"))
    return model


def sample_covariates(model: CohortModel, n_subjects: int, rng: np.random.Generator) -> pd.DataFrame:
    """Subjects table (site, label, sex, age) drawn from the model's site structure."""
    counts = rng.multinomial(n_subjects, model.site_share)
    site = np.repeat(np.arange(len(counts)), counts)
    label = (rng.random(n_subjects) < model.site_prevalence[site]).astype(int)
    if model.task == "sex":
        female = label.astype(bool)
        age = np.clip(rng.normal(model.site_age[site, 0], model.site_age[site, 1]), *_HCP_AGE[2:])
    else:
        female = rng.random(n_subjects) < model.site_female[site]
        age = np.clip(rng.normal(model.site_age[site, 0], model.site_age[site, 1]), 6, 60)
    order = rng.permutation(n_subjects)
    return pd.DataFrame({"site_index": site[order], "label": label[order], "female": female[order],
                         "age": np.round(age[order], 1)})


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
    """The Bayes-optimal log-odds of label 1 for each subject, from maps and known covariates."""
    site = covariates["site_index"].to_numpy()
    prevalence = model.site_prevalence[site]
    log_odds = np.log(prevalence / (1 - prevalence))
    for s in np.unique(site):
        rows = site == s
        for metric, block in model.blocks.items():
            delta = model.site_scale[s] * block.effect
            weights = block.precision_times(delta, model.site_scale[s])
            residual = maps[metric][rows] - _known_mean(model, block, covariates[rows]) - delta / 2
            log_odds[rows] += residual @ weights
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
