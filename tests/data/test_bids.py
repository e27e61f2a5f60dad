"""fMRIPrep/sMRIPrep derivatives (BIDS) on fixtures written in the real naming, and FastSurfer through the FreeSurfer
reader."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from studylib.data.templates import load_template
from studylib.params import ParamsError

from tests.data.test_readers import _cifti, _expected, _gifti, _params
from tests.support import build_params_cohorts


def _derivatives(root: Path) -> Path:
    folder = root / "derivatives" / "smriprep"
    folder.mkdir(parents=True)
    (folder / "dataset_description.json").write_text(json.dumps({
        "Name": "sMRIPrep outputs", "BIDSVersion": "1.9.0", "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "sMRIPrep", "Version": "0.16.0"}]}))
    return folder


def _participants(root: Path, rows: list[tuple]) -> Path:
    path = root / "participants.tsv"
    pd.DataFrame(rows, columns=["participant_id", "age", "sex", "diagnosis", "site"]).to_csv(path, sep="\t",
                                                                                             index=False)
    return path


def test_fslr_cifti_derivatives_build_a_cohort_whose_values_equal_the_inputs(tmp_path, write_params):
    fslr = load_template("fs_LR_32k")
    cortex = {h: fslr.surfaces[h].cortex for h in ("left", "right")}
    derivatives = _derivatives(tmp_path)
    for subject, sessions in (("01", [None]), ("02", ["1", "2"]), ("05", [None])):
        for session in sessions:
            anat = derivatives / f"sub-{subject}" / (f"ses-{session}" if session else "") / "anat"
            anat.mkdir(parents=True, exist_ok=True)
            prefix = f"sub-{subject}" + (f"_ses-{session}" if session else "")
            for metric, suffix in (("thickness", "thickness"), ("sulc", "sulc")):
                shift = 0.0 if session in (None, "1") else 100.0  # the second session must not be read
                _cifti(anat / f"{prefix}_space-fsLR_den-91k_{suffix}.dscalar.nii",
                       _expected(int(subject), "left", metric) + shift,
                       _expected(int(subject), "right", metric) + shift, cortex)
    (derivatives / "sourcedata" / "freesurfer" / "sub-01" / "stats").mkdir(parents=True)
    (derivatives / "sourcedata" / "freesurfer" / "sub-01" / "stats" / "aseg.stats").write_text(
        "# Measure EstimatedTotalIntraCranialVol, eTIV, Estimated Total Intracranial Volume, 1500000.0, mm^3\n")
    participants = _participants(tmp_path, [("sub-01", 10.5, "M", "ASD", "NYU"), ("sub-02", 12.0, "F", "TD", "NYU"),
                                            ("sub-03", 9.0, "M", "TD", "KKI"), ("sub-04", 11.0, "F", "n/a", "KKI")])
    params = _params(write_params, {"source": "bids", "task": "autism", "metrics": ["thickness", "sulc"],
                                    "path": str(derivatives), "phenotypes": str(participants),
                                    "label_column": "diagnosis", "positive": ["ASD"], "negative": ["TD"]})
    [result] = build_params_cohorts(params, tmp_path / "cohorts", progress=False, echo=lambda _: None)
    cohort = result.cohort
    subjects = cohort.subjects
    assert subjects["subject"].tolist() == ["01", "02"] and subjects["label"].tolist() == [1, 0]
    assert subjects["sex"].tolist() == ["male", "female"] and subjects["site"].tolist() == ["NYU", "NYU"]
    np.testing.assert_allclose(subjects["tiv"].to_numpy(), [1500.0, np.nan])
    for row, subject in enumerate((1, 2)):
        for hemisphere in ("left", "right"):
            for metric in ("thickness", "sulc"):
                got = cohort.maps(hemisphere, metric)[row]
                np.testing.assert_allclose(got[cortex[hemisphere]],
                                           _expected(subject, hemisphere, metric)[cortex[hemisphere]], rtol=1e-6)
                assert np.isnan(got[~cortex[hemisphere]]).all()
    qc = cohort.qc.set_index("subject")
    assert qc.loc["03", "reason"] == "no derivatives of this participant"
    assert "diagnosis 'n/a' is neither ['ASD'] nor ['TD']" in qc.loc["04", "reason"]
    assert qc.loc["05", "reason"] == "no row in participants.tsv (no label)"
    assert any("sub-02: sessions 1, 2; the first (1) was read" in note for note in cohort.meta["notes"])


def test_fsnative_gifti_derivatives_resample_through_the_registration_sphere(tmp_path, write_params):
    from nilearn.datasets import load_fsaverage

    template = load_template("fsaverage5")
    meshes = load_fsaverage("fsaverage5")
    derivatives = _derivatives(tmp_path)
    expected = {}
    for subject in ("01", "02"):
        anat = derivatives / f"sub-{subject}" / "anat"
        anat.mkdir(parents=True)
        for hemisphere, letter in (("left", "L"), ("right", "R")):
            sphere = meshes["sphere"].parts[hemisphere]
            coordinates = np.asarray(sphere.coordinates, np.float32)
            if subject == "01":  # sub-02 lacks its sphere
                nib.save(nib.gifti.GiftiImage(darrays=[
                    nib.gifti.GiftiDataArray(coordinates, intent="NIFTI_INTENT_POINTSET"),
                    nib.gifti.GiftiDataArray(np.asarray(sphere.faces, np.int32), intent="NIFTI_INTENT_TRIANGLE")]),
                    str(anat / f"sub-{subject}_hemi-{letter}_space-fsaverage_desc-reg_sphere.surf.gii"))
            cortex = template.surfaces[hemisphere].cortex
            thickness = np.where(cortex, 2.0 + coordinates[:, 0] / 100, 0.0)  # 0 on the medial wall, as FreeSurfer
            expected[hemisphere] = thickness
            _gifti(anat / f"sub-{subject}_hemi-{letter}_thickness.shape.gii", thickness)
    participants = _participants(tmp_path, [("sub-01", 30, "F", "-", "A"), ("sub-02", 31, "M", "-", "A")])
    params = _params(write_params, {"source": "bids", "task": "sex", "template": "fsaverage5",
                                    "metrics": ["thickness"], "path": str(derivatives),
                                    "phenotypes": str(participants)})
    [result] = build_params_cohorts(params, tmp_path / "cohorts", progress=False, echo=lambda _: None)
    cohort = result.cohort
    assert cohort.subjects["subject"].tolist() == ["01"] and cohort.subjects["label"].tolist() == [1]
    for hemisphere in ("left", "right"):
        cortex = template.surfaces[hemisphere].cortex
        got = cohort.maps(hemisphere, "thickness")[0]
        np.testing.assert_allclose(got[cortex], expected[hemisphere][cortex], atol=1e-5)  # the same sphere: exact
    qc = cohort.qc.set_index("subject")
    assert "without its registration sphere" in qc.loc["02", "reason"] and "hemi-L_thickness" in qc.loc["02", "file"]


def test_bids_params_need_labels_for_autism_and_a_derivatives_folder(tmp_path, write_params):
    participants = _participants(tmp_path, [("sub-01", 30, "F", "ASD", "A")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ParamsError, match="needs label_column, positive and negative"):
        _params(write_params, {"source": "bids", "task": "autism", "metrics": ["thickness"],
                               "path": str(tmp_path / "empty"), "phenotypes": str(participants)})
    params = _params(write_params, {"source": "bids", "task": "sex", "metrics": ["thickness"],
                                    "path": str(tmp_path / "empty"), "phenotypes": str(participants)})
    with pytest.raises(FileNotFoundError, match="no dataset_description.json"):
        build_params_cohorts(params, tmp_path / "cohorts", progress=False, echo=lambda _: None)


def test_a_fastsurfer_subject_reads_through_the_freesurfer_reader(tmp_path, write_params):
    """FastSurfer (recon-surf with --surfreg) writes FreeSurfer's layout; its extra files change nothing."""
    from tests.data.test_readers import test_freesurfer_subject_onto_fslr32k_through_a_registration_sphere as check

    check(tmp_path, write_params, load_template("fs_LR_32k"))  # the FreeSurfer layout, as FastSurfer writes it
    subject = tmp_path / "subjects" / "KKI_0050772"
    (subject / "mri").mkdir()
    (subject / "mri" / "aparc.DKTatlas+aseg.deep.mgz").write_bytes(b"")  # FastSurfer's segmentation
    (subject / "scripts").mkdir()
    (subject / "scripts" / "recon-surf.log").write_text("FastSurfer recon-surf\n")
    [result] = build_params_cohorts(
        _params(write_params, {"source": "freesurfer", "task": "autism", "template": "fs_LR_32k",
                               "metrics": ["thickness"], "path": str(tmp_path / "subjects"),
                               "phenotypes": str(tmp_path / "pheno.csv"),
                               "registration_sphere": str(tmp_path / "spheres")}),
        tmp_path / "cohorts-fastsurfer", progress=False, echo=lambda _: None)
    assert result.cohort.subjects["subject"].tolist() == ["50772"] and result.cohort.qc.empty


