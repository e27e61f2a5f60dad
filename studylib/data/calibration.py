"""The simulated cohorts' calibration: numbers fitted to the real ABIDE I regional tables, shipped with the package.

Every simulated cohort is drawn from the same calibration on every machine (with or without a data directory).
:func:`derive_calibration` computes it from the data directory's ABIDE I FreeSurfer 6 Desikan–Killiany
thickness table and phenotypes; ``python -m studylib.data.calibration --data-dir DIR`` rewrites the shipped
``resources/abide1_calibration.json`` (summary numbers only, no subject's values), and a test re-derives it
whenever the data are present and compares.

What is fitted (thickness, 68 regions, corpus callosum excluded), each from a linear model per region:

- **residual covariance**: per-region SD and the inter-regional correlation of thickness after removing
  site (one mean per site), age, sex and diagnosis, all 1035 subjects. Left–right homology is in it.
- **sites**: for each of the 20 ABIDE I sites its subjects, share of autism, share of females, age mean
  and SD, thickness offset per region (its site coefficient, mm, relative to the subject-weighted mean of the
  sites; and averaged over regions) and scale (within-site residual SD over the pooled one, median over regions).
- **age**: thinning per decade per region, in controls, adjusted for site and sex.
- **sex**: female-minus-male Cohen's d per region in controls aged 18–40 adjusted for site and age (as the
  HCP-like adult cohort needs), and their label-permutation null (sex permuted within site).
- **autism**: autism-minus-control d per region adjusted for site, age and sex, and its permutation null
  (diagnosis permuted within site).
- **empirical-Bayes shrinkage** of each d: prior variance ``tau^2 = max(0, mean(d^2) - mean(null SD^2))``
  (normal means with the null's SDs as noise), posterior mean ``d * tau^2 / (tau^2 + null SD^2)``. Only the
  real d's and their null enter: nothing is tuned to an accuracy.
- **head size**: FreeSurfer's estimated total intracranial volume (eTIV) in all controls: the female-minus-male
  difference of log eTIV and its within-sex residual spread (site- and age-adjusted; Huber fits and a MAD
  spread, failed estimates under 700 ml left out and counted), the male controls' geometric mean (ml); and
  thickness's allometric exponent ``d log(mean thickness) / d log(eTIV)`` (site, age and sex adjusted) with
  its standard error.
- the **real yardsticks** (:func:`studylib.data.realism.thickness_yardsticks`), for the realism table.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from .realism import adjusted_d, design_matrix, site_dummies, thickness_yardsticks

__all__ = ["CALIBRATION_RESOURCE", "Calibration", "calibration_file", "derive_calibration", "load_calibration",
           "permutation_null", "shrink"]

CALIBRATION_RESOURCE = "resources/abide1_calibration.json"
#: Label permutations of each null distribution.
PERMUTATIONS = 200
ADULT_AGES = (18.0, 40.0)
#: eTIV below this (ml) is a failed estimate (ABIDE I has a few, down to 12 ml).
PLAUSIBLE_TIV_ML = 700.0


def permutation_null(values: np.ndarray, group: np.ndarray, covariates: np.ndarray, strata: np.ndarray,
                     permutations: int, rng: np.random.Generator) -> np.ndarray:
    """Adjusted d's with ``group`` permuted within each stratum (site), ``permutations`` x columns."""
    out = np.empty((permutations, values.shape[1]))
    blocks = [np.flatnonzero(strata == s) for s in np.unique(strata)]
    for k in range(permutations):
        permuted = group.copy()
        for rows in blocks:
            permuted[rows] = group[rng.permutation(rows)]
        out[k] = adjusted_d(values, permuted, covariates)
    return out


def shrink(d: np.ndarray, null_sd: np.ndarray) -> tuple[np.ndarray, float]:
    """Empirical-Bayes posterior means of true effects ``d`` observed with noise SDs ``null_sd``, and ``tau^2``."""
    tau2 = max(0.0, float(np.mean(d**2) - np.mean(null_sd**2)))
    return d * tau2 / (tau2 + null_sd**2), tau2


