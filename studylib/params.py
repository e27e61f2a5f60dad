"""The parameter schema: one frozen pydantic model per section of ``params/*.yaml``.

These models are the contracts that the science layers take in their signatures
(``TrainParams``, ``CohortParams``, ...). Reading, merging (``extends``) and
validating parameter files with errors that name file and key is the study
machinery's job: :func:`studylib.study.config.load_params`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    PositiveInt,
    field_validator,
    model_validator,
)

__all__ = [
    "AUTISM_ARMS",
    "DATA_ENV_VAR",
    "HCP_ONLY",
    "IMAGENET",
    "SCRATCH",
    "SEX_ARMS",
    "STAGED_ARMS",
    "TASK_ARMS",
    "TWO_STAGE",
    "AblationParams",
    "NETWORK_STRIDE",
    "BaselinesParams",
    "COHORT_SCHEMAS",
    "CohortParams",
    "DataParams",
    "ExecutorParams",
    "FreeSurferCohortParams",
    "HcpCohortParams",
    "SemiRealCohortParams",
    "SimulatedCohortParams",
    "FlattenParams",
    "OcclusionParams",
    "PowerDiagram",
    "ParamsError",
    "RasterParams",
    "StackingParams",
    "StudyParams",
    "TrainParams",
    "TransferParams",
    "resolve_data_dir",
]

#: Environment variable naming the data directory when params leave it unset.
DATA_ENV_VAR = "STUDYLIB_DATA"

#: All backbones downsample their input by this factor; image sides must be multiples of it.
NETWORK_STRIDE = 32

Metric = Literal["thickness", "sulc", "curvature", "myelin", "area", "volume"]
Backbone = Literal["resnet50", "densenet121", "resnet18", "efficientnet_lite0"]


class ParamsError(ValueError):
    """A parameter file is unreadable or invalid; the message names file and key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


SIMULATED_METRICS = ("thickness", "sulc", "curvature", "myelin")
REGIONAL_METRICS = ("thickness", "area", "volume")


FREESURFER_METRICS = ("thickness", "sulc", "curvature")


class _CohortSection(_Section):
    """What every cohort says, whatever its source."""

    task: Literal["sex", "autism"] = Field(description="Label: sex (1 = female) or autism (1 = autism).")
    template: Literal["fs_LR_32k", "fsaverage5"] = "fs_LR_32k"
    metrics: list[Metric] = Field(min_length=1)
    required: bool = Field(
        default=True, description="If false, a cohort whose data are absent is skipped with a note instead of failing.")

    #: Metrics this source provides.
    _provides: tuple[str, ...] = SIMULATED_METRICS

    @model_validator(mode="after")
    def _metrics_provided(self) -> _CohortSection:
        wrong = [m for m in self.metrics if m not in self._provides]
        if wrong:
            raise ValueError(f"source '{self.source}' provides {', '.join(self._provides)}; not {', '.join(wrong)}")
        if self.template == "fsaverage5" and "myelin" in self.metrics:
            raise ValueError("fsaverage5 has no group myelin map; drop myelin or use fs_LR_32k")
        return self


def _existing_dir(value: Path | None) -> Path | None:
    if value is not None and not value.is_dir():
        raise ValueError(f"'{value}' is not an existing directory")
    return value


def _existing_file(value: Path | None) -> Path | None:
    if value is not None and not value.is_file():
        raise ValueError(f"'{value}' is not an existing file")
    return value


class SimulatedCohortParams(_CohortSection):
    """Subjects drawn on a template with planted effects and a known Bayes-optimal accuracy (offline)."""

    source: Literal["simulated"]
    n_subjects: PositiveInt = Field(description="Number of subjects to draw.")
    n_sites: PositiveInt = Field(default=1, description="Scanning sites.")
    n_modes: PositiveInt = Field(default=60, description="Texture: smooth Laplace-Beltrami modes per hemisphere.")
    scenario: Literal["realistic", "paper-sized"] = Field(
        default="paper-sized",
        description="Planted label effect: 'realistic' (the real ABIDE I regional d's shrunk by empirical Bayes) or "
                    "'paper-sized' (the same pattern scaled to a Bayes-optimal accuracy a little above the paper's "
                    "best: 0.735 for autism, 0.97 for sex).")

    @model_validator(mode="after")
    def _one_site_for_sex(self) -> SimulatedCohortParams:
        if self.task == "sex" and self.n_sites != 1:
            raise ValueError(f"the simulated sex cohort (HCP-like) has one site; n_sites is {self.n_sites}")
        return self


