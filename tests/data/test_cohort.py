from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from studylib.params import ParamsError
from studylib.study.config import load_params
from studylib.data.cohort import Cohort, CohortWriter

from tests.support import PROJECT, build_params_cohorts, minimal_params


def _subjects(n=4):
    return pd.DataFrame({"subject": [f"s{i}" for i in range(n)], "label": [0, 1] * (n // 2),
                         "label_name": ["control", "autism"] * (n // 2), "sex": "male", "age": 20.0,
                         "site": "A", "tiv": np.nan})


def test_writer_and_lazy_reader(tmp_path):
    writer = CohortWriter(tmp_path / "c", _subjects(), "synthetic", {"left": 5, "right": 3}, ["thickness"],
                          {"name": "c", "source": "test"})
    writer.write("left", "thickness", slice(0, 2), np.ones((2, 5)))
    writer.write("left", "thickness", slice(2, 4), np.full((2, 5), 2.0))
    writer.write("right", "thickness", slice(None), np.arange(12.0).reshape(4, 3))
    qc = pd.DataFrame([{"subject": "s9", "file": "x.gii", "reason": "missing"}])
    cohort = writer.close(qc)
    maps = cohort.maps("left", "thickness")
    assert isinstance(maps, np.memmap) and maps.dtype == np.float32 and maps.shape == (4, 5)
    assert maps[3, 0] == 2.0
    assert len(cohort) == 4 and cohort.template == "synthetic" and cohort.name == "c"
    assert cohort.qc.iloc[0]["reason"] == "missing"
    assert cohort.subjects["subject"].tolist() == ["s0", "s1", "s2", "s3"]
    with pytest.raises(KeyError, match="no left sulc maps"):
        cohort.maps("left", "sulc")


def test_dropping_unusable_rows_rewrites_the_maps(tmp_path):
    writer = CohortWriter(tmp_path / "c", _subjects(), "synthetic", {"left": 2, "right": 2}, ["sulc"], {})
    for row in range(4):
        writer.write("left", "sulc", row, np.full(2, float(row)))
        writer.write("right", "sulc", row, np.full(2, float(row)))
    cohort = writer.close(keep=np.array([True, False, True, False]))
    assert cohort.subjects["subject"].tolist() == ["s0", "s2"] and len(cohort) == 2
    np.testing.assert_array_equal(cohort.maps("right", "sulc")[:, 0], [0.0, 2.0])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t.drop(columns="site"), "lacks column"),
        (lambda t: t.assign(subject="same"), "more than once"),
        (lambda t: t.assign(label=[0, 1, 2, 1]), "without a 0/1 label"),
    ],
)
def test_bad_subject_tables(tmp_path, change, message):
    with pytest.raises(ValueError, match=message):
        CohortWriter(tmp_path / "c", change(_subjects()), "t", {"left": 1}, ["thickness"], {})


def test_not_a_cohort_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="no cohort.json"):
        Cohort(tmp_path)


def test_semireal_cohort_reproduces_the_real_tables(shared_data, tmp_path, write_params):
    from studylib.data.abide import load_regional_table
    from studylib.data.templates import DK_REGIONS, load_parcellation

    data = minimal_params()
    data["cohorts"] = {"abide1": {"source": "semi-real", "task": "autism", "metrics": ["thickness", "area", "volume"]}}
    params = load_params(write_params(data))
    [result] = build_params_cohorts(params, tmp_path / "cohorts", progress=False, echo=lambda _: None)
    cohort = result.cohort
    assert len(cohort) == 1035
    assert len(cohort) + len(cohort.qc) == 1112  # every phenotype row is either in or explained
    assert set(cohort.qc["reason"].str.slice(0, 30)) == {"no FreeSurfer 6 regional values"[:30]}
    subjects = cohort.subjects
    assert set(subjects["label_name"]) == {"autism", "control"} and subjects["site"].nunique() == 20
    assert subjects["tiv"].notna().all() and 1200 < subjects["tiv"].median() < 1500  # ml
    dk = load_parcellation("dk", "fs_LR_32k")
    ids = subjects["subject"].astype(int)
    for measure in ("thickness", "area", "volume"):
        table = load_regional_table(shared_data, measure)
        for hemisphere, offset in (("left", 0), ("right", 35)):
            maps = cohort.maps(hemisphere, measure)
            for region in ("superiorfrontal", "insula", "bankssts"):
                inside = (dk.labels[hemisphere] == offset + 1 + DK_REGIONS.index(region)) & np.isfinite(maps[0])
                means = np.asarray(maps[:, inside], dtype=np.float64).mean(axis=1)
                expected = table.loc[ids, (hemisphere, region)].to_numpy()
                np.testing.assert_allclose(means, expected, rtol=1e-4)


