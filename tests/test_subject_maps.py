"""Per-subject flat maps (``flatten.mode: per-subject``): warped subject surfaces, fixed corners, the maps' cache,
images through each subject's map, the D-K centroid spread, and occlusion maps back through each subject's map."""

from __future__ import annotations

import tempfile

import numpy as np
import pandas as pd
import pytest

from studylib.data.cohort import CohortWriter
from studylib.data.surfaces import AREA_SD, subject_surface, warp_surface
from studylib.data.templates import load_parcellation, load_template
from studylib.flatmaps import (SubjectRasterizers, centroid_spread, flatten_subjects, image_differences,
                               load_subject_maps, paired_images)
from studylib.geometry.distortion import distortion_summary
from studylib.geometry.flatten import cached_flat_map, flatten
from studylib.geometry.mesh import triangle_areas
from studylib.images import build_image_store
from studylib.train.executors import LocalExecutor

from tests.support import icosphere


def _normals(vertices, faces):
    return np.cross(vertices[faces[:, 1]] - vertices[faces[:, 0]], vertices[faces[:, 2]] - vertices[faces[:, 0]])


def test_warp_is_smooth_seeded_and_has_the_stated_area_spread():
    surface = load_template("fs_LR_32k").surfaces["left"]
    one = warp_surface(surface.vertices, surface.faces, np.random.default_rng(1))
    again = warp_surface(surface.vertices, surface.faces, np.random.default_rng(1))
    other = warp_surface(surface.vertices, surface.faces, np.random.default_rng(2))
    np.testing.assert_array_equal(one, again)
    assert not np.allclose(one, other)
    log_ratio = np.log(triangle_areas(one, surface.faces) / triangle_areas(surface.vertices, surface.faces))
    assert log_ratio.std() == pytest.approx(AREA_SD, rel=0.05)
    # no triangle turns over, and the warp is a few mm (a lobe-scale deformation, not noise)
    assert ((_normals(one, surface.faces) * _normals(surface.vertices, surface.faces)).sum(axis=1) > 0).all()
    assert 2 < np.linalg.norm(one - surface.vertices, axis=1).max() < 15


def test_fixed_corners_put_the_same_vertices_on_the_corners_without_flips():
    vertices, faces = icosphere(4)
    keep = vertices[:, 2] > -30
    template = flatten(vertices, faces, keep)
    corners = template.vertex_index[template.corners]
    warped = warp_surface(vertices, faces, np.random.default_rng(0), area_sd=0.1, wavelength=200.0)
    own = flatten(warped, faces, keep, corners=corners)
    np.testing.assert_array_equal(own.vertex_index[own.corners], corners)
    np.testing.assert_allclose(own.uv[own.corners], [[0, 0], [1, 0], [1, 1], [0, 1]], atol=1e-9)
    summary = distortion_summary(warped[own.vertex_index], own.faces, own.uv)
    assert summary["flipped"] == 0 and 0.9 <= summary["area_ratio_p5"] and summary["area_ratio_p95"] <= 1.1
    assert np.abs(own.uv - template.uv).max() > 1e-3  # the subject's own geometry moved its vertices
    with pytest.raises(ValueError, match="not on the boundary"):
        flatten(warped, faces, keep, corners=np.r_[corners[:3], template.vertex_index[0]])
    with pytest.raises(ValueError, match="not in boundary-loop order"):
        flatten(warped, faces, keep, corners=corners[[0, 2, 1, 3]])
    with pytest.raises(ValueError, match="4 distinct"):
        flatten(warped, faces, keep, corners=corners[[0, 0, 1, 2]])


def test_cached_flat_map_is_keyed_by_the_surface(tmp_path):
    vertices, faces = icosphere(3)
    keep = vertices[:, 2] > -30
    path = tmp_path / "map.npz"
    first = cached_flat_map(vertices, faces, keep, path, name="cap")
    assert cached_flat_map(vertices, faces, keep, path, name="cap").report.key == first.report.key
    moved = warp_surface(vertices, faces, np.random.default_rng(3), area_sd=0.05, wavelength=200.0)
    second = cached_flat_map(moved, faces, keep, path, name="cap")
    assert second.report.key != first.report.key and not np.allclose(second.uv, first.uv)


