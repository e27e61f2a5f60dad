"""Tables that describe cohorts, like the paper's data section."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from .cohort import Cohort

__all__ = ["cohort_overview", "qc_table", "subjects_by_site"]


def _age(subjects: pd.DataFrame) -> str:
    age = subjects["age"].dropna()
    return f"{age.mean():.1f} ± {age.std(ddof=1):.1f} ({age.min():.0f}–{age.max():.0f})" if len(age) > 1 else ""


def cohort_overview(cohorts: Sequence[Cohort]) -> pd.DataFrame:
    """One row per cohort: source, task, template, sizes by label and sex, age, sites, QC exclusions, ceiling."""
    rows = []
    for cohort in cohorts:
        subjects, meta = cohort.subjects, cohort.meta
        names = subjects.groupby("label")["label_name"].first()
        bayes = cohort.path / "truth" / "bayes_accuracy.csv"
        rows.append({
            "cohort": cohort.name, "source": meta.get("source"), "task": meta.get("task"),
            "template": cohort.template, "subjects": len(subjects),
            "label 1": f"{int(subjects['label'].sum())} {names.get(1, '')}".strip(),
            "label 0": f"{int((subjects['label'] == 0).sum())} {names.get(0, '')}".strip(),
            "female": int((subjects["sex"] == "female").sum()), "age mean ± sd (range)": _age(subjects),
            "sites": subjects["site"].nunique(), "QC exclusions": len(cohort.qc),
            "metrics": ", ".join(cohort.metrics),
            "Bayes-optimal accuracy": round(float(pd.read_csv(bayes).iloc[-1]["bayes_accuracy"]), 4)
            if bayes.is_file() else np.nan,
        })
    return pd.DataFrame(rows)


def subjects_by_site(subjects: pd.DataFrame) -> pd.DataFrame:
    """Subjects per site by label and sex, with age; largest sites first, then an ``all sites`` row.

    ``subjects`` needs ``site``, ``label_name``, ``sex`` and ``age`` (a cohort's subjects table, or the
    ABIDE I phenotypes with ``diagnosis`` renamed to ``label_name``).
    """
    labels = sorted(subjects["label_name"].dropna().unique())

    def summarise(group: pd.DataFrame) -> dict[str, object]:
        counts = {name: int((group["label_name"] == name).sum()) for name in labels}
        return {"subjects": len(group), **counts, "female": int((group["sex"] == "female").sum()),
                "age mean": round(float(group["age"].mean()), 1),
                "age sd": round(float(group["age"].std(ddof=1)), 1) if len(group) > 1 else np.nan}

    rows = [{"site": site, **summarise(group)} for site, group in subjects.groupby("site", sort=False)]
    table = pd.DataFrame(rows).sort_values(["subjects", "site"], ascending=[False, True])
    return pd.concat([table, pd.DataFrame([{"site": "all sites", **summarise(subjects)}])], ignore_index=True)


def qc_table(cohorts: Sequence[Cohort]) -> pd.DataFrame:
    """Every QC exclusion of the given cohorts, with the cohort's name."""
    parts = [cohort.qc.assign(cohort=cohort.name) for cohort in cohorts if len(cohort.qc)]
    if not parts:
        return pd.DataFrame(columns=["cohort", "subject", "file", "reason"])
    return pd.concat(parts, ignore_index=True)[["cohort", "subject", "file", "reason"]]
