"""Simulated cohorts on a template, with planted effects and their Bayes-optimal accuracy.

Generative model, for each metric ``m`` (both hemispheres' cortex vertices concatenated)::

    x_i = mu_m + sd_m * o_s(i) + age_i * a_m + female_i * f_m
          + c_s(i) * (A_m z_i + y_i * delta_m) + n_s(i) * sd_m * eps_i

- ``mu_m``: the template's group-average map.
- ``A_m z_i``: subject variation with ``z_i ~ N(0, I)``. ``A_m`` holds smooth Laplace–Beltrami eigenmodes
  of each hemisphere (variance decaying with frequency: realistic spatial autocorrelation), a global
  offset and a global scale (loading ``mu_m - mean(mu_m)``), shared by both hemispheres.
- ``o_s``, ``c_s``, ``n_s``: site offset (in SDs), site scale and site noise level; ``eps`` is white noise.
- ``a_m``, ``f_m``: age (per decade) and sex effect maps; ``y_i in {0, 1}`` the label, ``delta_m`` the planted
  label effect: smooth bumps over the regions with the largest real Cohen's d (ABIDE I tables when the
  data directory has them, else fixed sizes on random parcels).

The **Bayes-optimal classifier** knows every parameter and each subject's site, age and sex. Given those,
``x`` is Gaussian with covariance ``c^2 A A^T + n^2 sd^2 I`` in both classes, so the optimal rule is linear and
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
from scipy.stats import norm

from ..geometry.laplacian import laplacian_eigenmodes
from ..geometry.mesh import submesh
from ..hashing import code_digest, sha256_bytes
from ..storage import atomic_path
from .templates import HEMISPHERES, Parcellation, Template, load_parcellation

__all__ = [
    "CohortModel",
    "bayes_accuracy",
    "build_model",
    "oracle_log_odds",
    "sample_covariates",
    "sample_maps",
    "save_truth",
]

TASKS = ("sex", "autism")

#: Between-subject SD of each metric as a fraction of the template map's spatial SD.
_SUBJECT_SD = {"thickness": 0.45, "sulc": 0.35, "curvature": 0.5, "myelin": 0.4}
#: Effect of age per decade (in SDs), e.g. cortical thinning.
_AGE_PER_DECADE = {"thickness": -0.25, "sulc": 0.05, "curvature": 0.0, "myelin": 0.1}
#: Which real regional measure gives each metric's Cohen's d (no real sulcal depth, curvature or myelin
#: tables exist, so those take the nearest available measure; recorded in the cohort's notes).
_D_SOURCE = {"thickness": "thickness", "sulc": "area", "curvature": "volume", "myelin": "thickness"}
#: Cohen's d of planted effects when the real ABIDE I tables are absent.
_FALLBACK_D = {"autism": 0.2, "sex": 0.6}
_WHITE_NOISE = 0.3  # white noise SD relative to the smooth variation, before the site's noise level


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
    # Thin SVD of the loadings, for exact Mahalanobis distances
    _u: np.ndarray = field(init=False, repr=False)
    _s: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._u, self._s, _ = np.linalg.svd(self.loadings, full_matrices=False)

    def precision_times(self, vector: np.ndarray, scale: float, noise: float) -> np.ndarray:
        """``(scale^2 A A^T + noise^2 sd^2 I)^-1 vector`` by the SVD of ``A``."""
        white = (noise * self.sd) ** 2
        inside = self._u.T @ vector
        return self._u @ (inside / (scale**2 * self._s**2 + white)) + (vector - self._u @ inside) / white


@dataclass
class CohortModel:
    """All parameters of a simulated cohort: enough to sample it and to score the oracle."""

    task: str
    template: str
    vertex_index: dict[str, np.ndarray]  # cortex vertices of each hemisphere in the template
    blocks: dict[str, MetricBlock]
    site_names: list[str]
    site_share: np.ndarray
    site_prevalence: np.ndarray
    site_female: np.ndarray
    site_age: np.ndarray  # (sites, 2): mean and SD of age
    site_offset: np.ndarray
    site_scale: np.ndarray
    site_noise: np.ndarray
    planted: pd.DataFrame  # region, hemisphere, metric, d, source
    notes: list[str]

    def separation(self, site: int) -> float:
        """Mahalanobis distance between the classes' means within ``site`` (all metrics)."""
        total = 0.0
        for block in self.blocks.values():
            delta = self.site_scale[site] * block.effect
            total += float(delta @ block.precision_times(delta, self.site_scale[site], self.site_noise[site]))
        return float(np.sqrt(total))


