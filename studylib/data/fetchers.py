"""Download the study's public reference files into the data directory, verified by checksum.

Each file has a pinned source (repository and commit) and a SHA-256. A file
already present with the right checksum is used as it is; a download that does
not match is discarded. Offline, a missing file fails at once with a message
saying which file to place where.
"""

from __future__ import annotations

import shutil
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..hashing import file_sha256
from ..storage import atomic_path

__all__ = ["REMOTE_FILES", "FetchError", "fetch", "fetch_group"]

_BRAINSPACE = "https://raw.githubusercontent.com/MICA-MNI/BrainSpace/ce9993e2537f03229264bcbf226cf9f0f7d5ddfb"
_PCP_ABIDE = "https://raw.githubusercontent.com/preprocessed-connectomes-project/abide/fda1ec5d3f53eb97d94352e779f37c3ce46caee1"
_FS6 = "https://raw.githubusercontent.com/dfsp-spirit/abide_preproc_smri_freesurfer6/869ca75f49cd3e799035109819c43cc6a779156e/stats"


@dataclass(frozen=True)
class RemoteFile:
    """A file of the data directory and where it comes from."""

    path: str  # relative to the data directory
    url: str
    sha256: str
    group: str
    license: str


REMOTE_FILES: dict[str, RemoteFile] = {
    f.path: f
    for f in (
        RemoteFile("atlas/aparc_conte69.csv", f"{_BRAINSPACE}/brainspace/datasets/parcellations/aparc_conte69.csv",
                   "7c2aa12fcbe956d12963549980c1381a14341f663951aa9948e6458050cbe2a7", "atlas", "BSD-3-Clause"),
        RemoteFile("atlas/aparc_fsa5.csv", f"{_BRAINSPACE}/brainspace/datasets/parcellations/aparc_fsa5.csv",
                   "be8984177d648bf79935a898352d7069a41222e6eea6736f094236bf2cb9c365", "atlas", "BSD-3-Clause"),
        RemoteFile("abide1/Phenotypic_V1_0b_preprocessed1.csv", f"{_PCP_ABIDE}/Phenotypic_V1_0b_preprocessed1.csv",
                   "009f01a89697113e5375ded4fbcff4c85e89a4daa6d13e63c21ae5d57dda0865", "abide1", "CC BY-NC-SA"),
        RemoteFile("abide1/freesurfer6/brainstats_abide_with_pial.txt", f"{_FS6}/brainstats_abide_with_pial.txt",
                   "385862bf5c7ff3e1bb78cfb99179b9b584272da9aedcbc73a668f78acfefdb3b", "abide1", "CC BY-NC-SA"),
        RemoteFile("abide1/freesurfer6/lh.aparc_table_area.tsv", f"{_FS6}/lh.aparc_table_area.tsv",
                   "5bce29ffd73c5308f04182a7dfb448dcb0e7c5a1a05f7a765ac763d6db36b97c", "abide1", "CC BY-NC-SA"),
        RemoteFile("abide1/freesurfer6/lh.aparc_table_thickness.tsv", f"{_FS6}/lh.aparc_table_thickness.tsv",
                   "3adfe188709d229523e2bab74514a7c9e992e56409b98471b1ab3a2f3935b622", "abide1", "CC BY-NC-SA"),
        RemoteFile("abide1/freesurfer6/lh.aparc_table_volume.tsv", f"{_FS6}/lh.aparc_table_volume.tsv",
                   "2854b418bdd744348e96c1b0e4376e1e7dca21270b5a788462154da8fcc1895c", "abide1", "CC BY-NC-SA"),
        RemoteFile("abide1/freesurfer6/rh.aparc_table_area.tsv", f"{_FS6}/rh.aparc_table_area.tsv",
                   "7edfe226ff717c3f20ab3f7d74a60eb6855653a0a87d9ffd14a568087db6e66f", "abide1", "CC BY-NC-SA"),
        RemoteFile("abide1/freesurfer6/rh.aparc_table_thickness.tsv", f"{_FS6}/rh.aparc_table_thickness.tsv",
                   "cbc05573a508a3340074074308441cb4bbc741b13071cdcef4e0dac36894edf2", "abide1", "CC BY-NC-SA"),
        RemoteFile("abide1/freesurfer6/rh.aparc_table_volume.tsv", f"{_FS6}/rh.aparc_table_volume.tsv",
                   "eba6611195dd68a467a44c70a0d95d52c99b291e0e44dc48bcb55df144b7eacc", "abide1", "CC BY-NC-SA"),
    )
}


class FetchError(RuntimeError):
    """A reference file is missing and could not be downloaded, or its download is corrupt."""


def fetch(path: str, data_dir: str | Path, *, base_url: str | None = None, timeout: float = 30.0) -> Path:
    """Return ``data_dir/path``, downloading and verifying it first if it is missing.

    Parameters
    ----------
    path : str
        A key of :data:`REMOTE_FILES`, e.g. ``"atlas/aparc_conte69.csv"``.
    data_dir : str or Path
        The study's data directory.
    base_url : str, optional
        Download from ``base_url/path`` instead of the pinned source (a mirror, or ``file://`` in tests).
    timeout : float
        Seconds to wait for the server before giving up.

    Raises
    ------
    FetchError
        Unknown file, no network, or a checksum mismatch (the message names the file and where to put it).
    """
    if path not in REMOTE_FILES:
        raise FetchError(f"unknown reference file {path!r}; known: {', '.join(sorted(REMOTE_FILES))}")
    remote = REMOTE_FILES[path]
    target = Path(data_dir) / path
    if target.is_file():
        if file_sha256(target) != remote.sha256:
            raise FetchError(f"{target}: checksum does not match the pinned source {remote.url}; "
                             "remove the file to download it again")
        return target
    url = f"{base_url.rstrip('/')}/{path}" if base_url else remote.url
    with atomic_path(target) as part:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, part.open("wb") as handle:
                shutil.copyfileobj(response, handle)
        except (urllib.error.URLError, OSError) as error:
            raise FetchError(
                f"{target} is missing and could not be downloaded from {url} ({error}). "
                f"Offline? Copy the file there by hand (license: {remote.license})."
            ) from None
        if file_sha256(part) != remote.sha256:
            raise FetchError(f"download of {url} does not match the pinned checksum; not saved to {target}")
    return target


def fetch_group(group: str, data_dir: str | Path, **kwargs: object) -> list[Path]:
    """Fetch every file of a group (``"atlas"`` or ``"abide1"``) into ``data_dir``."""
    paths = [f.path for f in REMOTE_FILES.values() if f.group == group]
    if not paths:
        raise FetchError(f"unknown group {group!r}; choose from {sorted({f.group for f in REMOTE_FILES.values()})}")
    return [fetch(p, data_dir, **kwargs) for p in paths]
