from __future__ import annotations

import pandas as pd
import pytest

from studylib.data.abide import PHENOTYPES_FILE, load_abide1_phenotypes, site_summary


def _write(tmp_path, rows, columns=("SUB_ID", "SITE_ID", "DX_GROUP", "SEX", "AGE_AT_SCAN")):
    path = tmp_path / PHENOTYPES_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=list(columns)).to_csv(path)
    return path


def test_reads_codes_into_labels(tmp_path):
    _write(tmp_path, [(50001, "NYU", 1, 2, 10.5), (50002, "NYU", 2, 1, 12.0), (50003, "USM", 2, 1, 20.0)])
    subjects = load_abide1_phenotypes(tmp_path)
    assert subjects["subject"].tolist() == [50001, 50002, 50003]
    assert subjects["diagnosis"].tolist() == ["autism", "control", "control"]
    assert subjects["sex"].tolist() == ["female", "male", "male"]
    summary = site_summary(subjects)
    assert summary["site"].tolist() == ["NYU", "USM", "all sites"]
    assert summary.set_index("site").loc["NYU", ["subjects", "autism", "control", "female"]].tolist() == [2, 1, 1, 1]
    assert summary.set_index("site").loc["all sites", "subjects"] == 3


def test_problems_name_the_file_and_subject(tmp_path):
    with pytest.raises(FileNotFoundError, match="Phenotypic_V1_0b_preprocessed1.csv"):
        load_abide1_phenotypes(tmp_path)
    path = _write(tmp_path, [(1, "A", 1, 1)], columns=("SUB_ID", "SITE_ID", "DX_GROUP", "SEX"))
    with pytest.raises(ValueError, match=f"{path}: missing column.*AGE_AT_SCAN"):
        load_abide1_phenotypes(tmp_path)
    _write(tmp_path, [(1, "A", 1, 1, 9.0), (1, "A", 2, 1, 9.0)])
    with pytest.raises(ValueError, match=r"more than once: \[1\]"):
        load_abide1_phenotypes(tmp_path)
    _write(tmp_path, [(1, "A", 1, 1, 9.0), (2, "A", 3, 1, 9.0)])
    with pytest.raises(ValueError, match=r"DX_GROUP is not one of \[1, 2\] for subject\(s\) \[2\]"):
        load_abide1_phenotypes(tmp_path)


def test_real_abide1_table(shared_data):
    subjects = load_abide1_phenotypes(shared_data)
    assert len(subjects) == 1112  # the paper: ABIDE I contains 1112 subjects
    assert (subjects["diagnosis"] == "autism").sum() == 539  # the paper: 539 ASD vs 573 controls
    assert (subjects["diagnosis"] == "control").sum() == 573
    summary = site_summary(subjects)
    assert len(summary) == 21  # 20 site codes + the total
    assert summary.iloc[:-1]["subjects"].sum() == 1112
