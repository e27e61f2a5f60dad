"""One on-disk format for every cohort: simulated, semi-real or read from real data.

A cohort is a folder::

    cohort.json                      name, template, source, task, metrics, vertex counts, notes, provenance
    subjects.csv                     subject, label (0/1), label_name, sex, age, site, tiv (ml; NaN where unknown)
    qc.csv                           subject, file, reason: every subject or file left out, and why
    maps/<hemisphere>_<metric>.npy   float32, subjects x template vertices, NaN outside the cortex
    truth/...                        simulated cohorts only: planted effect maps and the generative model
    inputs.json                      sizes and content hashes of the files the build read (what a rebuild compares)

Maps are ``.npy`` files opened memory-mapped, so a 2000-subject cohort loads lazily.
:class:`CohortWriter` preallocates them and is filled in chunks of subjects.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..storage import atomic_path, atomic_write_text

__all__ = ["QC_COLUMNS", "SUBJECT_COLUMNS", "Cohort", "CohortWriter", "open_cohorts"]

SUBJECT_COLUMNS = ("subject", "label", "label_name", "sex", "age", "site", "tiv")
QC_COLUMNS = ("subject", "file", "reason")


def _map_name(hemisphere: str, metric: str) -> str:
    return f"{hemisphere}_{metric}.npy"


def _check_subjects(subjects: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in SUBJECT_COLUMNS if c not in subjects.columns]
    if missing:
        raise ValueError(f"subjects table lacks column(s) {', '.join(missing)}")
    duplicated = subjects.loc[subjects["subject"].astype(str).duplicated(), "subject"].tolist()
    if duplicated:
        raise ValueError(f"subject id(s) listed more than once: {duplicated[:10]}")
    unlabelled = subjects.loc[~subjects["label"].isin([0, 1]), "subject"].tolist()
    if unlabelled:
        raise ValueError(f"subject(s) without a 0/1 label: {unlabelled[:10]}")
    table = subjects.loc[:, list(SUBJECT_COLUMNS)].reset_index(drop=True)
    table["subject"] = table["subject"].astype(str)
    table["label"] = table["label"].astype(int)
    return table


class CohortWriter:
    """Create a cohort folder and fill its maps subject chunk by subject chunk.

    Parameters
    ----------
    path : Path
        Folder to create (its ``maps`` are overwritten).
    subjects : DataFrame
        The subjects table, columns :data:`SUBJECT_COLUMNS`, in map row order.
    template : str
        Template name; ``n_vertices`` gives each hemisphere's vertex count.
    metrics : sequence of str
    meta : dict
        Anything else to record in ``cohort.json`` (name, source, task, notes, params).
    """

    def __init__(self, path: str | Path, subjects: pd.DataFrame, template: str, n_vertices: dict[str, int],
                 metrics: Sequence[str], meta: dict[str, Any]):
        self.path = Path(path)
        self.subjects = _check_subjects(subjects)
        (self.path / "maps").mkdir(parents=True, exist_ok=True)
        self.meta = {"template": template, "metrics": list(metrics), "hemispheres": list(n_vertices),
                     "n_vertices": dict(n_vertices), "n_subjects": len(self.subjects), **meta}
        self._maps = {
            (h, m): np.lib.format.open_memmap(self.path / "maps" / _map_name(h, m), mode="w+", dtype=np.float32,
                                              shape=(len(self.subjects), n))
            for h, n in n_vertices.items() for m in metrics
        }

    def write(self, hemisphere: str, metric: str, rows: slice | np.ndarray, values: np.ndarray) -> None:
        """Store ``values`` (rows x vertices) for those subject rows."""
        self._maps[(hemisphere, metric)][rows] = values

    def close(self, qc: pd.DataFrame | None = None, keep: np.ndarray | None = None) -> Cohort:
        """Flush the maps, write the tables and ``cohort.json``; return the cohort opened read-only.

        ``keep`` (boolean per subject row) drops rows that turned out unusable while reading; the maps
        are then rewritten chunk by chunk without them.
        """
        for (hemisphere, metric), array in self._maps.items():
            array.flush()
            if keep is not None and not keep.all():
                self._drop_rows(hemisphere, metric, array, np.asarray(keep, dtype=bool))
        self._maps.clear()
        if keep is not None:
            self.subjects = self.subjects[np.asarray(keep, dtype=bool)].reset_index(drop=True)
            self.meta["n_subjects"] = len(self.subjects)
        self.subjects.to_csv(self.path / "subjects.csv", index=False)
        qc = pd.DataFrame(columns=list(QC_COLUMNS)) if qc is None else qc.loc[:, list(QC_COLUMNS)]
        qc.to_csv(self.path / "qc.csv", index=False)
        atomic_write_text(self.path / "cohort.json", json.dumps(self.meta, indent=2, default=str) + "\n")
        return Cohort(self.path)


    def _drop_rows(self, hemisphere: str, metric: str, array: np.ndarray, keep: np.ndarray) -> None:
        path = self.path / "maps" / _map_name(hemisphere, metric)
        kept = np.flatnonzero(keep)
        with atomic_path(path) as partial:
            target = np.lib.format.open_memmap(partial, mode="w+", dtype=np.float32,
                                               shape=(len(kept), array.shape[1]))
            for start in range(0, len(kept), 256):
                target[start: start + 256] = array[kept[start: start + 256]]
            target.flush()
            del target, array


@dataclass(frozen=True)
class Cohort:
    """A cohort folder opened for reading; maps are memory-mapped.

    Examples
    --------
    >>> cohort = Cohort("results/smoke/artifacts/01_preprocess/cohorts/hcp")   # doctest: +SKIP
    >>> cohort.maps("left", "thickness").shape                                 # doctest: +SKIP
    (24, 32492)
    """

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))
        if not (self.path / "cohort.json").is_file():
            raise FileNotFoundError(f"not a cohort folder (no cohort.json): {self.path}")

    @cached_property
    def meta(self) -> dict[str, Any]:
        return json.loads((self.path / "cohort.json").read_text())

    @property
    def name(self) -> str:
        return self.meta.get("name", self.path.name)

    @property
    def template(self) -> str:
        return self.meta["template"]

    @property
    def metrics(self) -> list[str]:
        return self.meta["metrics"]

    @property
    def hemispheres(self) -> list[str]:
        return self.meta["hemispheres"]

    @cached_property
    def subjects(self) -> pd.DataFrame:
        return pd.read_csv(self.path / "subjects.csv", dtype={"subject": str})

    @property
    def qc(self) -> pd.DataFrame:
        return pd.read_csv(self.path / "qc.csv", dtype={"subject": str})

    def __len__(self) -> int:
        return int(self.meta["n_subjects"])

    def maps(self, hemisphere: str, metric: str) -> np.ndarray:
        """Subjects x vertices float32 array of one hemisphere and metric, memory-mapped read-only."""
        path = self.path / "maps" / _map_name(hemisphere, metric)
        if not path.is_file():
            raise KeyError(f"cohort {self.name} has no {hemisphere} {metric} maps "
                           f"(it has {', '.join(self.metrics)} on {', '.join(self.hemispheres)})")
        return np.load(path, mmap_mode="r")

    @property
    def has_truth(self) -> bool:
        """Whether the cohort carries ground truth (simulated cohorts do)."""
        return (self.path / "truth").is_dir()

    def truth_table(self, name: str) -> pd.DataFrame:
        """A ground-truth table of a simulated cohort: ``planted_regions`` or ``bayes_accuracy``."""
        path = self.path / "truth" / f"{name}.csv"
        if not path.is_file():
            raise KeyError(f"cohort {self.name} has no ground-truth table {name!r} (only simulated cohorts do)")
        return pd.read_csv(path)

    def truth(self, name: str) -> np.ndarray:
        """A ground-truth array of a simulated cohort, e.g. ``truth("left_thickness_effect")``."""
        path = self.path / "truth" / f"{name}.npy"
        if not path.is_file():
            raise KeyError(f"cohort {self.name} has no ground truth {name!r} (only simulated cohorts do)")
        return np.load(path)


def open_cohorts(folders: Mapping[str, str | Path]) -> tuple[dict[str, Cohort], list[str]]:
    """The cohorts in ``folders`` (name -> cohort folder), and the names without one (optional cohorts whose
    data were absent)."""
    found = {name: Cohort(Path(folder)) for name, folder in folders.items() if (Path(folder) / "cohort.json").is_file()}
    return found, [name for name in folders if name not in found]
