"""Volumes for the slice, 3D-volume and 3D-mesh baselines: the ribbon's volume, planted effects, slices, real
FreeSurfer volumes and the store."""

from __future__ import annotations

import json

import numpy as np
import pytest

from studylib.baselines.volumes import (DIRECTIONS, Grid, RibbonVoxeliser, build_volume_store, cut_slices,
                                        enclosed_volume, freesurfer_ribbon, metric_grid, outward_normals,
                                        read_talairach, slice_positions, splat)
from studylib.data.templates import HEMISPHERES, load_template

from tests.support import build_params_cohorts, minimal_params


def _cube():
    vertices = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], dtype=float)
    faces = np.array([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
                      [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]])
    return vertices, faces


def test_enclosed_volume_and_outward_normals_of_a_cube():
    vertices, faces = _cube()
    assert abs(abs(enclosed_volume(vertices, faces)) - 1.0) < 1e-12
    normals = outward_normals(vertices, faces)
    assert np.all(np.einsum("ij,ij->i", normals, vertices - 0.5) > 0)  # whichever way the triangles wind
    assert np.allclose(outward_normals(vertices, faces[:, ::-1]), normals)


def test_splat_conserves_weights_and_refuses_points_outside_the_grid():
    grid = Grid((0.0, 0.0, 0.0), 2.0, (5, 5, 5))
    rng = np.random.default_rng(0)
    points = rng.uniform(0.5, 7.5, (200, 3))
    weights = rng.random(200)
    [total] = splat(points, [weights], grid)
    assert total.sum() == pytest.approx(weights.sum())
    [single] = splat(np.array([[4.0, 2.0, 6.0]]), [np.ones(1)], grid)  # on a voxel centre: all in that voxel
    assert single[2, 1, 3] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="outside the grid"):
        splat(np.array([[9.5, 1.0, 1.0]]), [np.ones(1)], grid)


@pytest.mark.parametrize("voxel", [2.0, 4.0])
def test_voxelised_ribbon_volume_equals_the_surface_derived_cortical_volume(voxel):
    template = load_template("fs_LR_32k")
    thickness = {h: template.metric_map(h, "thickness") for h in HEMISPHERES}
    voxeliser = RibbonVoxeliser("fs_LR_32k", voxel)
    partial = voxeliser.volume(thickness, partial_only=True)
    assert partial.min() >= 0 and partial.max() <= 1
    surface = sum(voxeliser.cortical_volume(thickness).values())  # pial side minus white, divergence theorem
    assert 2.0e5 < surface < 4.0e5  # mm^3: the group-average surfaces' ribbon (smoother than any one brain's)
    assert partial.sum() * voxel ** 3 == pytest.approx(surface, rel=0.05)
    thicker = voxeliser.volume({h: t * 1.1 for h, t in thickness.items()}, partial_only=True)
    assert thicker.sum() / partial.sum() == pytest.approx(1.1, abs=0.03)


def test_myelin_brightens_the_ribbon_and_nan_thickness_leaves_no_cortex():
    template = load_template("fs_LR_32k")
    thickness = {h: template.metric_map(h, "thickness") for h in HEMISPHERES}
    voxeliser = RibbonVoxeliser("fs_LR_32k", 4.0)
    plain = voxeliser.volume(thickness)
    bright = voxeliser.volume(thickness, {h: np.full(len(t), 1.2) for h, t in thickness.items()})
    assert bright.sum() / plain.sum() == pytest.approx(1.2, rel=1e-4)
    empty = voxeliser.volume({h: np.full(len(t), np.nan) for h, t in thickness.items()})
    assert not empty.any()


def test_metric_grid_places_values_where_the_vertices_are():
    grid = Grid((0.0, 0.0, 0.0), 1.0, (4, 4, 4))
    values = {"left": np.array([2.0, np.nan]), "right": np.array([-1.0])}
    positions = {"left": np.array([[1.0, 1.0, 1.0], [2.0, 2.0, 2.0]]), "right": np.array([[2.0, 1.0, 1.0]])}
    volume = metric_grid(values, positions, grid)
    assert volume[1, 1, 1] == 2.0 and volume[2, 1, 1] == -1.0
    assert np.count_nonzero(volume) == 2  # the NaN vertex adds nothing