def _cohort(tmp_path, source="simulated", n=2, metrics=("thickness",)):
    template = load_template("fsaverage5")
    subjects = pd.DataFrame({"subject": [f"s{i}" for i in range(n)], "label": [i % 2 for i in range(n)],
                             "label_name": ["a", "b"] * (n // 2), "sex": "male", "age": 30.0, "site": "x",
                             "tiv": np.nan})
    sizes = {h: len(template.surfaces[h].vertices) for h in ("left", "right")}
    writer = CohortWriter(tmp_path / "cohort", subjects, "fsaverage5", sizes, list(metrics),
                          {"name": "toy", "source": source, "seed": 5})
    for h in ("left", "right"):
        for axis, metric in enumerate(metrics):  # thickness along y, a second metric along z
            y = template.surfaces[h].vertices[:, 1 + axis] / 100.0
            writer.write(h, metric, slice(None), np.stack([y * (k + 1) for k in range(n)]))
    return writer.close(), template


def test_subject_surface_is_per_subject_and_per_source(tmp_path):
    cohort, template = _cohort(tmp_path)
    a = subject_surface(cohort, template, "left", "s0")
    np.testing.assert_array_equal(a, subject_surface(cohort, template, "left", "s0"))
    assert not np.allclose(a, subject_surface(cohort, template, "left", "s1"))
    assert not np.allclose(a, subject_surface(cohort, template, "right", "s0")[: len(a)])
    with pytest.raises(KeyError, match="subject 'nobody' is not in cohort 'toy'"):
        subject_surface(cohort, template, "left", "nobody")
    real, _ = _cohort(tmp_path / "real", source="semi-real")
    with pytest.raises(ValueError, match=r"cohort 'toy' \(source 'semi-real'\) has no individual surfaces"):
        subject_surface(real, template, "left", "s0")


def test_paired_images_build_each_subjects_rasterizer_once_for_all_metrics(tmp_path, monkeypatch):
    import studylib.flatmaps

    cohort, template = _cohort(tmp_path, n=10, metrics=("thickness", "sulc"))
    flats = {h: flatten(template.surfaces[h].vertices, template.surfaces[h].faces, template.surfaces[h].cortex)
             for h in ("left", "right")}
    path_of = lambda c, h, s: tmp_path / "maps" / c / h / f"{s}.npz"  # noqa: E731
    for h in ("left", "right"):  # every subject "owns" the template's map: nothing to flatten
        for subject in cohort.subjects["subject"]:
            path_of(cohort.name, h, subject).parent.mkdir(parents=True, exist_ok=True)
            flats[h].save(path_of(cohort.name, h, subject))
    built = []

    class Counted(studylib.flatmaps.Rasterizer):
        def __init__(self, *args, **kwargs):
            built.append(1)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(studylib.flatmaps, "Rasterizer", Counted)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    pairs = list(paired_images(cohort, flats, path_of, 16))
    assert len(built) == 2 * (10 + 1)  # per hemisphere: each subject's once, and the template's
    assert len(pairs) == 4
    for _, _, reference, own in pairs:  # the same map: the same images, held in memory, not in the waiting file
        np.testing.assert_allclose(own, reference, rtol=1e-6)
        assert type(own) is np.ndarray
    assert not any(scratch.iterdir())  # the waiting files are gone


def test_per_subject_pipeline_on_fsaverage5(tmp_path):
    """Two subjects: their own maps (cached), images through them, the centroid spread and back-projection."""
    cohort, template = _cohort(tmp_path)
    flats = {h: flatten(template.surfaces[h].vertices, template.surfaces[h].faces, template.surfaces[h].cortex)
             for h in ("left", "right")}
    atlas = load_parcellation("dk", "fsaverage5")
    path_of = lambda c, h, s: tmp_path / "maps" / c / h / f"{s}.npz"  # noqa: E731
    runs = flatten_subjects(cohort, flats, path_of, labels=atlas.labels, progress=False)
    assert len(runs) == 4 and (runs["flipped"] == 0).all()
    assert (runs["DK_ratio_p5"] > 0.98).all() and (runs["DK_ratio_p95"] < 1.02).all()
    # cached: a second call, through the study's executor (worker processes), reads the maps instead of flattening
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "maps").rglob("*.npz")}
    again = flatten_subjects(cohort, flats, path_of, labels=atlas.labels, progress=False,
                             executor=LocalExecutor(workers=2, retries=0))
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    pd.testing.assert_frame_equal(again, runs)
    own = {h: load_subject_maps(cohort, h, path_of) for h in ("left", "right")}
    for h in ("left", "right"):
        for flat in own[h]:
            np.testing.assert_array_equal(flat.vertex_index[flat.corners], flats[h].vertex_index[flats[h].corners])

    cortical = {k: v for k, v in atlas.names.items() if not v.endswith(("corpuscallosum", "unknown"))}
    spread = centroid_spread(own["left"], atlas.labels["left"], cortical, 224)
    shared = centroid_spread([flats["left"]] * 2, atlas.labels["left"], cortical, 224)
    assert (shared["spread (px)"] == 0).all() and spread["spread (px)"].median() > 0.1
    assert spread["spread (px)"].max() < 20  # the corners pin the layout: regions stay near their template place

    store = build_image_store(cohort, own, 32, tmp_path / "store")
    assert store.meta["flatten_mode"] == "per-subject"
    template_store = build_image_store(cohort, flats, 32, tmp_path / "template_store")
    assert template_store.meta["flatten_mode"] == "template"
    images, reference = store.images("left", "thickness"), template_store.images("left", "thickness")
    assert not np.allclose(images, reference)
    for row in range(2):  # each subject's image is its own map's rasterization, close to the template's
        expected = SubjectRasterizers(own["left"], 32)[row].to_image(
            np.asarray(cohort.maps("left", "thickness"))[row, own["left"][row].vertex_index])
        np.testing.assert_allclose(images[row], expected, rtol=1e-6)
        assert np.corrcoef(images[row].ravel(), reference[row].ravel())[0, 1] > 0.9
    pairs = list(paired_images(cohort, flats, path_of, 32))
    assert [(h, m) for h, m, _, _ in pairs] == [(h, m) for h in ("left", "right") for m in cohort.metrics]
    np.testing.assert_allclose(pairs[0][3], images, rtol=1e-6)  # the store's own-map images
    np.testing.assert_allclose(pairs[0][2], reference, rtol=1e-6)  # the template map's
    agreement = image_differences(pairs[0][2], pairs[0][3], np.array(["s0", "s1"]))
    assert len(agreement) == 2 and (agreement["correlation"] > 0.9).all()

    # occlusion maps go back through each subject's own map: a subject's image maps back to its vertex values
    rasterizers = SubjectRasterizers(own["left"], 64)
    values = np.asarray(cohort.maps("left", "thickness"))
    back = rasterizers.to_template([1, 0], rasterizers.to_image([1, 0], values[[1, 0]]),
                                   len(template.surfaces["left"].vertices))
    kept = own["left"][0].vertex_index
    assert np.isnan(back[:, np.setdiff1d(np.arange(back.shape[1]), kept)]).all()
    error = np.abs(back[:, kept] - values[[1, 0]][:, kept])
    assert np.median(error) < 0.01 * np.abs(values).max()
    # through the wrong subject's map the values land on the wrong vertices: a larger error
    crossed = rasterizers.to_template([0, 1], rasterizers.to_image([1, 0], values[[1, 0]]), back.shape[1])
    assert np.median(error) < 0.5 * np.median(np.abs(crossed[:, kept] - values[[1, 0]][:, kept]))
    with pytest.raises(FileNotFoundError, match="subject s0: no left flat map"):
        load_subject_maps(cohort, "left", lambda c, h, s: tmp_path / "none" / f"{s}.npz")
    with pytest.raises(ValueError, match="1 left subject maps for 2 subjects"):
        build_image_store(cohort, {"left": own["left"][:1], "right": own["right"]}, 32, tmp_path / "bad")