class SemiRealCohortParams(_CohortSection):
    """The real ABIDE I subjects with their real Desikan-Killiany regional values painted on the template (needs
    the data directory)."""

    source: Literal["semi-real"]
    n_subjects: PositiveInt | None = Field(
        default=None, description="A seeded random subset of the real subjects (every one left out is a QC row); "
                                  "null = all.")
    _provides = REGIONAL_METRICS

    @model_validator(mode="after")
    def _autism_only(self) -> SemiRealCohortParams:
        if self.task != "autism":
            raise ValueError("the semi-real ABIDE I cohort classifies autism; set task: autism")
        return self


class _RealCohortSection(_CohortSection):
    path: Path = Field(description="Root of the subject folders.")
    phenotypes: Path = Field(description="The phenotype CSV that labels the subjects.")
    n_subjects: PositiveInt | None = Field(
        default=None, description="A seeded random subset of the subjects (every one left out is a QC row); "
                                  "null = all. Taken only when a parameter file of yours asks for it.")

    _check_path = field_validator("path")(_existing_dir)
    _check_phenotypes = field_validator("phenotypes")(_existing_file)


class HcpCohortParams(_RealCohortSection):
    """An HCP S1200 download: ``{path}/{subject}/MNINonLinear/fsaverage_LR32k/...`` and the behavioural CSV
    (``Subject``, ``Gender``, ``Age``)."""

    source: Literal["hcp"]
    task: Literal["sex"] = Field(default="sex", description="HCP data carry sex labels.")
    template: Literal["fs_LR_32k"] = "fs_LR_32k"


class FreeSurferCohortParams(_RealCohortSection):
    """A FreeSurfer ``SUBJECTS_DIR`` (e.g. ABIDE) and the ABIDE phenotypic CSV (``SUB_ID``, ``SITE_ID``,
    ``DX_GROUP``, ``SEX``, ``AGE_AT_SCAN``); subject folders match ``SUB_ID`` by their trailing number."""

    source: Literal["freesurfer"]
    registration_sphere: Path | None = Field(
        default=None,
        description="On fs_LR_32k: folder with fs_LR-deformed_to-fsaverage.{L,R}.sphere.32k_fs_LR.surf.gii")
    _provides = FREESURFER_METRICS

    _check_sphere = field_validator("registration_sphere")(_existing_dir)

    @model_validator(mode="after")
    def _sphere_for_fslr(self) -> FreeSurferCohortParams:
        if self.template == "fs_LR_32k" and self.registration_sphere is None:
            raise ValueError("reading FreeSurfer subjects onto fs_LR_32k needs `registration_sphere` (a folder with "
                             "fs_LR-deformed_to-fsaverage.{L,R}.sphere.32k_fs_LR.surf.gii); or use template fsaverage5")
        return self


