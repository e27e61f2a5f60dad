"""Where a study run keeps its files: ``results/<params name>/``.

::

    results/<name>/
        provenance.json            params, versions, commit, platform, device, timings
        notebooks/<stage>.ipynb    papermill's executed notebooks (kept on failure too)
        tables/<stage>/*.csv       tables a notebook wrote
        figures/<stage>/*.png|svg  figures a notebook wrote
        artifacts/<stage>/...      arrays, maps, models and caches for later stages
        .stamps/<stage>.json       fingerprint of the last successful execution
        book/                      the Jupyter Book source and HTML built from the above
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["ResultsLayout", "project_root"]


def project_root() -> Path:
    """The study's checkout (the folder holding ``notebooks/``, ``params/`` and ``_toc.yml``)."""
    return Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class ResultsLayout:
    """Paths of one parameter set's results folder."""

    root: Path

    @classmethod
    def for_params(cls, params_name: str, results_root: str | Path = "results") -> ResultsLayout:
        return cls(Path(results_root).resolve() / params_name)

    @property
    def notebooks(self) -> Path:
        return self.root / "notebooks"

    @property
    def stamps(self) -> Path:
        return self.root / ".stamps"

    @property
    def provenance(self) -> Path:
        return self.root / "provenance.json"

    @property
    def book(self) -> Path:
        return self.root / "book"

    def executed_notebook(self, stage: str) -> Path:
        return self.notebooks / f"{stage}.ipynb"

    def stamp(self, stage: str) -> Path:
        return self.stamps / f"{stage}.json"

    def tables(self, stage: str) -> Path:
        return self.root / "tables" / stage

    def figures(self, stage: str) -> Path:
        return self.root / "figures" / stage

    def artifacts(self, stage: str) -> Path:
        return self.root / "artifacts" / stage

    @property
    def cohorts(self) -> Path:
        """Built cohorts, one folder each (written by ``01_preprocess`` or ``studylib cohort build``)."""
        return self.artifacts("01_preprocess") / "cohorts"
