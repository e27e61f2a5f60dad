from __future__ import annotations

import numpy as np
import pytest

from studylib.data.abide import load_regional_table
from studylib.data.templates import DK_REGIONS, load_parcellation, load_template
from studylib.geometry.mesh import mesh_topology, submesh


@pytest.fixture(scope="module")
def fslr():
    return load_template("fs_LR_32k")


def test_fslr32k_surfaces_masks_and_maps(fslr):
    assert fslr.metrics == ("thickness", "sulc", "curvature", "myelin")
    for hemisphere in ("left", "right"):
        surface = fslr.surfaces[hemisphere]
        assert surface.vertices.shape == (32492, 3) and surface.faces.shape == (64980, 3)
        assert surface.cortex.sum() == {"left": 29696, "right": 29716}[hemisphere]
        for metric in fslr.metrics:
            values = fslr.metric_map(hemisphere, metric)
            assert np.isfinite(values[surface.cortex]).all(), (hemisphere, metric)
            assert np.isnan(values[~surface.cortex]).all()
        thickness = fslr.metric_map(hemisphere, "thickness")[surface.cortex]
        assert 2.0 < thickness.mean() < 3.2  # group cortical thickness in mm
        topology = mesh_topology(*submesh(surface.vertices, surface.faces, surface.cortex)[:2])
        assert topology.components >= 1 and topology.nonmanifold_edges == 0
    with pytest.raises(KeyError, match="has no 'area' map"):
        fslr.metric_map("left", "area")


def test_fsaverage5_template():
    template = load_template("fsaverage5")
    assert template.metrics == ("thickness", "sulc", "curvature")
    assert template.surfaces["left"].vertices.shape == (10242, 3)
    assert template.surfaces["left"].cortex.sum() == 10242 - 840  # D-K medial wall, label 0
    assert "Desikan" in template.notes[0]
    assert np.isfinite(template.metric_map("right", "sulc")[template.surfaces["right"].cortex]).all()


def test_unknown_template():
    with pytest.raises(ValueError, match="unknown template 'fsaverage7'"):
        load_template("fsaverage7")


def test_parcellations():
    dk = load_parcellation("dk", "fs_LR_32k")
    assert dk.name == "dk" and not dk.note
    assert set(np.unique(dk.labels["left"])) <= set(range(0, 36))
    assert set(np.unique(dk.labels["right"])) - {0} <= set(range(36, 71))
    assert dk.names[36 + DK_REGIONS.index("insula")] == "R_insula"
    mmp = load_parcellation("mmp", "fs_LR_32k")
    assert len(np.unique(mmp.labels["left"])) == 181  # 180 areas + medial wall
    with pytest.raises(ValueError, match="ships on fs_LR_32k only"):
        load_parcellation("mmp", "fsaverage5")


def test_dk_needs_no_data_directory(monkeypatch, tmp_path):
    """The D-K atlas ships with the package: the same labels wherever the data directory points."""
    monkeypatch.setenv("STUDYLIB_DATA", str(tmp_path))
    for template, n in (("fs_LR_32k", 32492), ("fsaverage5", 10242)):
        dk = load_parcellation("dk", template)
        assert len(dk.labels["left"]) == len(dk.labels["right"]) == n
        assert len(set(np.unique(dk.labels["left"])) - {0}) >= 34


def test_dk_label_order_matches_the_abide_tables(shared_data):
    """The README's colortable order must agree with the region names in the FreeSurfer tables."""
    table = load_regional_table(shared_data, "thickness")
    regions = list(table["left"].columns)
    assert regions == [r for r in DK_REGIONS if r != "corpuscallosum"]
    # and each D-K label of the atlas covers a region of the expected size order (superiorfrontal is large)
    dk = load_parcellation("dk", "fs_LR_32k")
    counts = np.bincount(dk.labels["left"], minlength=36)
    assert counts[1 + DK_REGIONS.index("superiorfrontal")] > counts[1 + DK_REGIONS.index("frontalpole")] * 10