def test_flatten_params(write_params):
    from studylib.params import ParamsError
    from studylib.study.config import load_params
    from studylib.study.flatten_run import per_subject_cohorts

    from tests.support import PROJECT, minimal_params

    smoke = load_params(PROJECT / "params" / "smoke.yaml")
    assert smoke.flatten.mode == "per-subject" and per_subject_cohorts(smoke) == ["hcp"]
    assert per_subject_cohorts(load_params(PROJECT / "params" / "default.yaml")) == []
    data = minimal_params()
    data["flatten"] = {"mode": "per-subject"}
    every = load_params(write_params(data, name="every"))
    assert per_subject_cohorts(every) == list(every.cohorts)
    data["flatten"]["cohorts"] = ["nobody"]
    with pytest.raises(ParamsError, match="flatten.cohorts: no cohort 'nobody'"):
        load_params(write_params(data, name="unknown"))
    # the solver's options, passed as they are to flatten() (and so part of every map's cache key)
    assert smoke.flatten.solver_options() == {"tolerance": 1e-9, "max_iterations": 100, "power_diagram": "qhull"}
    data["flatten"] = {"power_diagram": "geogram"}
    assert load_params(write_params(data, name="fast")).flatten.solver_options()["power_diagram"] == "geogram"
    # one list of backends: the schema's, the command line's and the transport's
    from typing import get_args

    from studylib.geometry.transport import POWER_DIAGRAMS
    from studylib.params import PowerDiagram
    from studylib.study.cli import _parser

    assert get_args(PowerDiagram) == POWER_DIAGRAMS
    flatten_command = _parser()._subparsers._group_actions[0].choices["flatten"]
    assert next(a for a in flatten_command._actions if a.dest == "power_diagram").choices == POWER_DIAGRAMS
    data["flatten"] = {"power_diagram": "voro++"}
    with pytest.raises(ParamsError, match="power_diagram"):
        load_params(write_params(data, name="unknown_backend"))