def test_build_reuses_unchanged_and_skips_optional_absent(tmp_path, write_params, monkeypatch):
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("STUDYLIB_DATA", str(tmp_path / "empty"))
    data = minimal_params()
    data["cohorts"]["abide"]["n_sites"] = 3
    data["cohorts"]["hcp"]["n_modes"] = data["cohorts"]["abide"]["n_modes"] = 8
    data["cohorts"]["abide1"] = {"source": "semi-real", "task": "autism", "metrics": ["thickness"], "required": False}
    params = load_params(write_params(data))
    lines = []
    first = build_params_cohorts(params, tmp_path / "cohorts", progress=False, echo=lines.append)
    assert [r.status for r in first] == ["built", "built", "skipped"]
    assert "data absent" in first[2].note and "Phenotypic_V1_0b_preprocessed1.csv" in first[2].note
    hcp = first[0].cohort
    assert set(hcp.subjects["label_name"]) <= {"female", "male"}
    assert np.isnan(hcp.maps("left", "thickness")[0]).sum() == 32492 - 29696  # medial wall
    assert "calibrated to ABIDE I" in " ".join(hcp.meta["notes"])  # the shipped calibration, no data directory
    assert hcp.truth("left_thickness_effect").shape == (32492,)
    second = build_params_cohorts(params, tmp_path / "cohorts", progress=False, echo=lines.append)
    assert [r.status for r in second] == ["reused", "reused", "skipped"]

    # the build key covers the code that makes cohorts and nothing else
    from studylib import hashing

    real_read = hashing._read_source
    for edited, status in (("plotting.py", "reused"), ("train/engine.py", "reused"), ("study/runner.py", "reused"),
                           ("data/simulate.py", "built")):
        monkeypatch.setattr(hashing, "_read_source", lambda path, edited=edited: real_read(path) + (
            b"# edited" if path.as_posix().endswith(f"studylib/{edited}") else b""))
        again = build_params_cohorts(params, tmp_path / "cohorts", only=["hcp"], progress=False, echo=lines.append)
        assert [r.status for r in again] == [status], edited
    monkeypatch.setattr(hashing, "_read_source", real_read)
    forced = build_params_cohorts(params, tmp_path / "cohorts", only=["hcp"], force=True, progress=False,
                           echo=lines.append)
    assert [r.status for r in forced] == ["built"]
    np.testing.assert_array_equal(forced[0].cohort.maps("right", "thickness"), hcp.maps("right", "thickness"))
    data["cohorts"]["abide1"]["required"] = True
    with pytest.raises(ParamsError, match="cohorts.abide1: required, but the data directory"):
        load_params(write_params(data))  # before anything runs
    from studylib.data.build import build_cohorts
    from studylib.params import SemiRealCohortParams

    required = {"abide1": SemiRealCohortParams(source="semi-real", task="autism", metrics=["thickness"])}
    with pytest.raises(FileNotFoundError, match="Phenotypic_V1_0b"):  # and the build itself still refuses
        build_cohorts(required, tmp_path / "cohorts", seed=1, data_dir=tmp_path / "empty", progress=False,
                      echo=lines.append)


def test_shipped_parameter_sets_name_the_three_roles():
    for name in ("smoke", "default", "paper"):
        params = load_params(PROJECT / "params" / f"{name}.yaml")
        assert params.cohorts["hcp"].task == "sex" and params.cohorts["abide"].task == "autism"


def test_simulated_cohort_on_fsaverage5(shared_data, tmp_path, write_params):
    data = minimal_params()
    data["cohorts"] = {"fsa": {"source": "simulated", "task": "autism", "n_subjects": 12, "n_sites": 3,
                               "template": "fsaverage5", "metrics": ["thickness", "sulc"], "n_modes": 10}}
    [result] = build_params_cohorts(load_params(write_params(data)), tmp_path / "cohorts", progress=False,
                             echo=lambda _: None)
    cohort = result.cohort
    assert cohort.template == "fsaverage5" and len(cohort) == 12
    maps = cohort.maps("right", "sulc")
    assert maps.shape == (12, 10242) and np.isnan(maps[0]).sum() == 821  # D-K medial wall + 1 isolated vertex
    assert cohort.subjects["site"].nunique() <= 3
    planted = pd.read_csv(cohort.path / "truth" / "planted_regions.csv")
    assert len(planted) == 2 * 68 and planted["source"].str.startswith("ABIDE I thickness autism d").all()


def test_simulated_cohorts_do_not_depend_on_the_data_directory(tmp_path, write_params, shared_data):
    """Same parameters, same cohort on every machine: a build without a data directory equals one with it, and
    switching the data directory reuses it."""
    (tmp_path / "empty").mkdir()
    data = minimal_params()
    data["cohorts"]["abide"]["n_sites"] = 3
    data["cohorts"]["hcp"]["n_modes"] = data["cohorts"]["abide"]["n_modes"] = 8
    cohorts = {}
    for name, folder in (("without", tmp_path / "empty"), ("with", shared_data)):
        data["data_dir"] = str(folder)
        params = load_params(write_params(data))
        cohorts[name] = build_params_cohorts(params, tmp_path / name, progress=False, echo=lambda _: None)
    for a, b in zip(cohorts["without"], cohorts["with"]):
        assert a.cohort.meta["build_key"] == b.cohort.meta["build_key"]
        for metric in a.cohort.metrics:
            np.testing.assert_array_equal(a.cohort.maps("left", metric), b.cohort.maps("left", metric))
    again = build_params_cohorts(load_params(write_params(data | {"data_dir": str(tmp_path / "empty")})),
                                 tmp_path / "with", progress=False, echo=lambda _: None)
    assert [r.status for r in again] == ["reused", "reused"]
