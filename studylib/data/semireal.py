"""The semi-real ABIDE I cohort: real subjects' regional FreeSurfer values painted on a template.

For each of the 1035 subjects with FreeSurfer 6 tables, joined to the phenotypic table (diagnosis, sex,
age, site) and the whole-brain statistics (TIV), each Desikan–Killiany region of the template receives the
template's own spatial pattern of that measure, scaled so that the region's mean over its vertices equals
the subject's real value. The labels, site structure and between-subject variation are real; the
within-region pattern is the template's.

Spatial patterns: thickness, the template's group thickness; area, the template midthickness surface's
vertex areas; volume, vertex area times group thickness. Template cortex vertices outside the 34 D-K
regions of the tables (corpus callosum) take the subject's mean ratio to the template over all regions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..geometry.laplacian import cotangent_laplacian
from .abide import load_abide1_phenotypes, load_brainstats, load_regional_table
from .files import PHENOTYPES_FILE
from .cohort import Cohort, CohortWriter
from .templates import DK_REGIONS, HEMISPHERES, Template, load_parcellation

__all__ = ["build_semireal_cohort", "template_patterns"]


def template_patterns(template: Template) -> dict[tuple[str, str], np.ndarray]:
    """Per-vertex spatial pattern of thickness, area and volume on the template (NaN outside cortex)."""
    patterns = {}
    for h in HEMISPHERES:
        surface = template.surfaces[h]
        thickness = template.metric_map(h, "thickness")
        _, vertex_area = cotangent_laplacian(surface.vertices, surface.faces)
        area = np.where(surface.cortex, vertex_area, np.nan)
        patterns[(h, "thickness")] = thickness
        patterns[(h, "area")] = area
        patterns[(h, "volume")] = area * thickness
    return patterns


def _join(data_dir: Path, measures: list[str]) -> tuple[pd.DataFrame, dict[str, pd.DataFrame], pd.DataFrame]:
    """Subjects with tables and phenotypes, their regional tables, and a QC row for everyone left out."""
    phenotypes = load_abide1_phenotypes(data_dir).set_index("subject")
    tables = {m: load_regional_table(data_dir, m) for m in measures}
    brainstats = load_brainstats(data_dir)
    with_tables = tables[measures[0]].index
    qc = []
    for subject in phenotypes.index.difference(with_tables):
        qc.append({"subject": str(subject), "file": str(Path("abide1") / "freesurfer6"),
                   "reason": "no FreeSurfer 6 regional values (not processed, or failed, in the source)"})
    for subject in with_tables.difference(phenotypes.index):
        qc.append({"subject": str(subject), "file": str(PHENOTYPES_FILE), "reason": "not in the phenotypic table"})
    for m, table in tables.items():
        if not table.index.equals(with_tables):
            raise ValueError(f"ABIDE I {m} tables list other subjects than the {measures[0]} tables")
    keep = with_tables.intersection(phenotypes.index)
    subjects = phenotypes.loc[keep].reset_index()
    subjects["tiv"] = brainstats["EstimatedTotalIntraCranialVol"].reindex(keep).to_numpy() / 1000.0  # mm^3 -> ml
    return subjects, {m: t.loc[keep] for m, t in tables.items()}, pd.DataFrame(qc, columns=["subject", "file", "reason"])


def build_semireal_cohort(out: Path, template: Template, data_dir: Path, metrics: list[str], *,
                          n_subjects: int | None, seed: int, meta: dict) -> Cohort:
    """Write the semi-real ABIDE I cohort to ``out`` and return it.

    Parameters
    ----------
    out : Path
        Cohort folder to create.
    template : Template
        Usually fs_LR 32k; the D-K labels of that template must be in ``data_dir``.
    data_dir : Path
        Holds ``abide1/`` (phenotypes and FreeSurfer 6 tables) and ``atlas/``.
    metrics : list of {"thickness", "area", "volume"}
    n_subjects : int or None
        A seeded random subset of this size (``None``: all subjects).
    seed : int
    meta : dict
        Extra fields for ``cohort.json``.
    """
    parcels = load_parcellation("dk", template.name)
    subjects, tables, qc = _join(data_dir, metrics)
    notes = ["labels, sites, ages, sex and TIV are real (ABIDE I); maps are the template's pattern scaled to each "
             "subject's real regional values"]
    if n_subjects is not None and n_subjects < len(subjects):
        rng = np.random.default_rng(seed)
        chosen = np.sort(rng.choice(len(subjects), size=n_subjects, replace=False))
        notes.append(f"a seeded random subset of {n_subjects} of the {len(subjects)} eligible subjects; the others "
                     "are QC rows")
        left_out = np.setdiff1d(np.arange(len(subjects)), chosen)
        qc = pd.concat([qc, pd.DataFrame({
            "subject": subjects["subject"].iloc[left_out].astype(str).to_numpy(), "file": str(PHENOTYPES_FILE),
            "reason": f"not in the seeded random subset (n_subjects: {n_subjects} of {len(subjects)})"})],
            ignore_index=True)
        subjects = subjects.iloc[chosen].reset_index(drop=True)
        tables = {m: t.iloc[chosen] for m, t in tables.items()}
    table = pd.DataFrame({
        "subject": subjects["subject"].astype(str), "label": (subjects["diagnosis"] == "autism").astype(int),
        "label_name": subjects["diagnosis"], "sex": subjects["sex"], "age": subjects["age"],
        "site": subjects["site"], "tiv": subjects["tiv"],
    })
    patterns = template_patterns(template)
    n_vertices = {h: template.n_vertices(h) for h in HEMISPHERES}
    writer = CohortWriter(out, table, template.name, n_vertices, metrics, {**meta, "notes": notes})
    for h in HEMISPHERES:
        labels = np.asarray(parcels.labels[h])
        cortex = template.surfaces[h].cortex
        offset = 0 if h == "left" else 35
        regions = [(name, labels == offset + DK_REGIONS.index(name) + 1) for name in DK_REGIONS
                   if name != "corpuscallosum"]
        for m in metrics:
            pattern = patterns[(h, m)]
            values = tables[m][h][[name for name, _ in regions]].to_numpy()  # subjects x regions
            pattern_means = np.array([pattern[mask & cortex].mean() for _, mask in regions])
            ratios = values / pattern_means
            # Vertex -> region index (-1: cortex outside the 34 regions, -2: outside the cortex)
            region_of = np.full(len(labels), -2)
            region_of[cortex] = -1
            for k, (_, mask) in enumerate(regions):
                region_of[mask & cortex] = k
            fallback = ratios.mean(axis=1, keepdims=True)
            per_vertex = np.concatenate([ratios, fallback], axis=1)[:, np.where(region_of >= 0, region_of, -1)]
            maps = (per_vertex * pattern).astype(np.float32)
            maps[:, region_of == -2] = np.nan
            writer.write(h, m, slice(None), maps)
    return writer.close(qc)
