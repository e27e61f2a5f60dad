"""Atomic writes and chunked statistics."""

from __future__ import annotations

import numpy as np
import pytest

from studylib.storage import atomic_path, atomic_write_text, chunked_moments


def test_an_atomic_write_that_fails_leaves_the_old_file_and_no_partial(tmp_path):
    target = tmp_path / "sub" / "table.csv"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError), atomic_path(target) as partial:
        partial.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert sorted(p.name for p in target.parent.iterdir()) == ["table.csv"]
    with atomic_path(tmp_path / "arrays.npz") as partial:
        assert partial.suffix == ".npz"  # np.savez keeps the name
        np.savez(partial, x=np.arange(3))
    np.testing.assert_array_equal(np.load(tmp_path / "arrays.npz")["x"], np.arange(3))


def test_chunked_moments_match_numpy_for_any_chunk_and_row_order():
    rng = np.random.default_rng(0)
    images = rng.normal(3.0, 2.0, (37, 5, 4)).astype(np.float32)
    rows = rng.permutation(37)[:20]
    for chunk in (1, 7, 256):
        mean, sd, count = chunked_moments(images, rows, chunk=chunk)
        assert count == 20
        assert mean == pytest.approx(images[rows].astype(np.float64).mean(), rel=1e-12)
        assert sd == pytest.approx(images[rows].astype(np.float64).std(), rel=1e-12)
        mean_image, sd_image, _ = chunked_moments(images, rows, chunk=chunk, axis=0)
        np.testing.assert_allclose(mean_image, images[rows].astype(np.float64).mean(axis=0), rtol=1e-12)
        np.testing.assert_allclose(sd_image, images[rows].astype(np.float64).std(axis=0), rtol=1e-9)
    with pytest.raises(ValueError, match="no rows"):
        chunked_moments(images, np.array([], dtype=int))
