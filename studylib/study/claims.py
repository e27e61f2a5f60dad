"""The paper's claims checked against a run: one row per claim and cohort, with the paper's evidence, ours, and a
verdict by a rule written on the page.

Every number comes from the run's tables (06, 07, 08, 09) or from :mod:`studylib.paper`; nothing is typed by hand.
The rules (accuracy, as the paper reports it):

- **reproduced**: our difference is in the paper's direction and significant (exact McNemar, Holm-adjusted across
  the run's comparisons of that notebook, p < 0.05);
- **contradicted**: significant in the opposite direction;
- **not reproduced**: not significant although the study could have seen the paper's effect (our minimal detectable
  accuracy difference at this n is no larger than the paper's reported difference);
- **inconclusive**: not significant, and the paper's effect is below what this n can detect.

Occlusion regions: reproduced when our top regions overlap the paper's more than chance (hypergeometric p < 0.05,
Holm-adjusted across the run's overlap claims).
No age interaction: reproduced when the interaction is equivalent to zero within the stated margin (TOST p < 0.05),
contradicted when it is significant (p < 0.05), else inconclusive; both p's Holm-adjusted across the cohorts' age
claims.

Column ``p``: Holm-adjusted within its family: the McNemar p of accuracy claims (a notebook's comparisons), the
hypergeometric p of region overlaps, the interaction's p of the age analysis.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .. import paper
from ..evaluate.stats import holm
from ..params import TWO_STAGE
from ..train.cv import KFOLD

__all__ = ["CLAIMS_COLUMNS", "claims_markdown", "claims_table", "verdict"]

CLAIMS_COLUMNS = ["claim", "cohort", "paper", "ours", "subjects", "p", "MDE (points)", "verdict"]
_PAPER_MODELS = ("ResNet-50", "DenseNet-121")


def verdict(difference: float, p_holm: float, mde: float, paper_effect: float) -> str:
    """The verdict of an accuracy claim (see the module docstring); all arguments as fractions."""
    if p_holm < 0.05:
        return "reproduced" if difference > 0 else "contradicted"
    if mde <= abs(paper_effect):
        return "not reproduced"
    return "inconclusive"


def _paper_difference(task: str, first: str, second: str) -> float:
    """The paper's mean accuracy difference (fraction) between two arms over its backbones (10-fold)."""
    table = paper.results_table(task)
    table = table[(table["cv"] == "10-fold") & table["model"].isin(_PAPER_MODELS)].set_index(["model", "arm"])
    differences = [table.loc[(m, first), "accuracy"] - table.loc[(m, second), "accuracy"] for m in _PAPER_MODELS
                   if (m, first) in table.index and (m, second) in table.index]
    return sum(differences) / len(differences) / 100 if differences else float("nan")


def _accuracy_rows(table: pd.DataFrame, claim: str, paper_effect: float, paper_text: str) -> list[dict]:
    rows = []
    for row in table.to_dict("records"):
        difference = row["accuracy difference"]
        rows.append({"claim": claim, "cohort": f"{row['cohort']} ({row['backbone']})", "paper": paper_text,
                     "ours": f"{100 * row['accuracy first']:.1f}% vs {100 * row['accuracy second']:.1f}% "
                             f"({100 * difference:+.1f} points; AUC {row['auc difference']:+.3f})",
                     "subjects": int(row["subjects"]), "p": round(float(row["mcnemar p (Holm)"]), 4),
                     "MDE (points)": round(100 * float(row["accuracy MDE"]), 1),
                     "verdict": verdict(difference, row["mcnemar p (Holm)"], row["accuracy MDE"], paper_effect)})
    return rows


def _read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path) if path.is_file() else pd.DataFrame()


