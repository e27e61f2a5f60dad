"""ABIDE I phenotypes (``abide1/Phenotypic_V1_0b_preprocessed1.csv`` in the data directory).

Source: the Preprocessed Connectomes Project's ABIDE repository, file
``Phenotypic_V1_0b_preprocessed1.csv`` (1112 subjects, 20 site codes). Cite
Di Martino et al. 2014 (Mol Psychiatry 19:659-667) when showing results from it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["PHENOTYPES_FILE", "load_abide1_phenotypes", "site_summary"]

#: Location of the phenotypic table inside a data directory.
PHENOTYPES_FILE = Path("abide1") / "Phenotypic_V1_0b_preprocessed1.csv"

_REQUIRED = ("SUB_ID", "SITE_ID", "DX_GROUP", "SEX", "AGE_AT_SCAN")
_DIAGNOSIS = {1: "autism", 2: "control"}
_SEX = {1: "male", 2: "female"}


def load_abide1_phenotypes(data_dir: str | Path) -> pd.DataFrame:
    """Read the ABIDE I phenotypic table as one row per subject.

    Parameters
    ----------
    data_dir : str or Path
        The study's data directory (holding ``abide1/Phenotypic_V1_0b_preprocessed1.csv``).

    Returns
    -------
    pandas.DataFrame
        Columns ``subject`` (int, ``SUB_ID``), ``site``, ``diagnosis`` ("autism" or "control"),
        ``sex`` ("male" or "female") and ``age`` (years), indexed 0..n-1 in file order.

    Raises
    ------
    FileNotFoundError
        The file is not in ``data_dir``.
    ValueError
        A required column is missing, a code is unknown, or a subject id repeats; the message
        names the file, and the subject where one is at fault.
    """
    path = Path(data_dir) / PHENOTYPES_FILE
    if not path.is_file():
        raise FileNotFoundError(f"ABIDE I phenotypes not found: {path}")
    raw = pd.read_csv(path)
    missing = [column for column in _REQUIRED if column not in raw.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)}")
    duplicated = raw.loc[raw["SUB_ID"].duplicated(), "SUB_ID"].tolist()
    if duplicated:
        raise ValueError(f"{path}: subject id(s) listed more than once: {duplicated[:10]}")
    for column, codes in (("DX_GROUP", _DIAGNOSIS), ("SEX", _SEX)):
        bad = raw.loc[~raw[column].isin(list(codes)), "SUB_ID"].tolist()
        if bad:
            raise ValueError(f"{path}: {column} is not one of {sorted(codes)} for subject(s) {bad[:10]}")
    return pd.DataFrame({
        "subject": raw["SUB_ID"].astype(int),
        "site": raw["SITE_ID"].astype(str),
        "diagnosis": raw["DX_GROUP"].map(_DIAGNOSIS),
        "sex": raw["SEX"].map(_SEX),
        "age": raw["AGE_AT_SCAN"].astype(float),
    })


def site_summary(subjects: pd.DataFrame) -> pd.DataFrame:
    """Subjects per site by diagnosis and sex, with age, like the paper's data section.

    Parameters
    ----------
    subjects : pandas.DataFrame
        Columns ``site``, ``diagnosis``, ``sex`` and ``age`` (as from :func:`load_abide1_phenotypes`).

    Returns
    -------
    pandas.DataFrame
        One row per site (largest first) and a final ``all sites`` row.
    """
    def summarise(group: pd.DataFrame) -> dict[str, object]:
        return {
            "subjects": len(group),
            "autism": int((group["diagnosis"] == "autism").sum()),
            "control": int((group["diagnosis"] == "control").sum()),
            "female": int((group["sex"] == "female").sum()),
            "age mean": round(float(group["age"].mean()), 1),
            "age sd": round(float(group["age"].std(ddof=1)), 1) if len(group) > 1 else np.nan,
        }

    rows = [{"site": site, **summarise(group)} for site, group in subjects.groupby("site", sort=False)]
    table = pd.DataFrame(rows).sort_values(["subjects", "site"], ascending=[False, True])
    total = pd.DataFrame([{"site": "all sites", **summarise(subjects)}])
    return pd.concat([table, total], ignore_index=True)
