"""The study's numbered notebooks and what each depends on.

The runner re-executes a notebook only when something it depends on changed:
its own source, the code of the ``studylib`` modules it imports (and of the
modules those import), the parameter sections listed in ``params`` (the only
ones it may read), the data directory's reference files and real cohorts'
input files (for stages with ``reads_data_dir``), or an upstream stage listed
in ``after``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["STAGES", "RunReport", "Stage", "StageResult", "stage_names"]


@dataclass(frozen=True)
class Stage:
    """One numbered notebook of the study.

    Attributes
    ----------
    name : str
        Notebook file stem, e.g. ``"02_flatten"``; also its results sub-folder.
    title : str
        What the notebook shows, for progress lines and the book.
    params : tuple of str
        Top-level parameter keys the notebook reads.
    after : tuple of str
        Upstream stages whose outputs it reads.
    reads_data_dir : bool
        Whether files in the data directory are inputs.
    reads_cohort_inputs : bool
        Whether real-data cohorts' folders are inputs (their files' content hashes join the fingerprint).
    """

    name: str
    title: str
    params: tuple[str, ...]
    after: tuple[str, ...] = ()
    reads_data_dir: bool = False
    reads_cohort_inputs: bool = False


STAGES: tuple[Stage, ...] = (
    Stage("01_preprocess", "Cohorts and quality control", ("seed", "data_dir", "cohorts", "realism"),
          reads_data_dir=True, reads_cohort_inputs=True),
    Stage("02_flatten", "Area-preserving flat maps", ("seed", "cohorts", "flatten", "raster", "executor"),
          after=("01_preprocess",)),
    Stage("03_rasterize", "Flat-map images", ("seed", "cohorts", "flatten", "raster"),
          after=("01_preprocess", "02_flatten")),
    Stage("04_train_sex", "Sex classification (HCP)",
          ("seed", "device", "raster", "train", "transfer", "executor", "stacking"),
          after=("03_rasterize",)),
    Stage("05_train_asd_2stage", "Autism classification, 2-stage transfer",
          ("seed", "device", "train", "transfer", "executor", "stacking"),
          after=("03_rasterize", "04_train_sex")),
    Stage("06_stack", "Stacking across metrics and hemispheres", ("seed", "stacking", "transfer"),
          after=("03_rasterize", "04_train_sex", "05_train_asd_2stage")),
    Stage("07_ablation", "Ablation: stacking and mix-up",
          ("seed", "device", "train", "transfer", "executor", "stacking", "ablation"),
          after=("03_rasterize", "05_train_asd_2stage", "06_stack")),
    Stage("08_occlusion", "Occlusion maps",
          ("seed", "device", "raster", "train", "transfer", "executor", "occlusion"),
          after=("04_train_sex", "05_train_asd_2stage")),
    Stage("09_baselines", "Baselines: PCA+SVM, slice, volume and mesh CNNs",
          ("seed", "device", "cohorts", "raster", "baselines", "train", "transfer", "executor", "stacking"),
          after=("01_preprocess", "03_rasterize", "05_train_asd_2stage", "06_stack")),
)


def stage_names(stages: tuple[Stage, ...] = STAGES) -> list[str]:
    """Names of ``stages`` in run order."""
    return [stage.name for stage in stages]


@dataclass
class StageResult:
    """What happened to one stage in a run."""

    name: str
    status: str  # "ran", "skipped", "failed", "not selected"
    seconds: float | None = None
    executed_at: str | None = None
    fingerprint: str | None = None
    reason: str = ""


@dataclass
class RunReport:
    """The stages of one run, in order."""

    params_name: str
    results: list[StageResult] = field(default_factory=list)

    def by_status(self, status: str) -> list[str]:
        return [r.name for r in self.results if r.status == status]
