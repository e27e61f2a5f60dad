"""The book's Results page: the paper's tables and figures as this run regenerated them, in short narrative sections.

Each section is a sentence template (:data:`SECTIONS`) whose numbers are filled in from the run's tables, the table
itself (the paper's values beside ours, the cohort named) and the figures the notebooks saved, with a link to the
notebook that made them. A number in a template's prose is an error (:func:`typed_numbers`): every number on the page
comes from the run's outputs or from :mod:`studylib.paper` (the columns the notebooks put beside ours), never typed.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .layout import ResultsLayout

__all__ = ["SECTIONS", "Section", "TypedNumber", "results_markdown", "typed_numbers"]


class TypedNumber(ValueError):
    """A results-page template holds a number typed by hand."""


@dataclass(frozen=True)
class Section:
    """One section: title, the notebook that made it, its table (stage, file, columns), a sentence template filled
    from the table's rows by ``facts``, and figure files (stage, glob)."""

    title: str
    stage: str
    table: str | None
    columns: tuple[str, ...]
    text: str
    facts: Callable[[pd.DataFrame], dict] | None = None
    figures: tuple[str, ...] = ()


def _best(table: pd.DataFrame, column: str = "accuracy (%)") -> pd.Series:
    networks = table[~table["arm"].astype(str).str.contains("reference")] if "arm" in table else table
    return (networks if len(networks) else table).sort_values(column, ascending=False).iloc[0]


def _headline(table: pd.DataFrame) -> dict:
    best = _best(table)
    paper = best.get("paper DenseNet-121 accuracy (%)")
    linear = table[table["arm"].astype(str) == "linear reference"]["accuracy (%)"]
    return {"cohort": best["cohort"], "arm": best["arm"], "stacking": best.get("stacking", ""),
            "accuracy": f"{best['accuracy (%)']:.1f}", "ci": best.get("accuracy (%) 95% CI", ""),
            "paper": "not reported" if pd.isna(paper) else f"{paper:.2f}%",
            "linear": f"{linear.iloc[0]:.1f}%" if len(linear) else "not run"}


def _baselines(table: pd.DataFrame) -> dict:
    best = _best(table.rename(columns={"model": "arm"}))
    return {"cohort": best["cohort"], "arm": best["arm"], "accuracy": f"{best['accuracy (%)']:.1f}",
            "ci": best.get("accuracy (%) 95% CI", ""), "paper": f"{best['paper accuracy (%)']:.2f}%"}


def _ablation(table: pd.DataFrame) -> dict:
    p = table["mcnemar p (Holm)"] if "mcnemar p (Holm)" in table else table["mcnemar p"]
    return {"cells": len(table), "significant": int((p < 0.05).sum())}


def _occlusion(table: pd.DataFrame) -> dict:
    row = table.sort_values("overlap", ascending=False).iloc[0]
    return {"cohort": row["cohort"], "task": row["task"], "overlap": int(row["overlap"]), "top": int(row["top"]),
            "chance": f"{row['expected by chance']:.1f}", "p": f"{row['p (hypergeometric)']:.3f}"}


def _age(table: pd.DataFrame) -> dict:
    rows = table.set_index("group")
    inside = rows.iloc[0]
    return {"cohort": inside["cohort"], "comparison": inside["comparison"], "group": rows.index[0],
            "gain": f"{inside['gain']:+.3f}", "low": f"{inside['low']:+.3f}", "high": f"{inside['high']:+.3f}"}


def _head_size(table: pd.DataFrame) -> dict:
    return {"tests": len(table), "significant": int((table["p"] < 0.05).sum())}