def derive_calibration(data_dir: str | Path, *, permutations: int = PERMUTATIONS, seed: int = 0) -> dict:
    """The calibration (a JSON-ready dict) from the ABIDE I tables and phenotypes in ``data_dir``."""
    from .abide import load_abide1_phenotypes, load_regional_table

    table = load_regional_table(data_dir, "thickness")
    phenotypes = load_abide1_phenotypes(data_dir).set_index("subject").reindex(table.index)
    missing = phenotypes.index[phenotypes["site"].isna()].tolist()
    if missing:
        raise ValueError(f"{data_dir}: thickness table subjects without phenotypes: {missing[:10]}")
    values = table.to_numpy(np.float64)
    sites = phenotypes["site"].to_numpy(str)
    age = phenotypes["age"].to_numpy(float) / 10.0  # decades
    female = (phenotypes["sex"] == "female").to_numpy(float)
    autism = (phenotypes["diagnosis"] == "autism").to_numpy(float)
    dummies, site_names = site_dummies(sites)
    rng = np.random.default_rng(seed)

    # residual covariance: site means, age, sex and diagnosis removed
    design = design_matrix(dummies, age, female, autism)
    beta, *_ = np.linalg.lstsq(design, values, rcond=None)
    residual = values - design @ beta
    residual_sd = residual.std(axis=0, ddof=design.shape[1])
    correlation = np.corrcoef(residual.T)
    site_coef = beta[: len(site_names)]  # site mean at age 0, male, control
    pooled = residual_sd

    site_rows = []
    for index, name in enumerate(site_names):
        rows = sites == name
        offset = site_coef[index] - np.average(site_coef, axis=0, weights=dummies.sum(0))
        site_rows.append({
            "site": name, "n": int(rows.sum()), "autism": float(autism[rows].mean()),
            "female": float(female[rows].mean()), "age_mean": float(phenotypes["age"][rows].mean()),
            "age_sd": float(phenotypes["age"][rows].std(ddof=1)),
            "thickness_offset_mm": float(offset.mean()),
            "thickness_offset_regional_mm": np.round(offset, 5).tolist(),
            "thickness_scale": float(np.median(residual[rows].std(axis=0, ddof=1) / pooled)),
        })

    controls = autism == 0
    c_dummies = dummies[controls][:, dummies[controls].sum(0) > 0]
    age_beta, *_ = np.linalg.lstsq(design_matrix(c_dummies, age[controls], female[controls]), values[controls], rcond=None)
    age_slope = age_beta[c_dummies.shape[1]]

    adult = controls & (phenotypes["age"].to_numpy() >= ADULT_AGES[0]) & (phenotypes["age"].to_numpy() <= ADULT_AGES[1])
    a_dummies = dummies[adult][:, dummies[adult].sum(0) > 0]
    sex_covariates = design_matrix(a_dummies, age[adult])
    sex_d = adjusted_d(values[adult], female[adult], sex_covariates)
    sex_null = permutation_null(values[adult], female[adult], sex_covariates, sites[adult], permutations, rng)
    sex_shrunk, sex_tau2 = shrink(sex_d, sex_null.std(axis=0))

    autism_covariates = design_matrix(dummies, age, female)
    autism_d = adjusted_d(values, autism, autism_covariates)
    autism_null = permutation_null(values, autism, autism_covariates, sites, permutations, rng)
    autism_shrunk, autism_tau2 = shrink(autism_d, autism_null.std(axis=0))

    head_size = _head_size(data_dir, table, sites, age, female, controls)

    covariates = pd.DataFrame({"site": sites, "age": phenotypes["age"].to_numpy(float),
                               "female": female.astype(bool), "autism": autism.astype(int)})
    regions = [f"{h}:{r}" for h, r in table.columns]
    return {
        "source": "ABIDE I, FreeSurfer 6 Desikan-Killiany regional thickness (aparcstats2table) and phenotypes "
                  "(Phenotypic_V1_0b_preprocessed1.csv); see the data directory's README",
        "licence": "summary numbers derived from ABIDE I data shared under CC BY-NC-SA; cite Di Martino et al. 2014, "
                   "Mol Psychiatry 19:659-667",
        "derived_by": "python -m studylib.data.calibration --data-dir DIR",
        "permutations": permutations,
        "seed": seed,
        "n_subjects": int(len(values)),
        "regions": regions,
        "thickness": {
            "mean_mm": np.round(values.mean(axis=0), 5).tolist(),
            "residual_sd_mm": np.round(residual_sd, 5).tolist(),
            "residual_correlation": np.round(correlation, 5).tolist(),
            "age_slope_mm_per_decade": np.round(age_slope, 5).tolist(),
        },
        "sites": site_rows,
        "sex": {"n": int(adult.sum()), "n_female": int(female[adult].sum()), "ages": list(ADULT_AGES),
                "d": np.round(sex_d, 5).tolist(), "null_sd": np.round(sex_null.std(axis=0), 5).tolist(),
                "tau2": round(sex_tau2, 6), "shrunk_d": np.round(sex_shrunk, 5).tolist()},
        "autism": {"n": int(len(values)), "n_autism": int(autism.sum()),
                   "d": np.round(autism_d, 5).tolist(), "null_sd": np.round(autism_null.std(axis=0), 5).tolist(),
                   "null_max_abs_d_median": round(float(np.median(np.abs(autism_null).max(axis=1))), 5),
                   "null_max_abs_d_95": round(float(np.quantile(np.abs(autism_null).max(axis=1), 0.95)), 5),
                   "tau2": round(autism_tau2, 6), "shrunk_d": np.round(autism_shrunk, 5).tolist()},
        "tiv": head_size,
        "yardsticks": thickness_yardsticks(table.set_axis(regions, axis=1), covariates),
    }