def claims_table(layout, primary: str = "xgboost") -> pd.DataFrame:
    """Every claim the run's tables can judge, per cohort (see the module docstring)."""
    rows: list[dict] = []
    arms = _read(layout.tables("06_stack") / "paired_comparisons.csv")
    if not arms.empty:
        arms = arms[(arms["claim"] == "arm ordering") & (arms["scheme"] == KFOLD)]
        for task, pairs in paper.ARM_CLAIMS.items():
            for first, second in pairs:
                effect = _paper_difference("sex" if task == "sex" else "asd", first, second)
                chosen = arms[(arms["task"] == task) & (arms["first"] == first) & (arms["second"] == second)]
                text = f"{first} − {second}: {100 * effect:+.2f} points (mean over ResNet-50 and DenseNet-121)"
                rows += _accuracy_rows(chosen, f"{task}: {first} > {second}", effect, text)
    gains = _read(layout.tables("07_ablation") / "ablation_gains.csv")
    for module, setting in (("stacking", "mix-up on"), ("mix-up", f"stacking: {primary}")):
        if gains.empty:
            break
        chosen = gains[(gains["module"] == module) & (gains["setting"] == setting)]
        effect = paper.ABLATION_GAINS[module] / 100
        rows += _accuracy_rows(chosen, f"autism: {module} gain ({setting})", effect,
                               f"+{100 * effect:.1f} points (Table 3, DenseNet-121, 2-stage)")
    baselines = _read(layout.tables("09_baselines") / "paired_comparisons.csv")
    if not baselines.empty:
        reported = paper.results_table("asd").set_index("model")
        best = paper.results_table("asd")
        best = float(best[(best["arm"] == TWO_STAGE) & (best["model"] == "DenseNet-121")]["accuracy"].iloc[0])
        for baseline, name in paper.BASELINE_MODELS.items():
            chosen = baselines[(baselines["first"] == TWO_STAGE) & (baselines["second"] == baseline)]
            effect = (best - float(reported.loc[name, "accuracy"])) / 100
            rows += _accuracy_rows(chosen, f"autism: {TWO_STAGE} flat map > {baseline}", effect,
                                   f"{best:.2f}% vs {float(reported.loc[name, 'accuracy']):.2f}% "
                                   f"({100 * effect:+.2f} points, Table 2)")
    overlap = _read(layout.tables("08_occlusion") / "paper_overlap.csv")
    if not overlap.empty:
        overlap["p (Holm)"] = holm(overlap["p (hypergeometric)"], missing="omit")
    for row in overlap.to_dict("records"):
        regions = row["paper's regions"]
        rows.append({"claim": f"{row['task']}: occlusion regions ({row['arm']})", "cohort": row["cohort"],
                     "paper": regions,
                     "ours": f"top {row['top']}: {row['our top regions']}; overlap {row['overlap']} "
                             f"(chance {row['expected by chance']:.1f})",
                     "subjects": None, "p": round(float(row["p (Holm)"]), 4), "MDE (points)": None,
                     "verdict": "reproduced" if row["p (Holm)"] < 0.05 else "inconclusive"})
    age = _read(layout.tables("06_stack") / "age_analysis.csv")
    if not age.empty:
        age = age[age["group"].str.startswith("interaction")].copy()
        age["p (Holm)"] = holm(age["p"], missing="omit")
        age["tost p (Holm)"] = holm(age["tost p"], missing="omit") if "tost p" in age else np.nan
        for row in age.to_dict("records"):
            equivalent = row["tost p (Holm)"] < 0.05  # False for NaN (no margin, no test)
            rows.append({"claim": "autism: no age interaction of the 2-stage gain", "cohort": row["cohort"],
                         "paper": "no significant difference inside vs outside the HCP ages",
                         "ours": f"interaction {100 * row['gain']:+.1f} points [{100 * row['low']:.1f}, "
                                 f"{100 * row['high']:.1f}], equivalence margin ±{100 * row['margin']:.0f}",
                         "subjects": int(row["subjects"]), "p": round(float(row["p (Holm)"]), 4),
                         "MDE (points)": None,
                         "verdict": "reproduced" if equivalent else "contradicted" if row["p (Holm)"] < 0.05
                         else "inconclusive"})
    return pd.DataFrame(rows, columns=CLAIMS_COLUMNS)


def claims_markdown(layout) -> str:
    """The book's claims page: the rules, then the table."""
    table = claims_table(layout)
    rules = __doc__.split("The rules", 1)[1].strip()
    if table.empty:
        body = "No claim could be judged: the run has no tables of 06-09 yet."
    else:
        counts = table["verdict"].value_counts()
        summary = ", ".join(f"{counts[v]} {v}" for v in ("reproduced", "not reproduced", "inconclusive", "contradicted")
                            if v in counts)
        header = "| " + " | ".join(CLAIMS_COLUMNS) + " |\n|" + "---|" * len(CLAIMS_COLUMNS)
        def cell(value) -> str:
            if pd.isna(value):
                return ""
            if isinstance(value, float) and value.is_integer() and abs(value) >= 1:
                return str(int(value))
            return str(value).replace("|", "/")

        lines = ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
        body = f"{len(table)} claims judged on this run's cohorts: {summary}.\n\n" + header + "\n" + "\n".join(lines)
    return f"""# Claims checked

Each of the paper's claims against this run, per cohort, from the run's own tables (notebooks 06-09) and the
paper's numbers (`studylib.paper`). The rules {rules}

{body}
"""