#: The Results page, in the paper's order. Templates name their numbers ({...}); digits in the prose are refused.
SECTIONS = (
    Section("Table 1: sex classification", "06_stack", "table1_sex_vs_paper.csv",
            ("cohort", "arm", "stacking", "subjects", "accuracy (%)", "accuracy (%) 95% CI", "auc", "auc 95% CI",
             "paper DenseNet-121 accuracy (%)", "paper ResNet-50 accuracy (%)"),
            "On cohort {cohort}, the best stacked network arm ({arm}, {stacking}) classified sex with {accuracy}% "
            "accuracy (95% CI {ci}); the paper reports {paper} with DenseNet-121, and the linear reference on the same "
            "images and folds reached {linear}.", _headline),
    Section("Figure 3: accuracy of each image", "06_stack", None, (),
            "Per-image accuracies of the arms (each metric and hemisphere before stacking), as in the paper's "
            "Figure 3.", None, ("figure3_*.png",)),
    Section("Table 2: autism classification", "06_stack", "table2_autism_vs_paper.csv",
            ("cohort", "scheme", "arm", "stacking", "subjects", "accuracy (%)", "accuracy (%) 95% CI", "auc",
             "auc 95% CI", "paper DenseNet-121 accuracy (%)", "paper ResNet-50 accuracy (%)"),
            "On cohort {cohort}, the best stacked network arm ({arm}, {stacking}) classified autism with {accuracy}% "
            "accuracy (95% CI {ci}); the paper reports {paper} with DenseNet-121, and the linear reference reached "
            "{linear}.", _headline),
    Section("Table 2: the baselines", "09_baselines", "table2_baselines_vs_paper.csv",
            ("cohort", "model", "backbone", "subjects", "accuracy (%)", "accuracy (%) 95% CI", "auc", "auc 95% CI",
             "paper accuracy (%)", "fraction of linear reference"),
            "The best model on cohort {cohort} was {arm} with {accuracy}% accuracy (95% CI {ci}; paper: {paper}).",
            _baselines),
    Section("Table 3: stacking and mix-up", "07_ablation", "ablation_gains.csv",
            ("module", "setting", "cohort", "arm", "first", "second", "accuracy difference", "mcnemar p (Holm)",
             "auc difference", "delong p (Holm)"),
            "Of {cells} ablation comparisons, {significant} differ at p < 0.05 after Holm correction (McNemar).",
            _ablation),
    Section("Figure 4: occlusion maps", "08_occlusion", "paper_overlap.csv",
            ("task", "cohort", "arm", "our top regions", "paper's regions", "overlap", "expected by chance",
             "p (hypergeometric)"),
            "The largest overlap with the paper's regions was on cohort {cohort} ({task}): {overlap} of the top {top} "
            "regions (chance: {chance}; p = {p}).", _occlusion, ("figure4_cortex_*.png",)),
    Section("Age analysis", "06_stack", "age_analysis.csv",
            ("cohort", "comparison", "group", "subjects", "gain", "low", "high", "p", "margin", "tost p"),
            "On cohort {cohort}, the gain of {comparison} for subjects {group} was {gain} (95% CI {low} to {high}).",
            _age),
    Section("Head size (TIV)", "06_stack", "head_size_tests.csv",
            ("cohort", "arm", "comparison", "n", "auc difference", "p", "minimal detectable AUC difference"),
            "Of {tests} tests of the classifiers beyond head size, {significant} are significant at p < 0.05.",
            _head_size),
    Section("Filter variation", "05_train_asd_2stage", None, (),
            "How far fine-tuning moved each layer's filters from their initialisation, by depth.", None,
            ("filter_variation.png",)),
)

# Digits that are part of a name, not a number: "Table N", "Figure N", "DenseNet-121", "ResNet-50", "95% CI",
# "p < 0.05" (the significance level the page states as a rule).
_ALLOWED = re.compile(r"(Table|Figure) \d+|DenseNet-121|ResNet-50|95% CI|p < 0\.05")
_NUMBER = re.compile(r"\d+(\.\d+)?")


def typed_numbers(text: str) -> list[str]:
    """The numbers typed into a template's prose: digits outside ``{placeholders}`` and the allowed names."""
    prose = re.sub(r"\{[^{}]*\}", " ", text)
    prose = _ALLOWED.sub(" ", prose)
    return [match.group(0) for match in _NUMBER.finditer(prose)]


def _cell(value) -> str:
    if isinstance(value, float):
        return "" if pd.isna(value) else f"{value:.3g}" if abs(value) < 1 else f"{value:.1f}"
    return str(value).replace("|", "/")


def _markdown_table(table: pd.DataFrame, columns: tuple[str, ...], rows: int = 20) -> str:
    columns = [c for c in columns if c in table]
    shown = table[columns].head(rows)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in shown.itertuples(index=False)]
    more = f"\n\n({len(table) - rows} more rows in the CSV.)" if len(table) > rows else ""
    return "\n".join(lines) + more


def results_markdown(layout: ResultsLayout, src: Path, sections: tuple[Section, ...] = SECTIONS) -> str:
    """The Results page (MyST markdown) of a run; figures are copied under ``src/book/figures/``.

    Raises
    ------
    TypedNumber
        When a section's template has a number typed into its prose.
    """
    for section in sections:
        found = typed_numbers(section.title + " " + section.text)
        if found:
            raise TypedNumber(f"results page, section {section.title!r}: typed number(s) {found} in its text; "
                              "fill numbers from the run's tables ({placeholders}) or studylib.paper")
    parts = ["# Results\n",
             "The paper's tables and figures as this run regenerated them: our numbers with 95% intervals, the "
             "paper's beside them, the cohort of each row named. Each section links to the notebook that made it; "
             "the [claims page](claims.md) turns them into verdicts.\n"]
    for section in sections:
        parts.append(f"## {section.title}\n")
        link = f"[{section.stage}](../notebooks/{section.stage}.ipynb)"
        table = None
        if section.table:
            path = layout.tables(section.stage) / section.table
            if path.is_file():
                table = pd.read_csv(path)
        if section.table and (table is None or table.empty):
            parts.append(f"Not produced by this run ({link} wrote no `{section.table}`).\n")
            continue
        text = section.text
        if section.facts is not None:
            try:
                text = text.format(**section.facts(table))
            except (KeyError, IndexError, ValueError, TypeError) as error:
                text = f"(The summary sentence could not be filled from `{section.table}`: {error}.)"
        parts.append(f"{text} From {link}.\n")
        if table is not None:
            parts.append(_markdown_table(table, section.columns) + "\n")
        for pattern in section.figures:
            figures = sorted(layout.figures(section.stage).glob(pattern))
            if not figures:
                parts.append(f"No figure matching `{pattern}` in this run.\n")
            for figure in figures[:6]:
                name = re.sub(r"[^A-Za-z0-9_.-]", "_", figure.name)  # a markdown link target without spaces
                target = src / "book" / "figures" / section.stage / name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(figure, target)
                parts.append(f"```{{image}} figures/{section.stage}/{name}\n:alt: {figure.stem}\n:width: 70%\n```\n")
    return "\n".join(parts)
