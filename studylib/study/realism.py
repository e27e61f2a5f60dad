"""01_preprocess's realism section: the simulated autism cohorts measured against real ABIDE I.

:func:`realism_tables` gives, for each simulated autism cohort with thickness, every yardstick of
:mod:`studylib.data.realism` for real ABIDE I (shipped with the calibration), for the cohort's own files and for
a fresh draw of its model at the real size. :func:`linear_check` runs the regional linear reference
(:func:`studylib.baselines.linear.linear_reference`, repeated 10-fold) on a fresh draw of the cohort's
``realistic`` scenario and on the real ABIDE I subjects (when the data directory holds their tables), side by
side with their intervals and the realistic scenario's Bayes-optimal accuracy: a check, not a target.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..baselines.linear import linear_reference
from ..data.calibration import load_calibration
from ..data.cohort import Cohort
from ..data.realism import cohort_regional_thickness, realism_table, thickness_yardsticks
from ..data.simulate import bayes_accuracy, build_model, regional_draw
from ..data.templates import load_template
from ..params import RealismParams, SimulatedCohortParams

__all__ = ["linear_check", "realism_cohorts", "realism_tables"]

REAL_MEASURES = ("thickness", "area", "volume")


def realism_cohorts(cohorts: list[Cohort], specs: dict) -> list[Cohort]:
    """The simulated autism cohorts with thickness maps (those the real ABIDE I tables can be compared with)."""
    return [c for c in cohorts if isinstance(specs.get(c.name), SimulatedCohortParams)
            and specs[c.name].task == "autism" and "thickness" in c.metrics]


def _model(spec: SimulatedCohortParams, cache: Path | None, scenario: str | None = None):
    return build_model(load_template(spec.template), spec.task, list(spec.metrics), spec.n_sites,
                       scenario=scenario or spec.scenario, n_modes=spec.n_modes, cache=cache)


def realism_tables(cohort: Cohort, spec: SimulatedCohortParams, realism: RealismParams, *, seed: int,
                   cache: Path | None = None) -> pd.DataFrame:
    """Real ABIDE I, the cohort's files and a fresh draw of its model (``realism.n_subjects``), yardstick by
    yardstick, with the tolerance and whether the fresh draw meets it."""
    real = load_calibration().yardsticks
    model = _model(spec, cache)
    values, covariates = regional_draw(model, realism.n_subjects, np.random.default_rng([seed, 12]))
    drawn = f"fresh draw (n = {realism.n_subjects})"
    table = realism_table(thickness_yardsticks(values["thickness"], covariates), real, label=drawn)
    files, file_covariates = cohort_regional_thickness(cohort)
    own = thickness_yardsticks(files, file_covariates)
    table.insert(3, f"cohort files (n = {len(cohort)})", table["key"].map(own))
    return table


def _real_features(data_dir: Path) -> tuple[np.ndarray, np.ndarray] | None:
    from ..data.abide import load_abide1_phenotypes, load_regional_table

    try:
        tables = [load_regional_table(data_dir, measure) for measure in REAL_MEASURES]
        phenotypes = load_abide1_phenotypes(data_dir).set_index("subject")
    except FileNotFoundError:
        return None
    features = pd.concat(tables, axis=1)
    labels = (phenotypes.reindex(features.index)["diagnosis"] == "autism").to_numpy(int)
    return features.to_numpy(np.float64), labels


def linear_check(spec: SimulatedCohortParams, realism: RealismParams, data_dir: Path, *, seed: int,
                 cache: Path | None = None) -> pd.DataFrame:
    """The regional linear reference on the ``realistic`` scenario of ``spec`` (fresh draw) and on real ABIDE I."""
    model = _model(spec, cache, scenario="realistic")
    values, covariates = regional_draw(model, realism.n_subjects, np.random.default_rng([seed, 13]),
                                       metrics=tuple(spec.metrics))
    simulated = pd.concat([values[m].add_prefix(f"{m}:") for m in spec.metrics], axis=1)
    rows = []
    result = linear_reference(simulated.to_numpy(), covariates["autism"].to_numpy(), repeats=realism.repeats, seed=seed)
    rows.append({"data": f"simulated, realistic scenario ({', '.join(spec.metrics)})",
                 "bayes_accuracy": bayes_accuracy(model).iloc[-1]["bayes_accuracy"], **result.summary})
    real = _real_features(data_dir)
    if real is None:
        rows.append({"data": f"real ABIDE I ({', '.join(REAL_MEASURES)}): tables not in the data directory"})
    else:
        result = linear_reference(*real, repeats=realism.repeats, seed=seed)
        rows.append({"data": f"real ABIDE I ({', '.join(REAL_MEASURES)})", "bayes_accuracy": np.nan, **result.summary})
    return pd.DataFrame(rows)