def test_slices_lie_in_both_hemispheres_and_come_at_the_image_size():
    template = load_template("fs_LR_32k")
    voxeliser = RibbonVoxeliser("fs_LR_32k", 4.0)
    ribbon = voxeliser.volume({h: template.metric_map(h, "thickness") for h in HEMISPHERES}, partial_only=True)
    positions = slice_positions(ribbon, 2)
    assert set(positions) == {"axial0", "axial1", "coronal0", "coronal1", "sagittal_left0", "sagittal_right0",
                              "sagittal_left1", "sagittal_right1"}
    centre = voxeliser.grid.coordinates(np.zeros((1, 3)))[0, DIRECTIONS["sagittal"]]  # x = 0 mm, the midline
    assert positions["sagittal_left0"] < centre - 3 and positions["sagittal_right0"] > centre + 3
    slices = cut_slices(ribbon, positions, 48)
    assert all(image.shape == (48, 48) for image in slices.values())
    assert all(image.mean() > 0.03 for image in slices.values())  # every slice cuts through cortex
    with pytest.raises(ValueError, match="at least 1"):
        slice_positions(ribbon, 0)


def _write_freesurfer_subject(folder, *, talairach_shift=(0.0, 0.0, 0.0)):
    import nibabel as nib

    (folder / "mri" / "transforms").mkdir(parents=True)
    affine = np.array([[-1.0, 0, 0, 16], [0, 0, 1, -16], [0, -1, 0, 16], [0, 0, 0, 1]])  # FreeSurfer's LIA, 1 mm
    ribbon = np.zeros((32, 32, 32), dtype=np.uint8)
    ribbon[8:16, 8:24, 8:24] = 3    # left cortex
    ribbon[16:24, 8:24, 8:24] = 42  # right cortex
    ribbon[12:20, 12:20, 12:20] = 2  # white matter inside: not cortex
    brain = np.full(ribbon.shape, 77.0, dtype=np.float32)  # 0.7 of FreeSurfer's white-matter 110
    nib.save(nib.MGHImage(brain, affine), folder / "mri" / "brain.mgz")
    nib.save(nib.MGHImage(ribbon, affine), folder / "mri" / "ribbon.mgz")
    rows = [[1, 0, 0, talairach_shift[0]], [0, 1, 0, talairach_shift[1]], [0, 0, 1, talairach_shift[2]]]
    text = "MNI Transform File\n\nTransform_Type = Linear;\nLinear_Transform =\n" + "\n".join(
        " ".join(str(v) for v in row) for row in rows) + ";\n"
    (folder / "mri" / "transforms" / "talairach.xfm").write_text(text)
    return int(np.isin(ribbon, (3, 42)).sum())


def test_freesurfer_ribbon_reads_the_cortex_of_brain_mgz_into_mni_space(tmp_path):
    cortex_voxels = _write_freesurfer_subject(tmp_path / "sub-1")
    grid = Grid((-20.0, -20.0, -20.0), 4.0, (11, 11, 11))
    volume = freesurfer_ribbon(tmp_path / "sub-1", grid)
    # the cortex's 1 mm voxels at 0.7 of white matter, averaged into 4 mm voxels: total signal is kept
    assert volume.sum() * 4.0 ** 3 == pytest.approx(0.7 * cortex_voxels, rel=0.03)
    assert 0.6 < volume.max() <= 0.7 + 1e-6  # partial volumes: never above the cortex's own intensity
    shifted = _write_freesurfer_subject(tmp_path / "sub-2", talairach_shift=(8.0, 0.0, 0.0))
    moved = freesurfer_ribbon(tmp_path / "sub-2", grid)
    assert shifted == cortex_voxels and np.allclose(moved[2:], volume[:-2], atol=1e-5)  # 8 mm = 2 voxels along x
    assert read_talairach(tmp_path / "sub-2" / "mri" / "transforms" / "talairach.xfm")[0, 3] == 8.0
    (tmp_path / "sub-2" / "mri" / "ribbon.mgz").unlink()
    with pytest.raises(FileNotFoundError, match="ribbon.mgz is missing"):
        freesurfer_ribbon(tmp_path / "sub-2", grid)
    bad = tmp_path / "bad.xfm"
    bad.write_text("not a transform\n")
    with pytest.raises(ValueError, match="bad.xfm: not a FreeSurfer talairach.xfm"):
        read_talairach(bad)