def test_hcp_subjects_bring_their_own_midthickness_surfaces(tmp_path, write_params):
    """An HCP folder in the real naming: the surface read for a subject is its file's, on the template mesh."""
    import nibabel as nib

    from studylib.study.config import load_params
    from tests.support import build_params_cohorts, minimal_params

    fslr = load_template("fs_LR_32k")
    root = tmp_path / "HCP"
    surfaces = {}
    for subject in ("100001", "100002"):
        folder = root / subject / "MNINonLinear" / "fsaverage_LR32k"
        folder.mkdir(parents=True)
        for hemisphere, hemi in (("left", "L"), ("right", "R")):
            values = np.full(len(fslr.surfaces[hemisphere].vertices), 2.5, np.float32)
            nib.save(nib.gifti.GiftiImage(darrays=[nib.gifti.GiftiDataArray(
                values, intent="NIFTI_INTENT_SHAPE", datatype="float32")]),
                str(folder / f"{subject}.{hemi}.thickness.32k_fs_LR.shape.gii"))
            surface = fslr.surfaces[hemisphere]
            vertices = warp_surface(surface.vertices, surface.faces, np.random.default_rng(int(subject)))
            surfaces[subject, hemisphere] = vertices.astype(np.float32)
            faces = surface.faces if subject == "100001" else surface.faces[:, [0, 2, 1]]  # 100002: another mesh
            msm = "_MSMAll" if subject == "100001" else ""
            nib.save(nib.gifti.GiftiImage(darrays=[
                nib.gifti.GiftiDataArray(vertices.astype(np.float32), intent="NIFTI_INTENT_POINTSET"),
                nib.gifti.GiftiDataArray(faces.astype(np.int32), intent="NIFTI_INTENT_TRIANGLE")]),
                str(folder / f"{subject}.{hemi}.midthickness{msm}.32k_fs_LR.surf.gii"))
    behaviour = tmp_path / "behavioral.csv"
    pd.DataFrame({"Subject": [100001, 100002], "Gender": ["F", "M"], "Age": ["22-25", "26-30"],
                  "FS_IntraCranial_Vol": [1.4e6, 1.5e6]}).to_csv(behaviour, index=False)
    data = minimal_params()
    data["cohorts"] = {"real": {"source": "hcp", "task": "sex", "metrics": ["thickness"], "path": str(root),
                                "phenotypes": str(behaviour)}}
    [result] = build_params_cohorts(load_params(write_params(data)), tmp_path / "cohorts", progress=False,
                                    echo=lambda _: None)
    cohort = result.cohort
    np.testing.assert_array_equal(subject_surface(cohort, fslr, "left", "100001"), surfaces["100001", "left"])
    with pytest.raises(ValueError, match=r"100002.L.midthickness.32k_fs_LR.surf.gii: not on the fs_LR_32k mesh"):
        subject_surface(cohort, fslr, "left", "100002")
    (root / "100001" / "MNINonLinear" / "fsaverage_LR32k" / "100001.R.midthickness_MSMAll.32k_fs_LR.surf.gii").unlink()
    with pytest.raises(FileNotFoundError, match=r"subject 100001: no right midthickness surface"):
        subject_surface(cohort, fslr, "right", "100001")


