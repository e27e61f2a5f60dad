"""The numbers the paper reports, so that every table can show them beside ours.

Source: Cerebral Cortex 32(14):2972-2984 (2022), Tables 1-2 and the Results text.
Accuracy, sensitivity and specificity are percentages; AUC is a fraction. A value
the paper does not report is ``None`` (the paper's Table 3 cells are not in the
text we have; only the improvements quoted in the Results are).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from .params import TrainParams

__all__ = [
    "ABLATION_GAINS",
    "ARM_CLAIMS",
    "ASD_RESULTS",
    "BASELINE_MODELS",
    "COHORTS",
    "OCCLUSION",
    "OCCLUSION_REGIONS",
    "SEX_RESULTS",
    "TRAINING",
    "results_table",
    "training_settings",
]

_COLUMNS = ("task", "model", "arm", "cv", "accuracy", "sensitivity", "specificity", "auc", "source")

#: Sex classification on HCP S1200 (1113 subjects), 10-fold CV, stacked over metrics and hemispheres.
SEX_RESULTS: tuple[tuple, ...] = (
    ("sex", "ResNet-50", "scratch", "10-fold", 89.67, None, None, None, "Results text"),
    ("sex", "DenseNet-121", "scratch", "10-fold", 92.99, None, None, None, "Results text"),
    ("sex", "ResNet-50", "imagenet", "10-fold", 94.34, 95.21, 93.29, 0.9832, "Table 1"),
    ("sex", "DenseNet-121", "imagenet", "10-fold", 95.06, 95.87, 94.08, 0.9854, "Table 1"),
)

#: Autism vs control on ABIDE I+II (1994 subjects).
ASD_RESULTS: tuple[tuple, ...] = (
    ("asd", "PCA+SVM", "baseline", "10-fold", 58.12, 48.99, 66.82, 0.6102, "Table 2"),
    ("asd", "DenseNet-121 (slice)", "baseline", "10-fold", 61.83, 52.83, 69.86, 0.6693, "Table 2"),
    ("asd", "DenseNet-121 (3D volume)", "baseline", "10-fold", 62.39, 54.53, 69.38, 0.6355, "Table 2"),
    ("asd", "DenseNet-121 (3D mesh)", "baseline", "10-fold", 61.13, 53.24, 68.15, 0.6438, "Table 2"),
    ("asd", "ResNet-50", "scratch", "10-fold", 63.04, None, None, None, "Results text"),
    ("asd", "DenseNet-121", "scratch", "10-fold", 63.64, None, None, None, "Results text"),
    ("asd", "ResNet-50", "imagenet", "10-fold", 65.89, 60.28, 70.90, 0.6996, "Table 2"),
    ("asd", "DenseNet-121", "imagenet", "10-fold", 65.59, 57.29, 72.99, 0.7018, "Table 2"),
    ("asd", "ResNet-50", "hcp-only", "10-fold", 65.44, None, None, None, "Results text"),
    ("asd", "DenseNet-121", "hcp-only", "10-fold", 65.25, None, None, None, "Results text"),
    ("asd", "ResNet-50", "2-stage", "10-fold", 67.70, 62.73, 72.13, 0.7199, "Table 2"),
    ("asd", "DenseNet-121", "2-stage", "10-fold", 67.85, 61.66, 73.36, 0.7237, "Table 2"),
    ("asd", "unspecified", "scratch", "leave-one-site-out", 61.34, None, None, None, "Results text"),
    ("asd", "unspecified", "imagenet", "leave-one-site-out", 63.45, None, None, None, "Results text"),
    ("asd", "unspecified", "2-stage", "leave-one-site-out", 65.41, None, None, None, "Results text"),
)

#: The paper's name (its Table 2 row) of each of the study's baselines (``studylib.baselines``' arm names).
BASELINE_MODELS: dict[str, str] = {"PCA+SVM": "PCA+SVM", "slice": "DenseNet-121 (slice)",
                                   "3d-volume": "DenseNet-121 (3D volume)", "3d-mesh": "DenseNet-121 (3D mesh)"}

#: The paper's orderings of the arms, as (better, worse) pairs per task: transfer beats scratch for sex; for autism
#: direct transfer beats scratch, and the 2-stage transfer beats both direct transfer and the scratch-trained HCP start.
ARM_CLAIMS: dict[str, tuple[tuple[str, str], ...]] = {
    "sex": (("imagenet", "scratch"),),
    "autism": (("imagenet", "scratch"), ("2-stage", "imagenet"), ("2-stage", "hcp-only")),
}

#: Accuracy gains (percentage points) of each module in the ablation (DenseNet-121, 2-stage, ABIDE).
ABLATION_GAINS: dict[str, float] = {"stacking": 1.50, "mix-up": 0.70}

#: The training recipe of the paper's "Training Details" section.
TRAINING: dict[str, object] = {
    "image_size": 224,
    "backbones": ("resnet50", "densenet121"),  # ResNet-50, DenseNet-121 (torchvision names)
    "epochs": 125,
    "mixup_epochs": 75,
    "batch_size": 64,
    "optimizer": "SGD, momentum 0.9, cross-entropy",
    "lr": "0.01, divided by 10 every 25 epochs for the first 75; then fixed 1e-4 for 50",
    "mixup_lambda": "U(0, 1)",
    "folds": 10,
}

#: The paper's cohorts (Materials and Methods, "Data and Preprocessing").
COHORTS: tuple[dict[str, object], ...] = (
    {"cohort": "HCP S1200 (paper)", "task": "sex", "subjects": 1113, "female": 505, "male": 606, "sites": 1,
     "excluded": None, "note": "505 + 606 = 1111 of the 1113 stated"},
    {"cohort": "ABIDE I (paper)", "task": "autism", "subjects": 1112, "autism": 539, "control": 573, "sites": 16,
     "excluded": None, "note": "before FreeSurfer exclusions"},
    {"cohort": "ABIDE II (paper)", "task": "autism", "subjects": 1114, "autism": 521, "control": 593, "sites": 19,
     "excluded": None, "note": "before FreeSurfer exclusions"},
    {"cohort": "ABIDE I+II analysed (paper)", "task": "autism", "subjects": 1994, "sites": 35, "excluded": 232,
     "note": "219 failed FreeSurfer + 13 failed visual inspection"},
)

#: Occlusion test settings (Methods).
OCCLUSION: dict[str, int] = {"patch": 30, "stride": 4, "image_size": 224}

#: The most discriminative regions the paper names from its occlusion maps (Results, Figure 4), as Desikan–Killiany
#: names; a hemisphere where the paper gives one.
OCCLUSION_REGIONS: dict[str, tuple[tuple[str, str | None], ...]] = {
    "sex": (("superiorfrontal", None), ("superiorparietal", None), ("supramarginal", None), ("paracentral", None),
            ("precuneus", None), ("temporalpole", None), ("lingual", "right")),
    "autism": (("superiorfrontal", None), ("precentral", None), ("postcentral", None), ("inferiortemporal", None),
               ("middletemporal", None), ("superiortemporal", "left"), ("fusiform", "right")),
}


def results_table(task: str | None = None) -> pd.DataFrame:
    """The paper's reported results as a table, optionally for one task (``"sex"`` or ``"asd"``)."""
    import pandas as pd

    table = pd.DataFrame(SEX_RESULTS + ASD_RESULTS, columns=list(_COLUMNS))
    if task is not None:
        if task not in set(table["task"]):
            raise ValueError(f"unknown task {task!r}; choose 'sex' or 'asd'")
        table = table[table["task"] == task].reset_index(drop=True)
    return table


def training_settings(train: TrainParams, image_size: int) -> pd.DataFrame:
    """The paper's training recipe beside a parameter set's (``params.train``, ``params.raster.image_size``)."""
    import pandas as pd

    rows = [
        ("image size", TRAINING["image_size"], image_size),
        ("backbones", ", ".join(TRAINING["backbones"]), ", ".join(train.backbones)),
        ("epochs", TRAINING["epochs"], train.epochs),
        ("mix-up epochs", TRAINING["mixup_epochs"], train.mixup_epochs),
        ("batch size", TRAINING["batch_size"], train.batch_size),
        ("initial lr", 0.01, train.lr),
        ("lr divided by 10 every (epochs)", 25, train.lr_step_epochs),
        ("lr after mix-up", 1e-4, train.finetune_lr),
        ("lr warm-up (epochs)", "none", train.warmup_epochs or "none"),
        ("momentum", 0.9, train.momentum),
        ("cross-validation folds", TRAINING["folds"], train.folds),
    ]
    return pd.DataFrame(rows, columns=["setting", "paper", "this run"]).astype({"paper": str, "this run": str})