class BidsCohortParams(_RealCohortSection):
    """fMRIPrep/sMRIPrep derivatives (BIDS, found with pybids): fsLR 91k CIFTI
    (``sub-<label>_space-fsLR_den-91k_{thickness,sulc,curv}.dscalar.nii``) onto fs_LR_32k, else fsnative GIFTI
    (``sub-<label>_hemi-{L,R}_{thickness,sulc,curv}.shape.gii``) through the registration sphere sMRIPrep writes
    (``sub-<label>_hemi-{L,R}_space-fsaverage_desc-reg_sphere.surf.gii``); labels from ``participants.tsv``
    (``phenotypes``)."""

    source: Literal["bids"]
    label_column: str | None = Field(
        default=None, description="participants.tsv column with the label; null: 'sex' for task sex (required for "
                                  "autism, e.g. 'diagnosis' or 'group').")
    positive: list[str] = Field(
        default_factory=list, description="Values of label_column meaning label 1 (case-insensitive); empty: F, "
                                          "female for task sex.")
    negative: list[str] = Field(
        default_factory=list, description="Values meaning label 0; empty: M, male for task sex. Other values are QC "
                                          "rows.")
    site_column: str | None = Field(default="site", description="participants.tsv column naming the site; absent or "
                                                                "null: every subject in one site.")
    registration_sphere: Path | None = Field(
        default=None, description="For fsnative GIFTI onto fs_LR_32k: folder with "
                                  "fs_LR-deformed_to-fsaverage.{L,R}.sphere.32k_fs_LR.surf.gii (not needed for CIFTI).")
    _provides = FREESURFER_METRICS

    _check_sphere = field_validator("registration_sphere")(_existing_dir)

    @model_validator(mode="before")
    @classmethod
    def _sex_labels(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("task") == "sex":
            data = {**data, "label_column": data.get("label_column") or "sex",
                    "positive": data.get("positive") or ["F", "female"], "negative": data.get("negative") or ["M", "male"]}
        return data

    @model_validator(mode="after")
    def _labels(self) -> BidsCohortParams:
        if not self.label_column or not self.positive or not self.negative:
            raise ValueError("a BIDS autism cohort needs label_column, positive and negative (e.g. diagnosis, [ASD], "
                             "[TD]) to read its labels from participants.tsv")
        return self


#: Sources that read a user's real data folders (their files are a cohort's inputs).
REAL_SOURCES = ("hcp", "freesurfer", "bids")

#: One cohort of a parameter set; its ``source`` decides which keys it takes.
CohortParams = Annotated[
    SimulatedCohortParams | SemiRealCohortParams | HcpCohortParams | FreeSurferCohortParams | BidsCohortParams,
    Field(discriminator="source"),
]
#: The schema of each source.
COHORT_SCHEMAS: dict[str, type[_CohortSection]] = {
    "simulated": SimulatedCohortParams, "semi-real": SemiRealCohortParams, "hcp": HcpCohortParams,
    "freesurfer": FreeSurferCohortParams, "bids": BidsCohortParams,
}


#: The transport's power-diagram backends, as ``studylib.geometry.transport.POWER_DIAGRAMS`` names them (a test keeps
#: the two equal; the schema does not import the geometry).
PowerDiagram = Literal["qhull", "geogram"]


class FlattenParams(_Section):
    """The flat maps: one per template and hemisphere shared by its subjects (``template``), or each subject's own
    surface mapped with its corners on the template map's corner vertices (``per-subject``, the paper's way); any
    surface is flattened with ``studylib flatten``."""

    tolerance: float = Field(default=1e-9, gt=0, lt=1e-2, description="Newton residual at which solves stop.")
    max_iterations: PositiveInt = 100
    power_diagram: PowerDiagram = Field(
        default="qhull", description="The transport's power diagrams: qhull (deterministic) or geogram (0.87-1.12x "
                                     "qhull's time per map, not bit-reproducible between runs).")
    mode: Literal["template", "per-subject"] = Field(
        default="template", description="template: one map per template and hemisphere; per-subject: each subject's "
                                        "own surface flattened (cached per subject, in parallel by the executor's "
                                        "workers) and its images rasterized through its own map.")
    cohorts: list[str] | None = Field(
        default=None, description="per-subject mode: the cohorts whose subjects get their own maps (the others keep "
                                  "the template's); null: every cohort. Only sources with individual surfaces "
                                  "(simulated, hcp, freesurfer, bids) can be named.")

    def solver_options(self) -> dict:
        """The keyword options of :func:`studylib.geometry.flatten.flatten` these params set (part of a map's cache
        key)."""
        return {"tolerance": self.tolerance, "max_iterations": self.max_iterations,
                "power_diagram": self.power_diagram}


class RasterParams(_Section):
    image_size: PositiveInt = Field(description=f"Side of the square images; a multiple of {NETWORK_STRIDE}.")
    method: Literal["barycentric", "paper-average"] = "barycentric"
    dtype: Literal["float32", "float16"] = "float32"

    @field_validator("image_size")
    @classmethod
    def _multiple_of_stride(cls, value: int) -> int:
        if value % NETWORK_STRIDE:
            raise ValueError(
                f"must be a multiple of {NETWORK_STRIDE} (the backbones downsample by {NETWORK_STRIDE}); "
                f"got {value}, nearest valid: {max(NETWORK_STRIDE, round(value / NETWORK_STRIDE) * NETWORK_STRIDE)}"
            )
        return value


class TrainParams(_Section):
    backbones: list[Backbone] = Field(min_length=1)
    epochs: PositiveInt
    mixup_epochs: int = Field(ge=0, description="Leading epochs trained with mix-up (paper: 75 of 125).")
    batch_size: PositiveInt
    lr: float = Field(gt=0, description="Initial learning rate (paper: 0.01).")
    lr_step_epochs: PositiveInt = Field(description="Divide the lr by 10 every this many mix-up epochs (paper: 25).")
    finetune_lr: float = Field(gt=0, description="Fixed lr after mix-up (paper: 1e-4).")
    warmup_epochs: int = Field(
        default=0, ge=0, description="Leading epochs over which the lr rises linearly, step by step, from lr/steps "
                                     "to lr (paper: 0, no warm-up).")
    momentum: float = Field(ge=0, lt=1)
    folds: int = Field(ge=2, description="Cross-validation folds (paper: 10).")
    num_workers: int | None = Field(
        default=None, ge=0,
        description="Threads that read the next batches ahead of the model; null: 0 on CPU, up to 4 on a GPU.")
    checkpoint_every: PositiveInt = Field(
        default=1, description="Epochs between checkpoints of a model in training (an interrupted fit resumes from "
                               "the last one; the last epoch is always saved). Results do not depend on it: raise it "
                               "where saving would take a noticeable share of an epoch (fast GPUs, small cohorts).")
    normalise: Literal["images", "pixels"] = Field(
        default="images",
        description="images: one mean and SD over every pixel of the training images (the paper: 'the mean value and "
                    "standard deviation of the input images'); pixels: each pixel's own mean and SD over the training "
                    "subjects (the linear reference's standardisation), which removes the pattern every subject shares "
                    "and leaves the differences between subjects.")
    threads: PositiveInt = Field(
        default=2, description="Intra-op CPU threads of each model. CPU results depend on it, so it is a fixed "
                               "number (part of each model's key), not the machine's core count: serial, local "
                               "and Ray executors give identical models for the same value.")

    @model_validator(mode="after")
    def _mixup_within_epochs(self) -> TrainParams:
        if self.mixup_epochs > self.epochs:
            raise ValueError(f"mixup_epochs ({self.mixup_epochs}) cannot exceed epochs ({self.epochs})")
        if self.warmup_epochs > self.epochs:
            raise ValueError(f"warmup_epochs ({self.warmup_epochs}) cannot exceed epochs ({self.epochs})")
        return self


#: The arms of the transfer-learning experiments (the paper's initialisations): from scratch, direct ImageNet
#: transfer, and the two staged arms that start from a sex model of the HCP-like cohort (scratch -> HCP sex ->
#: ABIDE, and the paper's 2-stage ImageNet -> HCP sex -> ABIDE).
SCRATCH, IMAGENET, HCP_ONLY, TWO_STAGE = "scratch", "imagenet", "hcp-only", "2-stage"
SEX_ARMS = (SCRATCH, IMAGENET)
AUTISM_ARMS = (SCRATCH, IMAGENET, HCP_ONLY, TWO_STAGE)
STAGED_ARMS = (HCP_ONLY, TWO_STAGE)
TASK_ARMS = {"sex": SEX_ARMS, "autism": AUTISM_ARMS}
SexArm = Literal[SEX_ARMS]
AutismArm = Literal[AUTISM_ARMS]


class TransferParams(_Section):
    """Which cohorts play HCP and ABIDE, and which arms of the transfer-learning experiments run."""

    sex_cohort: str | None = Field(
        default=None, description="Cohort (task sex) that plays HCP: sex arms and the stage-1 models; null: none.")
    autism_cohorts: list[str] = Field(default=[], description="Cohorts (task autism) that play ABIDE.")
    sex_arms: list[SexArm] = Field(default=list(SEX_ARMS), description="Initialisations for sex.")
    autism_arms: list[AutismArm] = Field(
        default=list(AUTISM_ARMS),
        description="scratch; imagenet (direct transfer); hcp-only (scratch -> HCP sex -> ABIDE); "
                    "2-stage (ImageNet -> HCP sex -> ABIDE).")
    cohort_arms: dict[str, list[AutismArm]] = Field(
        default={}, description="k-fold autism arms of a named autism cohort, replacing autism_arms for it (e.g. "
                                "fewer arms on a cohort whose linear reference is at chance).")
    site_out_arms: list[AutismArm] = Field(
        default=[], description="Autism arms also evaluated leave-one-site-out (one model per site and image).")
    site_out_cohorts: list[str] | None = Field(
        default=None, description="Autism cohorts evaluated leave-one-site-out; null: all of autism_cohorts.")
    stage1_metrics: dict[Metric, Metric] = Field(
        default={}, description="Stage-1 metric for an autism metric, e.g. area: thickness (default: the same metric).")

    def arms_for(self, cohort: str) -> list[AutismArm]:
        """The k-fold autism arms of ``cohort``: its ``cohort_arms`` entry, else ``autism_arms``."""
        return self.cohort_arms.get(cohort, self.autism_arms)


class ExecutorParams(_Section):
    """How the trainable units (one model, one occlusion map) run: one after another in this process, in worker
    processes on this machine, or as Ray tasks on a cluster. Results do not depend on it."""

    kind: Literal["serial", "local", "ray"] = Field(
        default="serial", description="serial (in this process), local (worker processes on this machine) or ray.")
    workers: PositiveInt | None = Field(
        default=None, description="Units run at once (local, ray); null: one per visible GPU, else the CPUs "
                                  "divided by train.threads.")
    retries: int = Field(default=2, ge=0, description="Attempts after a unit fails or its worker dies, before the "
                                                      "run stops naming it.")
    address: str | None = Field(
        default=None, description="ray: the address of a running cluster (e.g. 'auto' or 'ray://head:10001'); "
                                  "null: start a local Ray instance with `workers` x train.threads CPUs.")

    @model_validator(mode="after")
    def _address_for_ray(self) -> ExecutorParams:
        if self.address is not None and self.kind != "ray":
            raise ValueError(f"address is for kind: ray, not {self.kind}")
        return self


class StackingParams(_Section):
    """How ``06_stack`` combines the per-image models and measures the chain (``studylib.evaluate.stacking``)."""

    n_bootstrap: int = Field(ge=0, description="Bootstrap resamples for confidence intervals.")
    methods: list[Literal["xgboost", "logistic", "mean", "vote"]] = Field(
        default=["xgboost", "logistic", "mean", "vote"], min_length=1,
        description="Meta-learners: XGBoost with a grid search (the paper's), logistic regression on the logits, the "
                    "mean probability (the paper's 'no stacking') and the majority vote.")
    grid: dict[str, list[int | float]] = Field(
        default={"max_depth": [1, 2, 3], "n_estimators": [50, 150], "learning_rate": [0.05, 0.2]},
        description="XGBoost's hyper-parameter grid (xgboost.XGBClassifier arguments), searched by inner CV on the "
                    "training subjects of each outer fold.")
    inner_folds: int = Field(default=3, ge=2, description="Stratified inner folds of the grid search.")
    nested: bool = Field(
        default=False, description="Nested stacking for the networks: 04/05 also train every k-fold arm's base models "
                                   "inside each outer training set (k (k-1) more fits per image set; 2 x 2 with two "
                                   "folds), and 06 fits each outer fold's meta-learner on their predictions, so no base "
                                   "model behind its training side saw the outer fold. Off: the usual scheme (its "
                                   "optimism is measured with linear base models in 06).")
    checks_cohort: str | None = Field(
        default=None, description="Cohort on which the chain is checked with linear base models (nested vs usual "
                                  "stacking, label permutations); null: the sex cohort; '' skips the checks.")
    permutations: int = Field(default=5, ge=0, description="Label-permutation runs of the whole chain (seeds).")
    age_range: tuple[float, float] = Field(
        default=(22.0, 37.0), description="Ages (years) of the sex cohort (HCP S1200: 22-37): the 2-stage gain over "
                                          "direct transfer is compared inside vs outside this range (the paper's age "
                                          "analysis).")
    equivalence_margin: float = Field(
        default=0.05, gt=0, lt=1, description="Margin (accuracy as a fraction) of the age analysis's equivalence test.")

    @field_validator("grid")
    @classmethod
    def _grid_not_empty(cls, grid: dict[str, list[int | float]]) -> dict[str, list[int | float]]:
        empty = [key for key, values in grid.items() if not values]
        if not grid or empty:
            raise ValueError(f"the XGBoost grid needs at least one value per key (empty: {empty or 'the grid'})")
        return grid


class AblationParams(_Section):
    """What ``07_ablation`` trains and stacks: the paper's Table 3 switches stacking and mix-up on and off in the
    2-stage autism setting."""

    arm: AutismArm = Field(
        default=TWO_STAGE, description="The autism arm whose models are retrained without mix-up (paper: 2-stage).")
    cohorts: list[str] | None = Field(
        default=None, description="Autism cohorts of the ablation; null: every one whose k-fold arms include `arm`.")


class OcclusionParams(_Section):
    """What ``08_occlusion`` explains and how (see :mod:`studylib.explain.occlusion`)."""

    patch: PositiveInt = Field(description="Side of the occluding square in pixels (paper: 30 at 224 px).")
    stride: PositiveInt = Field(description="Step between occlusions in pixels (paper: 4 at 224 px).")
    occluder: Literal["minimum", "mean"] = Field(
        default="minimum", description="Value inside the square: the training images' minimum (the paper's black "
                                       "square) or their mean.")
    arms: dict[str, list[str]] = Field(
        default_factory=lambda: {"sex": [IMAGENET], "autism": [TWO_STAGE]},
        description="Arms occluded per task (k-fold models, every backbone, cohort and image set; paper: all).")
    max_subjects: PositiveInt | None = Field(
        default=None, description="Test subjects occluded per image set: a seeded stratified subset (null: all).")
    batch_size: PositiveInt = Field(default=64, description="Occluded copies per forward pass (64: twice the rate "
                                                          "of 256 on a 2-core CPU, bench_occlusion; larger on a GPU).")
    n_bootstrap: PositiveInt = Field(default=200, description="Stratified resamples of subjects for the recovery "
                                                              "intervals.")
    planted_fraction: float = Field(
        default=0.5, gt=0, lt=1, description="Vertices whose |planted effect| reaches this fraction of its maximum "
                                             "count as planted (recovery AUC).")

    @field_validator("arms")
    @classmethod
    def _known_arms(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for task, arms in value.items():
            if task not in TASK_ARMS:
                raise ValueError(f"occlusion.arms: unknown task {task!r}; choose sex or autism")
            unknown = sorted(set(arms) - set(TASK_ARMS[task]))
            if unknown:
                raise ValueError(f"occlusion.arms.{task}: unknown arm(s) {unknown}; choose from "
                                 f"{sorted(TASK_ARMS[task])}")
        return value


class RealismParams(_Section):
    """How 01_preprocess measures the simulated autism cohorts against real ABIDE I (the realism table) and runs the
    regional linear reference on the ``realistic`` scenario beside the real subjects."""

    n_subjects: PositiveInt = Field(
        default=1035, description="Subjects of the fresh draw from each simulated autism cohort's model (ABIDE I: "
                                  "1035), summarised per D-K region as the real tables are.")
    repeats: PositiveInt = Field(default=3, description="Repeats of the 10-fold linear-reference check.")
    linear_check: bool = Field(default=True, description="Run the regional linear reference on the realistic "
                                                          "scenario and on the real subjects.")


class BaselinesParams(_Section):
    """What ``09_baselines`` runs on the autism cohorts' k-fold folds (the paper's Table 2 baselines)."""

    arms: list[Literal["PCA+SVM", "slice", "3d-volume", "3d-mesh"]] = Field(
        default_factory=lambda: ["PCA+SVM", "slice", "3d-volume", "3d-mesh"], min_length=1,
        description="Baselines to run: PCA + SVM on the vectorised cortex; 2D networks on ribbon slices; a 3D network "
                    "on the ribbon volume; 3D networks on each metric placed in a 3D grid (one per metric).")
    pca_variance: float = Field(gt=0, le=1, description="Variance kept by PCA before the SVM.")
    svm_c: list[PositiveFloat] = Field(default_factory=lambda: [1e-3, 1e-2, 1e-1, 1.0],
                                       description="Candidate C of the linear SVM (inner cross-validation, AUC).")
    inner_folds: PositiveInt = Field(default=3, description="Inner stratified folds that choose C.")
    voxel_size: PositiveFloat = Field(default=4.0, description="Voxel side (mm) of the ribbon volumes and metric grids.")
    slices_per_direction: PositiveInt = Field(
        default=1, description="Axial and coronal slices per subject; sagittal slices come in left/right pairs "
                               "(studylib.baselines.volumes.slice_positions). One 2D model per slice, stacked.")
    slice_backbone: Backbone | None = Field(
        default=None, description="2D backbone of the slice baseline, ImageNet-initialised; null: train.backbones[0].")
    volume_backbone: Literal["densenet3d_121", "densenet3d_small"] = Field(
        default="densenet3d_small", description="3D backbone of the volume and mesh baselines (MONAI DenseNet, "
                                                "from scratch): densenet3d_121 has the 2D DenseNet-121's depth.")


class DataParams(_Section):
    """The sections that say which data a study reads: what ``studylib cohort build`` needs, and the first part of
    every :class:`StudyParams`."""

    description: str = ""
    seed: int = Field(ge=0)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    data_dir: Path | None = Field(
        default=None,
        description=f"Downloaded or user-provided data; null = ${DATA_ENV_VAR}, else ~/studylib_data.",
    )
    cohorts: dict[str, CohortParams] = Field(
        min_length=1, description="Cohorts by name; each says its source and task (e.g. hcp, abide, abide1).")

    @field_validator("data_dir")
    @classmethod
    def _data_dir_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_dir():
            raise ValueError(f"directory '{value}' does not exist")
        return value

    @field_validator("cohorts")
    @classmethod
    def _cohort_names(cls, value: dict[str, CohortParams]) -> dict[str, CohortParams]:
        bad = [name for name in value if not re.fullmatch(r"[a-z][a-z0-9_-]*", name)]
        if bad:
            raise ValueError(f"cohort names must be lower-case identifiers (folder names); not {bad}")
        return value

    def section(self, key: str) -> Any:
        """JSON-ready value of one top-level key (used for fingerprints)."""
        return self.model_dump(mode="json")[key]


class BudgetParams(_Section):
    """Wall-clock minutes the run may take on the machine the parameter set is written for. The book shows each
    notebook's time beside its budget and ``benchmarks/bench_budget.py`` checks the last run against it; nothing
    stops a run that overruns."""

    machine: str = Field(default="", description="The machine the budget is for, in words (e.g. '2 CPU cores').")
    minutes: dict[str, PositiveFloat] = Field(
        default={}, description="Minutes per notebook (by name, e.g. 04_train_sex) and for `book` (building the "
                                "book); a notebook may hold a share for work later issues will add.")
    total_minutes: PositiveFloat | None = Field(
        default=None, description="Minutes for every notebook and the book together; null: the sum of `minutes`.")
    reference_training_rate: PositiveFloat | None = Field(
        default=None, description="Training images per second of 04_train_sex's wall time on the budget's machine "
                                  "(the subjects x epochs of its models over its minutes). A run's own rate, beside "
                                  "it, says how much faster or slower the run's machine trains; null: not stated.")


class StudyParams(DataParams):
    """The whole parameter set of one study run."""

    flatten: FlattenParams = FlattenParams()
    raster: RasterParams
    train: TrainParams
    transfer: TransferParams = TransferParams()
    executor: ExecutorParams = ExecutorParams()
    realism: RealismParams = RealismParams()
    stacking: StackingParams
    ablation: AblationParams = AblationParams()
    occlusion: OcclusionParams
    baselines: BaselinesParams
    budget: BudgetParams = BudgetParams()

    @model_validator(mode="after")
    def _occlusion_fits_image(self) -> StudyParams:
        if self.occlusion.patch > self.raster.image_size:
            raise ValueError(
                f"occlusion.patch ({self.occlusion.patch}) is larger than raster.image_size "
                f"({self.raster.image_size})"
            )
        return self

    @model_validator(mode="after")
    def _flatten_cohorts(self) -> StudyParams:
        for name in self.flatten.cohorts or []:
            if name not in self.cohorts:
                raise ValueError(f"flatten.cohorts: no cohort {name!r}; cohorts are {', '.join(self.cohorts)}")
        return self

    @model_validator(mode="after")
    def _transfer_cohorts(self) -> StudyParams:
        transfer = self.transfer
        roles = [(transfer.sex_cohort, "sex", "transfer.sex_cohort")] if transfer.sex_cohort is not None else []
        roles += [(name, "autism", "transfer.autism_cohorts") for name in transfer.autism_cohorts]
        for name in transfer.site_out_cohorts or []:
            if name not in transfer.autism_cohorts:
                raise ValueError(f"transfer.site_out_cohorts: {name!r} is not one of transfer.autism_cohorts "
                                 f"({', '.join(transfer.autism_cohorts)})")
        for name in transfer.cohort_arms:
            if name not in transfer.autism_cohorts:
                raise ValueError(f"transfer.cohort_arms: {name!r} is not one of transfer.autism_cohorts "
                                 f"({', '.join(transfer.autism_cohorts)}); drop the entry, or set "
                                 "transfer.cohort_arms: null to drop every inherited one")
        for name in self.ablation.cohorts or []:
            if name not in transfer.autism_cohorts:
                raise ValueError(f"ablation.cohorts: {name!r} is not one of transfer.autism_cohorts "
                                 f"({', '.join(transfer.autism_cohorts)})")
            if self.ablation.arm not in transfer.arms_for(name):
                raise ValueError(f"ablation.cohorts: cohort {name!r} has no {self.ablation.arm!r} k-fold arm "
                                 f"(its arms: {', '.join(transfer.arms_for(name))})")
        for name, task, key in roles:
            if name not in self.cohorts:
                raise ValueError(f"{key}: no cohort {name!r}; cohorts are {', '.join(self.cohorts)}")
            if self.cohorts[name].task != task:
                raise ValueError(f"{key}: cohort {name!r} classifies {self.cohorts[name].task}, not {task}")
        arms = set(transfer.site_out_arms).union(*(transfer.arms_for(name) for name in transfer.autism_cohorts))
        staged = set(STAGED_ARMS) & (arms if transfer.autism_cohorts else set(transfer.autism_arms))
        if staged and transfer.autism_cohorts and transfer.sex_cohort is None:
            raise ValueError(f"transfer: the {' and '.join(sorted(staged))} arms start from models of a sex cohort; "
                             "set transfer.sex_cohort or drop those arms")
        if staged and transfer.sex_cohort is not None:
            source = self.cohorts[transfer.sex_cohort].metrics
            for name in transfer.autism_cohorts:
                for metric in self.cohorts[name].metrics:
                    chosen = transfer.stage1_metrics.get(metric, metric)
                    if chosen != metric and chosen not in source:
                        raise ValueError(f"transfer.stage1_metrics.{metric}: {chosen!r} is not a metric of the sex "
                                         f"cohort {transfer.sex_cohort!r} ({', '.join(source)})")
                    if chosen not in source:
                        raise ValueError(
                            f"transfer.stage1_metrics: cohort {name!r} has metric {metric!r}, which the sex cohort "
                            f"{transfer.sex_cohort!r} lacks; map it to one of {', '.join(source)} (e.g. "
                            f"{metric}: {source[0]}) or drop the hcp-only and 2-stage arms")
        return self

def resolve_data_dir(params: DataParams | None = None, *, create: bool = False) -> Path:
    """The data directory: ``params.data_dir``, else ``$STUDYLIB_DATA``, else ``~/studylib_data``.

    Parameters
    ----------
    params : StudyParams, optional
        A loaded parameter set; its ``data_dir`` wins when set.
    create : bool
        Create the default directory if it does not exist (fetchers download there).

    Raises
    ------
    ParamsError
        When ``$STUDYLIB_DATA`` names a directory that does not exist.
    """
    if params is not None and params.data_dir is not None:
        return params.data_dir
    from_env = os.environ.get(DATA_ENV_VAR, "").strip()
    if from_env:
        path = Path(from_env).expanduser().resolve()
        if not path.is_dir():
            raise ParamsError(f"${DATA_ENV_VAR}={from_env!r}: directory does not exist")
        return path
    path = Path.home() / "studylib_data"
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path