@pytest.fixture(scope="module")
def simulated_autism(tmp_path_factory):
    import yaml

    from studylib.study.config import load_params

    folder = tmp_path_factory.mktemp("volumes")
    content = minimal_params()
    content["cohorts"] = {"abide": {**content["cohorts"]["abide"], "n_subjects": 60, "metrics": ["thickness", "sulc"]}}
    (folder / "params.yaml").write_text(yaml.safe_dump(content))
    params = load_params(folder / "params.yaml")
    [built] = build_params_cohorts(params, folder / "cohorts", progress=False, echo=lambda _: None)
    return built.cohort, folder


def test_a_planted_thickness_effect_is_visible_in_the_ribbon_volumes(simulated_autism):
    cohort, folder = simulated_autism
    store = build_volume_store(cohort, folder / "store", voxel=4.0, slices_per_direction=1, image_size=32,
                               progress=False)
    template = load_template("fs_LR_32k")
    voxeliser = RibbonVoxeliser("fs_LR_32k", 4.0)
    group = {h: template.metric_map(h, "thickness") for h in HEMISPHERES}
    effect = {h: np.nan_to_num(cohort.truth(f"{h}_thickness_effect")) for h in HEMISPHERES}
    expected = voxeliser.volume({h: group[h] + effect[h] for h in HEMISPHERES}) - voxeliser.volume(group)
    volumes = np.asarray(store.images("both", "ribbon"), dtype=np.float64)
    labels = cohort.subjects["label"].to_numpy()
    where = expected != 0

    def agreement(y):
        observed = volumes[y == 1].mean(axis=0) - volumes[y == 0].mean(axis=0)
        return np.corrcoef(observed[where], expected[where])[0, 1]

    rng = np.random.default_rng(0)
    null = [agreement(rng.permutation(labels)) for _ in range(5)]
    assert agreement(labels) > 0.3 > max(null)
    # the store: every set, the grid, the slices' size; built once
    meta = store.meta
    assert {tuple(v) for v in meta["sets"].values()} >= {("both", "ribbon", "3d-volume"), ("both", "sulc", "3d-mesh"),
                                                         ("axial0", "ribbon", "slice")}
    assert store.images("axial0", "ribbon").shape == (60, 32, 32)
    assert store.images("both", "sulc").shape == (60, *meta["grid"]["shape"])
    stamp = (folder / "store" / "store.json").stat().st_mtime_ns
    build_volume_store(cohort, folder / "store", voxel=4.0, slices_per_direction=1, image_size=32, progress=False)
    assert (folder / "store" / "store.json").stat().st_mtime_ns == stamp


def test_a_subject_without_thickness_on_the_cortex_is_named(simulated_autism, tmp_path):
    import shutil

    from studylib.data.cohort import Cohort

    cohort, _ = simulated_autism
    copy = tmp_path / "cohort"
    shutil.copytree(cohort.path, copy)
    maps = np.load(copy / "maps" / "left_thickness.npy")
    cortex = load_template("fs_LR_32k").surfaces["left"].cortex
    maps[3, np.flatnonzero(cortex)[10]] = np.nan
    np.save(copy / "maps" / "left_thickness.npy", maps)
    meta = json.loads((copy / "cohort.json").read_text())
    subject = Cohort(copy).subjects["subject"].iloc[3]
    with pytest.raises(ValueError, match=f"left thickness has NaN/inf on cortex vertices for subject.*{subject}"):
        build_volume_store(Cohort(copy), tmp_path / "store", voxel=4.0, slices_per_direction=1, image_size=32,
                           progress=False)
    assert meta["name"] == cohort.name