def test_spread_summary_per_cohort_and_hemisphere():
    from studylib.flatmaps import spread_summary

    spread = pd.DataFrame({"cohort": "hcp", "hemisphere": ["left", "left", "left", "right"],
                           "own maps (px)": [0.2, 0.4, 0.9, 0.3], "own maps, max (px)": [0.5, 0.6, 2.0, 0.4],
                           "template maps (px)": 0.0})
    summary = spread_summary(spread).set_index("hemisphere")
    assert summary.loc["left", "own maps, median region (px)"] == pytest.approx(0.4)
    assert summary.loc["left", "own maps, largest (px)"] == 2.0 and summary.loc["right", "template maps (px)"] == 0


def test_map_accuracy_compares_one_arm_on_both_kinds_of_image_in_the_same_folds():
    from studylib.study.flatten_run import map_accuracy

    rng = np.random.default_rng(3)
    labels = np.repeat([0, 1], 30)
    noise = rng.normal(size=(60, 8, 8))
    same = map_accuracy(noise, noise.copy(), labels, repeats=1, n_bootstrap=200)
    assert same["difference (points)"] == 0 and same["difference 95% CI"] == "0.0 to 0.0"
    assert same["template map accuracy (%)"] == same["own maps accuracy (%)"]  # identical folds, identical fits

    signal = noise.copy()
    signal[:, 2:6, 2:6] += 1.5 * (labels[:, None, None] - 0.5)  # only the own-map images carry the label
    better = map_accuracy(noise, signal, labels, repeats=3, n_bootstrap=200)
    assert better["own maps accuracy (%)"] > 85 and better["template map accuracy (%)"] < 75
    low, high = (float(x) for x in better["difference 95% CI"].split(" to "))
    assert 0 < low < better["difference (points)"] < high
    with pytest.raises(ValueError, match="shapes"):
        map_accuracy(noise, signal[:, :4], labels)
    with pytest.raises(ValueError, match="a class has 1 subject"):
        map_accuracy(noise, signal, np.r_[np.zeros(59, int), 1])
    with pytest.raises(ValueError, match="n_bootstrap"):
        map_accuracy(noise, signal, labels, n_bootstrap=0)