def _head_size(data_dir: str | Path, table: pd.DataFrame, sites: np.ndarray, age: np.ndarray, female: np.ndarray,
               controls: np.ndarray) -> dict:
    """Sex difference and spread of log eTIV, and thickness's allometric exponent, in the controls.

    ABIDE I's eTIV is noisy (a few failed estimates under 700 ml, site-specific scaling), so values below
    :data:`PLAUSIBLE_TIV_ML` are left out (counted) and the fits are Huber regressions with a MAD-based spread.
    """
    from scipy.stats import median_abs_deviation
    from sklearn.linear_model import HuberRegressor

    from .abide import load_brainstats

    tiv = load_brainstats(data_dir)["EstimatedTotalIntraCranialVol"].reindex(table.index).to_numpy(float) / 1000.0
    missing = table.index[~np.isfinite(tiv)].tolist()
    if missing:
        raise ValueError(f"{data_dir}: no EstimatedTotalIntraCranialVol for subject(s) {missing[:10]}")
    plausible = tiv >= PLAUSIBLE_TIV_ML
    rows = controls & plausible
    dummies = site_dummies(sites[rows])[0]
    log_tiv = np.log(tiv[rows])

    def huber(design: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        fit = HuberRegressor(fit_intercept=False, alpha=0.0, max_iter=2000).fit(design, target)
        return fit.coef_, target - design @ fit.coef_

    beta, residual = huber(design_matrix(dummies, age[rows], female[rows]), log_tiv)
    design = design_matrix(dummies, age[rows], female[rows], log_tiv)
    log_thickness = np.log(table.to_numpy(np.float64)[rows].mean(axis=1))
    beta_t, residual_t = huber(design, log_thickness)
    sigma = float(median_abs_deviation(residual_t, scale="normal"))
    se = float(sigma * np.sqrt(np.linalg.inv(design.T @ design)[-1, -1]))
    male = rows & (female == 0)
    return {"n": int(rows.sum()), "n_female": int(female[rows].sum()),
            "excluded_implausible": int((controls & ~plausible).sum()), "plausible_ml": PLAUSIBLE_TIV_ML,
            "female_minus_male_log": round(float(beta[-1]), 5),
            "within_sex_sd_log": round(float(median_abs_deviation(residual, scale="normal")), 5),
            "male_geometric_mean_ml": round(float(np.exp(np.log(tiv[male]).mean())), 1),
            "thickness_exponent": round(float(beta_t[-1]), 5), "thickness_exponent_se": round(se, 5),
            "fit": "Huber regressions on site, age (and sex); spread: MAD x 1.4826 of the residuals"}


@dataclass(frozen=True)
class Calibration:
    """The shipped calibration as arrays (regions in the order of :attr:`regions`, ``"left:bankssts"`` ...)."""

    raw: dict

    @property
    def regions(self) -> list[str]:
        return list(self.raw["regions"])

    def array(self, *keys: str) -> np.ndarray:
        value = self.raw
        for key in keys:
            value = value[key]
        return np.asarray(value, dtype=np.float64)

    @property
    def sites(self) -> pd.DataFrame:
        return pd.DataFrame(self.raw["sites"])

    @property
    def yardsticks(self) -> dict[str, float]:
        return dict(self.raw["yardsticks"])


def _resource():
    from importlib import resources

    return resources.files("studylib.data").joinpath(CALIBRATION_RESOURCE)


@lru_cache(maxsize=1)
def load_calibration() -> Calibration:
    """The calibration shipped with the package."""
    return Calibration(json.loads(_resource().read_text()))


def calibration_file() -> Path:
    """The shipped calibration's file (its bytes are part of every simulated cohort's build key)."""
    return Path(str(_resource()))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Derive the simulated cohorts' calibration from ABIDE I tables.")
    parser.add_argument("--data-dir", required=True, type=Path)
    parser.add_argument("--out", type=Path, default=None, help="default: the package's resource file")
    args = parser.parse_args(argv)
    out = args.out or calibration_file()
    out.write_text(json.dumps(derive_calibration(args.data_dir), indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