def test_bids_subjects_own_midthickness_for_per_subject_maps(tmp_path, write_params):
    """``sub-<label>_hemi-{L,R}_midthickness.surf.gii`` on fsnative, through the registration sphere, onto fsaverage5."""
    from nilearn.datasets import load_fsaverage

    from studylib.data.surfaces import subject_surface

    template = load_template("fsaverage5")
    meshes = load_fsaverage("fsaverage5")
    derivatives = _derivatives(tmp_path)
    anat = derivatives / "sub-01" / "anat"
    anat.mkdir(parents=True)
    middle = {}
    for hemisphere, letter in (("left", "L"), ("right", "R")):
        sphere = meshes["sphere"].parts[hemisphere]
        coordinates = np.asarray(sphere.coordinates, np.float32)
        faces = np.asarray(sphere.faces, np.int32)
        for name, points in (("space-fsaverage_desc-reg_sphere", coordinates),
                             ("midthickness", coordinates * 0.7 + np.float32(5.0))):
            if letter == "R" and name == "midthickness":
                continue  # the right hemisphere lacks it
            nib.save(nib.gifti.GiftiImage(darrays=[
                nib.gifti.GiftiDataArray(points, intent="NIFTI_INTENT_POINTSET"),
                nib.gifti.GiftiDataArray(faces, intent="NIFTI_INTENT_TRIANGLE")]),
                str(anat / f"sub-01_hemi-{letter}_{name}.surf.gii"))
        middle[hemisphere] = coordinates * 0.7 + 5.0
        _gifti(anat / f"sub-01_hemi-{letter}_thickness.shape.gii",
               np.where(template.surfaces[hemisphere].cortex, 2.5, 0.0))
    participants = _participants(tmp_path, [("sub-01", 30, "F", "-", "A")])
    params = _params(write_params, {"source": "bids", "task": "sex", "template": "fsaverage5",
                                    "metrics": ["thickness"], "path": str(derivatives),
                                    "phenotypes": str(participants)})
    [result] = build_params_cohorts(params, tmp_path / "cohorts", progress=False, echo=lambda _: None)
    from studylib.data.bids import input_files

    assert "sub-01/anat/sub-01_hemi-L_midthickness.surf.gii" in input_files(params.cohorts["real"])
    got = subject_surface(result.cohort, template, "left", "01")
    np.testing.assert_allclose(got, middle["left"], atol=1e-3)  # the same sphere: each vertex keeps its own
    with pytest.raises(FileNotFoundError, match="no sub-01_hemi-R_midthickness.surf.gii"):
        subject_surface(result.cohort, template, "right", "01")
