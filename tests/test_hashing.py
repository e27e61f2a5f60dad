"""Digests of values, files, folders and code scopes."""

from __future__ import annotations

import os

from studylib.hashing import code_digest, code_scope, file_sha256, folder_listing_digest, sha256_bytes, sha256_json


def test_values_files_and_folders(tmp_path):
    assert sha256_json({"b": 1, "a": [1, 2]}) == sha256_json({"a": [1, 2], "b": 1})
    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * (3 << 20))  # several read blocks
    assert file_sha256(path) == sha256_bytes(b"x" * (3 << 20))
    before = folder_listing_digest(tmp_path)
    os.utime(path, ns=(1, 1))
    assert folder_listing_digest(tmp_path) != before
    assert folder_listing_digest(tmp_path / "missing") == "absent"


def test_code_digest_changes_with_the_scope_only(monkeypatch):
    from studylib import hashing

    flatten = code_digest("studylib.geometry.flatten")
    assert "studylib.geometry.transport" in code_scope("studylib.geometry.flatten")
    real = hashing._read_source
    monkeypatch.setattr(hashing, "_read_source", lambda path: real(path) + (b"#" if path.name == "plotting.py" else b""))
    assert code_digest("studylib.geometry.flatten") == flatten
    monkeypatch.setattr(hashing, "_read_source", lambda path: real(path) + (b"#" if path.name == "transport.py" else b""))
    assert code_digest("studylib.geometry.flatten") != flatten
    assert code_digest("studylib.geometry.flatten", extra=["torch 1"]) != code_digest("studylib.geometry.flatten")


def test_comments_docstrings_and_the_parameter_schema_do_not_change_code_digests(monkeypatch):
    from studylib import hashing

    jobs = code_digest("studylib.train.jobs")
    assert "studylib.params" in code_scope("studylib.train.jobs")  # imported, but its effect is in the values
    real = hashing._read_source
    cases = {"params.py": b"\nX = 1\n", "engine.py": b"\nX = 1\n"}
    for name, added in cases.items():
        monkeypatch.setattr(hashing, "_read_source", lambda path, name=name, added=added: real(path) + (
            added if path.name == name else b""))
        assert (code_digest("studylib.train.jobs") == jobs) == (name == "params.py"), name
    source = hashing.module_file("studylib.train.recipe")
    assert b"mix-up" not in real(source)  # docstrings dropped
    assert b"def learning_rate" in real(source)


def test_a_manifest_cache_is_reused_only_for_the_same_file(tmp_path):
    import shutil

    from studylib.hashing import file_manifest

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "x.bin").write_bytes(b"one")
    (tmp_path / "b" / "x.bin").write_bytes(b"two")
    shutil.copystat(tmp_path / "a" / "x.bin", tmp_path / "b" / "x.bin")  # same size and mtime, other content
    cache = tmp_path / "cache.json"
    first = file_manifest({"x.bin": tmp_path / "a" / "x.bin"}, cache)
    other = file_manifest({"x.bin": tmp_path / "b" / "x.bin"}, cache)
    assert first["x.bin"]["sha256"] != other["x.bin"]["sha256"]
    assert file_manifest({"x.bin": tmp_path / "b" / "x.bin"}, cache) == other