def _smooth_modes(template: Template, hemisphere: str, n_modes: int, cache: Path | None) -> tuple:
    surface = template.surfaces[hemisphere]
    vertices, faces, index = submesh(surface.vertices, surface.faces, surface.cortex)
    # keyed by the mesh, the cortex mask and the eigensolver's code, so a stale cache is never reused
    key = sha256_bytes(vertices.tobytes() + faces.tobytes() + code_digest(laplacian_eigenmodes.__module__).encode())
    path = cache / f"modes_{template.name}_{hemisphere}_{n_modes}_{key[:12]}.npz" if cache else None
    if path is not None and path.is_file():
        stored = np.load(path)
        return stored["eigenvalues"], stored["modes"], index
    eigenvalues, modes = laplacian_eigenmodes(vertices, faces, n_modes + 1)
    eigenvalues, modes = eigenvalues[1:], modes[:, 1:]  # the constant mode is the global offset
    if path is not None:
        with atomic_path(path) as partial:
            np.savez(partial, eigenvalues=eigenvalues, modes=modes)
    return eigenvalues, modes, index


def _region_bumps(modes: np.ndarray, labels: np.ndarray, regions: list[int]) -> np.ndarray:
    """Each region's indicator projected onto the smooth modes, scaled to mean 1 inside the region."""
    indicators = np.stack([(labels == r).astype(np.float64) for r in regions], axis=1)
    bumps = modes @ np.linalg.lstsq(modes, indicators, rcond=None)[0]
    inside = np.maximum((bumps * indicators).sum(0) / np.maximum(indicators.sum(0), 1), 1e-9)
    return bumps / inside