def test_freesurfer_cohorts_take_their_ribbons_from_brain_mgz(tmp_path, write_params):
    import shutil

    from studylib.baselines.volumes import freesurfer_ribbons
    from tests.data.test_readers import _params
    from tests.data.test_readers import test_freesurfer_subject_onto_fslr32k_through_a_registration_sphere as subject

    subject(tmp_path, write_params, load_template("fs_LR_32k"))  # one FreeSurfer subject (KKI_0050772) onto fs_LR
    folder = tmp_path / "subjects" / "KKI_0050772"
    _write_freesurfer_subject(tmp_path / "volumes")
    shutil.copytree(tmp_path / "volumes" / "mri", folder / "mri")
    spec = {"source": "freesurfer", "task": "autism", "template": "fs_LR_32k", "metrics": ["thickness"],
            "path": str(tmp_path / "subjects"), "phenotypes": str(tmp_path / "pheno.csv"),
            "registration_sphere": str(tmp_path / "spheres")}
    params = _params(write_params, spec)
    [built] = build_params_cohorts(params, tmp_path / "cohorts-with-volumes", progress=False, echo=lambda _: None)
    real = freesurfer_ribbons(params.cohorts["real"], built.cohort.subjects["subject"])
    store = build_volume_store(built.cohort, tmp_path / "store", voxel=6.0, slices_per_direction=1, image_size=32,
                               progress=False, real_ribbons=real)
    grid = Grid(tuple(store.meta["grid"]["origin"]), 6.0, tuple(store.meta["grid"]["shape"]))
    np.testing.assert_array_equal(store.images("both", "ribbon")[0], freesurfer_ribbon(folder, grid))
    assert store.images("both", "ribbon")[0].sum() > 0
    assert any("brain.mgz inside ribbon.mgz" in note for note in store.meta["notes"])
    (folder / "mri" / "ribbon.mgz").unlink()
    with pytest.raises(FileNotFoundError, match="subject 50772: .*ribbon.mgz is missing"):
        freesurfer_ribbons(params.cohorts["real"], built.cohort.subjects["subject"])


def test_metric_grid_weights_computed_once_give_the_same_grids_as_splatting_each_subject():
    """MetricGrid (the weights of fixed vertices, once) against splatting every subject's finite values afresh."""
    from studylib.baselines.volumes import MetricGrid, splat

    rng = np.random.default_rng(3)
    grid = Grid((0.0, 0.0, 0.0), 2.0, (6, 5, 4))
    positions = {"left": rng.uniform(0.5, 9.5, (40, 3)) * [1.0, 0.8, 0.6],
                 "right": rng.uniform(0.5, 9.5, (30, 3)) * [1.0, 0.8, 0.6]}
    on_grid = MetricGrid(positions, grid)
    for _ in range(3):
        values = {h: rng.normal(size=len(p)) for h, p in positions.items()}
        values["left"][rng.choice(40, 5, replace=False)] = np.nan  # a subject's missing values
        points = np.concatenate([positions[h][np.isfinite(values[h])] for h in positions])
        kept = np.concatenate([values[h][np.isfinite(values[h])] for h in positions])
        total, count = splat(points, [kept, np.ones(len(kept))], grid)
        expected = np.divide(total, count, out=np.zeros_like(total), where=count > 1e-3)
        np.testing.assert_allclose(on_grid(values), expected, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(metric_grid(values, positions, grid), on_grid(values), rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="vertices per hemisphere"):
        on_grid({"left": np.zeros(40)})
