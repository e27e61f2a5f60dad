from __future__ import annotations

import shutil

import pytest

from studylib.data.fetchers import REMOTE_FILES, FetchError, fetch, fetch_group


def test_present_files_are_verified_and_used(shared_data):
    assert fetch("atlas/aparc_fsa5.csv", shared_data) == shared_data / "atlas" / "aparc_fsa5.csv"


def test_download_from_a_mirror_verifies_the_checksum(shared_data, tmp_path):
    paths = fetch_group("atlas", tmp_path / "data", base_url=shared_data.as_uri())
    assert [p.name for p in paths] == ["aparc_conte69.csv", "aparc_fsa5.csv"]
    assert (tmp_path / "data" / "atlas" / "aparc_conte69.csv").read_bytes() == \
        (shared_data / "atlas" / "aparc_conte69.csv").read_bytes()


def test_corrupt_download_is_not_saved(tmp_path):
    mirror = tmp_path / "mirror" / "atlas"
    mirror.mkdir(parents=True)
    (mirror / "aparc_fsa5.csv").write_text("1\n2\n")
    with pytest.raises(FetchError, match="does not match the pinned checksum"):
        fetch("atlas/aparc_fsa5.csv", tmp_path / "data", base_url=(tmp_path / "mirror").as_uri())
    assert not (tmp_path / "data" / "atlas" / "aparc_fsa5.csv").exists()
    assert not list((tmp_path / "data" / "atlas").glob("*.part"))


def test_corrupt_local_file_is_reported(shared_data, tmp_path):
    target = tmp_path / "atlas" / "aparc_fsa5.csv"
    target.parent.mkdir()
    shutil.copy(shared_data / "atlas" / "aparc_fsa5.csv", target)
    with target.open("a") as handle:
        handle.write("7\n")
    with pytest.raises(FetchError, match="checksum does not match"):
        fetch("atlas/aparc_fsa5.csv", tmp_path)


def test_unreachable_source_fails_fast_with_instructions(tmp_path):
    with pytest.raises(FetchError) as caught:
        fetch("abide1/Phenotypic_V1_0b_preprocessed1.csv", tmp_path, base_url="http://127.0.0.1:9", timeout=2)
    message = str(caught.value)
    assert "could not be downloaded" in message and "Copy the file there by hand" in message
    assert str(tmp_path / "abide1" / "Phenotypic_V1_0b_preprocessed1.csv") in message


def test_registry_names_pinned_commits():
    assert len(REMOTE_FILES) == 10
    for remote in REMOTE_FILES.values():
        assert len(remote.sha256) == 64
        assert any(len(part) == 40 for part in remote.url.split("/")), remote.url  # a commit, not a branch
    with pytest.raises(FetchError, match="unknown reference file"):
        fetch("atlas/other.csv", "/tmp")