def _effect_sizes(task: str, metric: str, data_dir: Path | None, n_regions: int, parcels: Any,
                  rng: np.random.Generator) -> pd.DataFrame:
    """The regions that carry the planted effect and their Cohen's d."""
    contrast = "autism" if task == "autism" else "sex"
    if parcels.name == "dk" and data_dir is not None:
        try:
            from .abide import regional_cohens_d

            d = regional_cohens_d(data_dir, _D_SOURCE[metric], contrast)
        except FileNotFoundError:
            d = None
        if d is not None:
            top = d.abs().sort_values(ascending=False).index[:n_regions]
            label_of = {name: label for label, name in parcels.names.items()}
            rows = [{"hemisphere": h, "region": r, "label": label_of[("L_" if h == "left" else "R_") + r],
                     "metric": metric, "d": float(d[(h, r)]),
                     "source": f"ABIDE I {_D_SOURCE[metric]}, {contrast}"} for h, r in top]
            return pd.DataFrame(rows)
    rows = []
    for hemisphere in HEMISPHERES:
        present = np.setdiff1d(np.unique(parcels.labels[hemisphere]), [0])
        for label in rng.choice(present, size=max(1, n_regions // 2), replace=False):
            rows.append({"hemisphere": hemisphere, "region": parcels.names.get(int(label), str(label)),
                         "label": int(label), "metric": metric,
                         "d": float(rng.choice([-1, 1]) * _FALLBACK_D[contrast]),
                         "source": f"fixed d = {_FALLBACK_D[contrast]} on random {parcels.name} parcels"})
    return pd.DataFrame(rows)


def _sites(task: str, n_sites: int, data_dir: Path | None, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Site names, shares, prevalence, share of females and age distribution."""
    if task == "sex":  # one acquisition site, balanced sexes, young adults (HCP: ages 22-37)
        return {"names": ["site01"], "share": np.ones(1), "prevalence": np.full(1, 0.5),
                "female": np.full(1, 0.5), "age": np.array([[29.0, 3.7]])}
    real = None
    if data_dir is not None:
        from .abide import load_abide1_phenotypes
        from .files import PHENOTYPES_FILE

        if (Path(data_dir) / PHENOTYPES_FILE).is_file():
            real = load_abide1_phenotypes(data_dir)
    if real is not None:
        stats = real.groupby("site").agg(n=("subject", "size"), prevalence=("diagnosis", lambda s: (s == "autism").mean()),
                                         female=("sex", lambda s: (s == "female").mean()), age=("age", "mean"),
                                         age_sd=("age", "std")).sort_values("n", ascending=False)
        stats = stats.iloc[np.arange(n_sites) % len(stats)]
        # more sites than ABIDE I has: the real ones repeat, named apart
        names = [s if i < len(stats.index.unique()) else f"{s}_{i}" for i, s in enumerate(stats.index)]
        return {"names": names, "share": stats["n"].to_numpy(float) / stats["n"].sum(),
                "prevalence": stats["prevalence"].to_numpy(float), "female": stats["female"].to_numpy(float),
                "age": stats[["age", "age_sd"]].to_numpy(float)}
    sizes = rng.lognormal(np.log(50), 0.6, n_sites)
    age_mean = rng.uniform(10, 30, n_sites)
    return {"names": [f"site{i + 1:02d}" for i in range(n_sites)], "share": sizes / sizes.sum(),
            "prevalence": rng.uniform(0.35, 0.6, n_sites), "female": rng.uniform(0.05, 0.3, n_sites),
            "age": np.c_[age_mean, age_mean * 0.3]}


def build_model(template: Template, task: str, metrics: list[str], n_sites: int, *, seed: int,
                data_dir: Path | None = None, n_modes: int = 60, effect_regions: int = 8,
                cache: Path | None = None, parcels: Parcellation | None = None) -> CohortModel:
    """Draw the parameters of a simulated cohort (seeded; identical inputs give identical models).

    Parameters
    ----------
    template : Template
    task : {"sex", "autism"}
        ``sex``: HCP-like, one site, label 1 = female. ``autism``: ABIDE-like, label 1 = autism,
        ``n_sites`` sites with real ABIDE I site sizes, prevalence, sex ratio and ages when available.
    metrics : list of str
    n_sites : int
    seed : int
    data_dir : Path, optional
        Real ABIDE I tables and the D-K atlas here give realistic effects and sites.
    n_modes : int
        Smooth Laplace–Beltrami modes per hemisphere.
    effect_regions : int
        Regions carrying a planted effect, per metric.
    cache : Path, optional
        Folder to keep the eigenmodes in (they take seconds to compute).
    parcels : Parcellation, optional
        Regions for the planted effects (default: Desikan–Killiany, or MMP on fs_LR 32k without it).
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose from {', '.join(TASKS)}")
    if task == "sex" and n_sites != 1:
        raise ValueError(f"the HCP-like sex cohort is simulated with one site, not {n_sites}")
    rng = np.random.default_rng([seed, TASKS.index(task)])
    if parcels is None:
        try:
            parcels = load_parcellation("dk", template.name, data_dir)
        except FileNotFoundError as missing:
            raise ValueError(f"simulated cohorts on {template.name} place their effects on Desikan–Killiany "
                             f"regions: {missing}") from None
    notes = [parcels.note] if parcels.note else []
    notes += list(template.notes)
    smooth = {h: _smooth_modes(template, h, n_modes, cache) for h in HEMISPHERES}
    sizes = [len(smooth[h][2]) for h in HEMISPHERES]
    blocks, planted = {}, []
    for metric in metrics:
        mean = np.concatenate([template.metric_map(h, metric)[smooth[h][2]] for h in HEMISPHERES])
        sd = _SUBJECT_SD[metric] * float(np.std(mean))
        spectra = []
        for h in HEMISPHERES:
            eigenvalues, modes, _ = smooth[h]
            spectrum = 1.0 / (1.0 + eigenvalues / eigenvalues[min(9, len(eigenvalues) - 1)])
            variance = (modes**2 * spectrum).sum(1).mean()
            spectra.append(modes * np.sqrt(spectrum / variance))  # mean per-vertex variance 1
        smooth_part = np.zeros((sum(sizes), 2 * n_modes))
        smooth_part[: sizes[0], :n_modes] = spectra[0]
        smooth_part[sizes[0]:, n_modes:] = spectra[1]
        offset = np.full((sum(sizes), 1), 0.3)
        scale = ((mean - mean.mean()) * 0.1 / sd)[:, None]
        loadings = sd * np.hstack([smooth_part, offset, scale])
        effect = np.zeros(sum(sizes))
        sex_effect = np.zeros(sum(sizes))
        targets = _effect_sizes(task, metric, data_dir, effect_regions, parcels, rng)
        planted.append(targets)
        for start, h, (eigenvalues, modes, index) in zip((0, sizes[0]), HEMISPHERES, smooth.values()):
            rows = targets[targets["hemisphere"] == h]
            if len(rows):
                labels = np.asarray(parcels.labels[h])[index]
                bumps = _region_bumps(modes, labels, rows["label"].tolist())
                effect[start: start + len(index)] = sd * bumps @ rows["d"].to_numpy()
        if task == "autism":  # sex is a known covariate in the ABIDE-like cohort: a smooth fixed pattern
            sex_effect = smooth_part @ rng.normal(0, 0.3, 2 * n_modes) * sd
        age_effect = np.full(sum(sizes), _AGE_PER_DECADE[metric] * sd)
        blocks[metric] = MetricBlock(metric, sd, mean, loadings, effect, sex_effect, age_effect)
    site = _sites(task, n_sites, data_dir, rng)
    n = len(site["names"])
    one_site = n == 1
    return CohortModel(
        task=task, template=template.name, vertex_index={h: smooth[h][2] for h in HEMISPHERES}, blocks=blocks,
        site_names=site["names"], site_share=site["share"], site_prevalence=site["prevalence"],
        site_female=site["female"], site_age=site["age"],
        site_offset=np.zeros(n) if one_site else rng.normal(0, 0.3, n),
        site_scale=np.ones(n) if one_site else rng.uniform(0.85, 1.15, n),
        site_noise=np.full(n, _WHITE_NOISE) if one_site else _WHITE_NOISE * rng.uniform(0.7, 1.5, n),
        planted=pd.concat(planted, ignore_index=True), notes=notes,
    )


def sample_covariates(model: CohortModel, n_subjects: int, rng: np.random.Generator) -> pd.DataFrame:
    """Subjects table (site, label, sex, age) drawn from the model's site structure."""
    counts = rng.multinomial(n_subjects, model.site_share)
    site = np.repeat(np.arange(len(counts)), counts)
    label = (rng.random(n_subjects) < model.site_prevalence[site]).astype(int)
    if model.task == "sex":
        female = label.astype(bool)
        age = np.clip(rng.normal(model.site_age[site, 0], model.site_age[site, 1]), 22, 37)
    else:
        female = rng.random(n_subjects) < model.site_female[site]
        age = np.clip(rng.normal(model.site_age[site, 0], model.site_age[site, 1]), 6, 60)
    order = rng.permutation(n_subjects)
    return pd.DataFrame({"site_index": site[order], "label": label[order], "female": female[order],
                         "age": np.round(age[order], 1)})


def _known_mean(model: CohortModel, block: MetricBlock, covariates: pd.DataFrame) -> np.ndarray:
    site = covariates["site_index"].to_numpy()
    decades = (covariates["age"].to_numpy() - model.site_age[:, 0].mean()) / 10.0
    mean = block.mean + block.sd * model.site_offset[site, None] + decades[:, None] * block.age_effect
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
    maps += (model.site_noise[site] * block.sd)[:, None] * noise
    return maps.astype(np.float32)


def oracle_log_odds(model: CohortModel, maps: dict[str, np.ndarray], covariates: pd.DataFrame) -> np.ndarray:
    """The Bayes-optimal log-odds of label 1 for each subject, from maps and known covariates."""
    site = covariates["site_index"].to_numpy()
    prevalence = model.site_prevalence[site]
    log_odds = np.log(prevalence / (1 - prevalence))
    for s in np.unique(site):
        rows = site == s
        for metric, block in model.blocks.items():
            delta = model.site_scale[s] * block.effect
            weights = block.precision_times(delta, model.site_scale[s], model.site_noise[s])
            residual = maps[metric][rows] - _known_mean(model, block, covariates[rows]) - delta / 2
            log_odds[rows] += residual @ weights
    return log_odds


def bayes_accuracy(model: CohortModel) -> pd.DataFrame:
    """Analytic Bayes-optimal accuracy per site and over the cohort (last row, ``site = "all"``)."""
    rows = []
    for s, name in enumerate(model.site_names):
        separation = model.separation(s)
        p = model.site_prevalence[s]
        threshold = np.log(p / (1 - p))
        accuracy = p * norm.cdf(separation / 2 + threshold / separation) + \
            (1 - p) * norm.cdf(separation / 2 - threshold / separation)
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
    return {"task": model.task, "template": model.template, "sites": model.site_names,
            "site_share": model.site_share.tolist(), "site_prevalence": model.site_prevalence.tolist(),
            "site_female": model.site_female.tolist(), "site_offset": model.site_offset.tolist(),
            "site_scale": model.site_scale.tolist(), "site_noise": model.site_noise.tolist(),
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
