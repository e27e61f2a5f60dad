"""The data directory's reference files: where each lies, which cohorts need which, and how to fetch them.

Kept free of heavy imports, so that validating a parameter file can name a missing file at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["FREESURFER_DIR", "PHENOTYPES_FILE", "absent_data", "fetch_commands", "reference_manifest",
           "semireal_files"]

#: ABIDE I FreeSurfer 6 tables.
FREESURFER_DIR = Path("abide1") / "freesurfer6"
#: The ABIDE I phenotypic table.
PHENOTYPES_FILE = Path("abide1") / "Phenotypic_V1_0b_preprocessed1.csv"


def semireal_files(metrics: list[str]) -> list[str]:
    """Files the semi-real cohort reads from the data directory: the ABIDE I phenotypes, the regional tables of
    ``metrics`` and the whole-brain table (TIV). (The D-K labels ship with the package.)"""
    tables = [f"{FREESURFER_DIR.as_posix()}/{h}.aparc_table_{m}.tsv" for m in metrics for h in ("lh", "rh")]
    return [PHENOTYPES_FILE.as_posix(), *tables,
            f"{FREESURFER_DIR.as_posix()}/brainstats_abide_with_pial.txt"]


def absent_data(cohorts: Mapping[str, Any], data_dir: str | Path) -> dict[str, list[str]]:
    """For each cohort that reads the data directory (semi-real), the files it needs that are not there."""
    absent = {}
    for name, spec in cohorts.items():
        if spec.source == "semi-real":
            missing = [f for f in semireal_files(list(spec.metrics)) if not (Path(data_dir) / f).is_file()]
            if missing:
                absent[name] = missing
    return absent


def fetch_commands(files: list[str], data_dir: str | Path | None = None) -> list[str]:
    """The ``studylib fetch`` commands that download ``files`` into ``data_dir`` (omitted: the default one)."""
    from .fetchers import REMOTE_FILES

    target = f" --data-dir {data_dir}" if data_dir is not None else ""
    return [f"studylib fetch {group}{target}" for group in sorted({REMOTE_FILES[f].group for f in files
                                                                   if f in REMOTE_FILES})]


def reference_manifest(data_dir: str | Path, cache: str | Path | None = None) -> dict[str, dict]:
    """Sizes and content hashes of the reference files present in the data directory (not the whole folder: a data
    directory may also hold users' large files, which no cohort of this kind reads)."""
    from ..hashing import file_manifest
    from .fetchers import REMOTE_FILES

    data_dir = Path(data_dir)
    present = {f: data_dir / f for f in REMOTE_FILES if (data_dir / f).is_file()}
    return file_manifest(present, Path(cache) / "data_dir_manifest.json" if cache is not None else None)
