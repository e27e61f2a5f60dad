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

:class:`ResultsLayout` is the one place that names a file passing from one notebook to
another (cohorts, flat maps, image stores, training jobs, predictions): notebooks
ask it and name no paths themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["ResultsLayout", "project_root", "recorded_gpu_check"]


def project_root() -> Path:
    """The study's checkout (the folder holding ``notebooks/``, ``params/`` and ``_toc.yml``)."""
    return Path(__file__).resolve().parents[2]


def recorded_gpu_check() -> Path:
    """``benchmarks/gpu_check.py``'s tables from a run on a lent GPU, committed with the project
    (``gpu_check.py --out benchmarks/records/gpu-check``), so that a book built where no GPU is can show them."""
    return project_root() / "benchmarks" / "records" / "gpu-check"


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

    @property
    def gpu_check(self) -> Path:
        """Results of ``benchmarks/gpu_check.py``: one folder beside the parameter sets' (the check belongs to the
        machine, not to a parameter set); it is also the results folder of ``params/gpu-check.yaml``, the study
        run the check's ``study`` section executes."""
        return self.root.parent / "gpu-check"

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

    # ---- files that pass between notebooks

    @property
    def cohorts(self) -> Path:
        """Built cohorts, one folder each (written by ``01_preprocess`` or ``studylib cohort build``)."""
        return self.artifacts("01_preprocess") / "cohorts"

    def cohort(self, name: str) -> Path:
        """The folder of cohort ``name``."""
        return self.cohorts / name

    @property
    def cohort_cache(self) -> Path:
        """Caches shared by cohort builds and the runner: Laplace-Beltrami eigenmodes of the templates, and the
        content hashes of input files (by size and modification time)."""
        return self.cohorts / "_cache"

    def flat_map(self, template: str, hemisphere: str) -> Path:
        """The template flat map of one hemisphere (written by ``02_flatten``)."""
        return self.artifacts("02_flatten") / "flatmaps" / f"{template}_{hemisphere}.npz"

    def subject_flat_map(self, cohort: str, hemisphere: str, subject: str) -> Path:
        """One subject's own flat map (``flatten.mode: per-subject``; written by ``02_flatten``)."""
        return self.artifacts("02_flatten") / "subject_maps" / cohort / hemisphere / f"{subject}.npz"

    @property
    def image_stores(self) -> Path:
        """Image stores, one folder per cohort (written by ``03_rasterize``)."""
        return self.artifacts("03_rasterize") / "images"

    def image_store(self, cohort: str) -> Path:
        """The image store of cohort ``name``."""
        return self.image_stores / cohort

    def training_jobs(self, task: str) -> Path:
        """Root of the training jobs of ``task`` (``sex``: ``04_train_sex``; ``autism``: ``05_train_asd_2stage``)."""
        return self.artifacts(_TRAINING_STAGES[task]) / "jobs"

    def predictions(self, task: str) -> Path:
        """Out-of-fold predictions of ``task``'s training arms, one row per (model, test subject); read by
        ``06_stack``."""
        return self.artifacts(_TRAINING_STAGES[task]) / "predictions.csv"

    def inner_predictions(self, task: str) -> Path:
        """Predictions of the nested stacking scheme's inner models of ``task`` (``stacking.nested``); read by 06."""
        return self.artifacts(_TRAINING_STAGES[task]) / "inner_predictions.csv"

    def reference_predictions(self, task: str) -> Path:
        """Out-of-fold predictions of the linear reference on the same images and folds as ``task``'s networks."""
        return self.artifacts(_TRAINING_STAGES[task]) / "linear_reference_predictions.csv"


    @property
    def ablation_jobs(self) -> Path:
        """Root of ``07_ablation``'s training jobs (the ablation arm retrained without mix-up)."""
        return self.artifacts("07_ablation") / "jobs"

    def baseline_store(self, cohort: str) -> Path:
        """Ribbon volumes, metric grids and slices of an autism cohort (09), in the image-store format."""
        return self.artifacts("09_baselines") / "volumes" / cohort

    @property
    def baseline_jobs(self) -> Path:
        """Root of ``09_baselines``' training jobs (slice, 3D-volume and 3D-mesh networks)."""
        return self.artifacts("09_baselines") / "jobs"

    @property
    def baseline_predictions(self) -> Path:
        """Out-of-fold predictions of the baselines per image set (09), in the networks' long format."""
        return self.artifacts("09_baselines") / "predictions.csv"

    @property
    def occlusion_maps(self) -> Path:
        """Per-subject occlusion maps of each image set (08), keyed by their models and settings."""
        return self.artifacts("08_occlusion") / "maps"

    @property
    def stacked_predictions(self) -> Path:
        """Stacked out-of-fold predictions of every arm and stacking method, both tasks (written by ``06_stack``;
        read by ``07_ablation`` and the book)."""
        return self.artifacts("06_stack") / "stacked_predictions.csv"


#: The stage that trains each task's models.
_TRAINING_STAGES = {"sex": "04_train_sex", "autism": "05_train_asd_2stage"}
