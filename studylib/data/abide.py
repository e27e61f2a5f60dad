"""ABIDE I phenotypes (``abide1/Phenotypic_V1_0b_preprocessed1.csv`` in the data directory).

Source: the Preprocessed Connectomes Project's ABIDE repository, file
``Phenotypic_V1_0b_preprocessed1.csv`` (1112 subjects, 20 site codes). Cite
Di Martino et al. 2014 (Mol Psychiatry 19:659-667) when showing results from it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .files import FREESURFER_DIR, PHENOTYPES_FILE

__all__ = [
    "MEASURES",
    "load_abide1_phenotypes",
    "read_abide_phenotypes",
    "load_brainstats",
    "load_regional_table",
    "site_summary",
]

#: Regional FreeSurfer measures of the ABIDE I tables.
MEASURES = ("thickness", "area", "volume")

_REQUIRED = ("SUB_ID", "SITE_ID", "DX_GROUP", "SEX", "AGE_AT_SCAN")
_DIAGNOSIS = {1: "autism", 2: "control"}
_SEX = {1: "male", 2: "female"}


def read_abide_phenotypes(path: str | Path, *, strict: bool = True) -> pd.DataFrame:
    """Read an ABIDE phenotypic CSV (``SUB_ID``, ``SITE_ID``, ``DX_GROUP``, ``SEX``, ``AGE_AT_SCAN``).

    Parameters
    ----------
    path : str or Path
    strict : bool
        Raise on a ``DX_GROUP`` or ``SEX`` code other than 1/2; with ``False`` such values become missing
        (NaN) so that the caller can record the subject in its QC table.

    Returns
    -------
    pandas.DataFrame
        Columns ``subject`` (int, ``SUB_ID``), ``site``, ``diagnosis`` ("autism" or "control"),
        ``sex`` ("male" or "female") and ``age`` (years), in file order.

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        A required column is missing or a subject id repeats (or, when ``strict``, a code is unknown);
        the message names the file, and the subjects at fault.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ABIDE phenotypes not found: {path}")
    raw = pd.read_csv(path)
    missing = [column for column in _REQUIRED if column not in raw.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)}")
    duplicated = raw.loc[raw["SUB_ID"].duplicated(), "SUB_ID"].tolist()
    if duplicated:
        raise ValueError(f"{path}: subject id(s) listed more than once: {duplicated[:10]}")
    for column, codes in (("DX_GROUP", _DIAGNOSIS), ("SEX", _SEX)):
        bad = raw.loc[~raw[column].isin(list(codes)), "SUB_ID"].tolist()
        if bad and strict:
            raise ValueError(f"{path}: {column} is not one of {sorted(codes)} for subject(s) {bad[:10]}")
    return pd.DataFrame({
        "subject": raw["SUB_ID"].astype(int),
        "site": raw["SITE_ID"].astype(str),
        "diagnosis": raw["DX_GROUP"].map(_DIAGNOSIS),
        "sex": raw["SEX"].map(_SEX),
        "age": raw["AGE_AT_SCAN"].astype(float),
    })


def load_abide1_phenotypes(data_dir: str | Path) -> pd.DataFrame:
    """The ABIDE I phenotypic table of the data directory (see :func:`read_abide_phenotypes`)."""
    return read_abide_phenotypes(Path(data_dir) / PHENOTYPES_FILE)


def site_summary(subjects: pd.DataFrame) -> pd.DataFrame:
    """Subjects per site by diagnosis and sex, with age (see :func:`studylib.data.summary.subjects_by_site`)."""
    from .summary import subjects_by_site

    return subjects_by_site(subjects.rename(columns={"diagnosis": "label_name"}))


def _subject_id(path: Path, names: pd.Series) -> pd.Series:
    """``Caltech_0051456`` -> 51456 (the trailing number is SUB_ID)."""
    ids = names.astype(str).str.extract(r"(\d+)$")[0]
    bad = names[ids.isna()].tolist()
    if bad:
        raise ValueError(f"{path}: subject name(s) without a trailing SUB_ID number: {bad[:5]}")
    return ids.astype(int)


def load_regional_table(data_dir: str | Path, measure: str) -> pd.DataFrame:
    """Desikan–Killiany regional values of both hemispheres for all subjects (FreeSurfer 6, ABIDE I).

    Parameters
    ----------
    data_dir : str or Path
        The data directory (holding ``abide1/freesurfer6/{lh,rh}.aparc_table_<measure>.tsv``).
    measure : {"thickness", "area", "volume"}

    Returns
    -------
    pandas.DataFrame
        Indexed by ``subject`` (SUB_ID); columns ``(hemisphere, region)`` with hemisphere "left"/"right"
        and the 34 D-K region names; FreeSurfer's whole-hemisphere summary columns are dropped.
    """
    if measure not in MEASURES:
        raise ValueError(f"unknown measure {measure!r}; choose from {', '.join(MEASURES)}")
    from .templates import DK_REGIONS

    parts = []
    for prefix, hemisphere in (("lh", "left"), ("rh", "right")):
        path = Path(data_dir) / FREESURFER_DIR / f"{prefix}.aparc_table_{measure}.tsv"
        if not path.is_file():
            raise FileNotFoundError(f"ABIDE I regional table not found: {path}")
        raw = pd.read_csv(path, sep="\t")
        subjects = _subject_id(path, raw.iloc[:, 0])
        columns = {}
        for column in raw.columns[1:]:
            region = column.removeprefix(f"{prefix}_").removesuffix(f"_{measure}")
            if region in DK_REGIONS:
                columns[(hemisphere, region)] = column
        unknown = [c for c in raw.columns[1:] if c not in columns.values()
                   and not c.removeprefix(f"{prefix}_").startswith(("WhiteSurfArea", "MeanThickness"))]
        if unknown:
            raise ValueError(f"{path}: column(s) that are not Desikan–Killiany regions: {unknown[:5]}")
        values = raw[list(columns.values())].astype(float)
        values.columns = pd.MultiIndex.from_tuples(list(columns), names=["hemisphere", "region"])
        values.index = pd.Index(subjects, name="subject")
        bad = values.index[~np.isfinite(values).all(axis=1)].tolist()
        if bad:
            raise ValueError(f"{path}: non-finite values for subject(s) {bad[:10]}")
        parts.append(values)
    left, right = parts
    if not left.index.equals(right.index):
        raise ValueError(f"{FREESURFER_DIR}: left and right {measure} tables list different subjects")
    return pd.concat(parts, axis=1)


def load_brainstats(data_dir: str | Path) -> pd.DataFrame:
    """Whole-brain FreeSurfer measures per subject (TIV as ``EstimatedTotalIntraCranialVol``), indexed by SUB_ID."""
    path = Path(data_dir) / FREESURFER_DIR / "brainstats_abide_with_pial.txt"
    if not path.is_file():
        raise FileNotFoundError(f"ABIDE I brain statistics not found: {path}")
    raw = pd.read_csv(path, sep=r"\s+")
    raw.index = pd.Index(_subject_id(path, raw["subject"]), name="subject")
    return raw.drop(columns="subject")
