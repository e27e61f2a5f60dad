"""The book's generated report pages: Data (cohorts, QC, realism, yardsticks), Method as run (flat maps and their
distortion beside the HCP S1200 flat map, images, the training recipe) and Results (the paper's tables and figures as
this run regenerated them), in short narrative sections.

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

from ..flatmaps import spread_summary
from .layout import ResultsLayout

__all__ = ["DATA_SECTIONS", "METHOD_SECTIONS", "PAGES", "SECTIONS", "Section", "TypedNumber", "page_markdown",
           "results_markdown", "typed_numbers"]


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
    summarize: Callable[[pd.DataFrame], pd.DataFrame] | None = None
    absent: str = ""  # why a run may lack the table (said before "Not produced by this run")


def _best(table: pd.DataFrame, column: str = "accuracy (%)") -> pd.Series:
    networks = table[~table["arm"].astype(str).str.contains("reference")] if "arm" in table else table
    return (networks if len(networks) else table).sort_values(column, ascending=False).iloc[0]


def _headline(table: pd.DataFrame) -> dict:
    best = _best(table)
    paper = best.get("paper DenseNet-121 accuracy (%)")
    same = (table["arm"].astype(str) == "linear reference") & (table["cohort"] == best["cohort"])
    if "scheme" in table:
        same &= table["scheme"] == best["scheme"]
    linear = table[same]["accuracy (%)"]
    ceiling = best.get("Bayes-optimal accuracy (%)")
    return {"cohort": best["cohort"], "arm": best["arm"], "stacking": best.get("stacking", ""),
            "accuracy": f"{best['accuracy (%)']:.1f}", "ci": best.get("accuracy (%) 95% CI", ""),
            "paper": "not reported" if pd.isna(paper) else f"{paper:.2f}%",
            "linear": f"{linear.iloc[0]:.1f}%" if len(linear) else "not run",
            "ceiling": "unknown (real subjects)" if ceiling is None or pd.isna(ceiling) else f"{ceiling:.1f}%"}


def _site_out(table: pd.DataFrame) -> dict:
    is_reference = table["arm"].astype(str) == "linear reference"
    first = (table[~is_reference] if (~is_reference).any() else table).iloc[0]
    rows = table[(table["cohort"] == first["cohort"]) & (table["arm"] == first["arm"])]
    reference = table[is_reference & (table["cohort"] == first["cohort"])]
    return {"cohort": first["cohort"], "arm": first["arm"], "sites": len(rows), "low": f"{rows['accuracy'].min():.2f}",
            "high": f"{rows['accuracy'].max():.2f}", "median": f"{rows['accuracy'].median():.2f}",
            "linear": f"{reference['accuracy'].median():.2f}" if len(reference) else "not run"}


def _baselines(table: pd.DataFrame) -> dict:
    best = _best(table.rename(columns={"model": "arm"}))
    return {"cohort": best["cohort"], "arm": best["arm"], "accuracy": f"{best['accuracy (%)']:.1f}",
            "ci": best.get("accuracy (%) 95% CI", ""), "paper": f"{best['paper accuracy (%)']:.2f}%"}


def _with_paper_gains(table: pd.DataFrame) -> pd.DataFrame:
    """Our gain (first minus second, in accuracy points) beside the paper's for the same module."""
    from .. import paper

    return table.assign(**{"accuracy gain (points)": 100 * table["accuracy difference"],
                           "paper: accuracy gain (points)": table["module"].map(paper.ABLATION_GAINS)})


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
            ("cohort", "arm", "subjects", "accuracy (%)", "accuracy (%) 95% CI", "auc", "auc 95% CI",
             "Bayes-optimal accuracy (%)", "paper DenseNet-121 accuracy (%)", "paper ResNet-50 accuracy (%)"),
            "On cohort {cohort}, the best stacked network arm ({arm}, {stacking}) classified sex with {accuracy}% "
            "accuracy (95% CI {ci}); the paper reports {paper} with DenseNet-121, the linear reference on the same "
            "images and folds reached {linear}, and the cohort's Bayes-optimal ceiling is {ceiling}.", _headline,
            ("roc_sex_*.png",)),
    Section("Figure 3: accuracy of each image", "06_stack", None, (),
            "Per-image accuracies of the arms (each metric and hemisphere before stacking), as in the paper's "
            "Figure 3.", None, ("figure3_*.png",)),
    Section("Table 2: autism classification", "06_stack", "table2_autism_vs_paper.csv",
            ("cohort", "scheme", "arm", "subjects", "accuracy (%)", "accuracy (%) 95% CI", "auc", "auc 95% CI",
             "Bayes-optimal accuracy (%)", "paper DenseNet-121 accuracy (%)", "paper ResNet-50 accuracy (%)"),
            "On cohort {cohort}, the best stacked network arm ({arm}, {stacking}) classified autism with {accuracy}% "
            "accuracy (95% CI {ci}); the paper reports {paper} with DenseNet-121, the linear reference reached "
            "{linear}, and the cohort's Bayes-optimal ceiling is {ceiling}.", _headline, ("roc_autism_*.png",)),
    Section("Leave-one-site-out", "06_stack", "site_out_per_site.csv",
            ("cohort", "arm", "backbone", "site", "subjects", "label 1", "accuracy", "accuracy 95% low",
             "accuracy 95% high"),
            "Each left-out site of cohort {cohort} ({arm}): accuracy from {low} to {high} over {sites} sites (median "
            "{median}; the linear reference in the same site folds: median {linear}); small sites have wide "
            "intervals. The pooled site-out rows, beside the paper's, are in Table 2 above.", _site_out,
            absent="This run has no leave-one-site-out scheme (transfer.site_out_arms is empty; paper: on)."),
    Section("Table 2: the baselines", "09_baselines", "table2_baselines_vs_paper.csv",
            ("cohort", "model", "backbone", "subjects", "accuracy (%)", "accuracy (%) 95% CI", "auc", "auc 95% CI",
             "paper accuracy (%)", "fraction of linear reference"),
            "The best model on cohort {cohort} was {arm} with {accuracy}% accuracy (95% CI {ci}; paper: {paper}).",
            _baselines),
    Section("Table 3: stacking and mix-up", "07_ablation", "ablation_gains.csv",
            ("module", "setting", "cohort", "arm", "first", "second", "accuracy gain (points)",
             "paper: accuracy gain (points)", "mcnemar p (Holm)", "auc difference", "delong p (Holm)"),
            "Of {cells} ablation comparisons, {significant} differ at p < 0.05 after Holm correction (McNemar); the "
            "paper's gains are beside ours.", _ablation, summarize=_with_paper_gains),
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

def _cohorts(table: pd.DataFrame) -> dict:
    return {"n": len(table), "names": ", ".join(f"{row.cohort} ({row.source}, {row.task})"
                                               for row in table.itertuples())}


def _qc_counts(table: pd.DataFrame) -> pd.DataFrame:
    return table.groupby(["cohort", "reason"]).size().rename("subjects").reset_index()


def _qc(table: pd.DataFrame) -> dict:
    return {"n": len(table), "cohorts": table["cohort"].nunique()}


def _realism(table: pd.DataFrame) -> dict:
    within = table["within"].astype(str).str.lower() == "true"
    return {"within": int(within.sum()), "n": len(table)}


def _overall_ceiling(table: pd.DataFrame) -> pd.DataFrame:
    return table[table["site"] == "all"]


def _flattening(table: pd.DataFrame) -> dict:
    return {"flipped": int(table["flipped"].sum()), "seconds": f"{table['seconds'].max():.1f}", "maps": len(table)}


def _distortion(table: pd.DataFrame) -> dict:
    ours = table[table["map"] == "area-preserving"]
    hcp = table[table["map"] == "HCP S1200 flat map"]
    return {"low": f"{ours['area_ratio_p5'].min():.3f}", "high": f"{ours['area_ratio_p95'].max():.3f}",
            "hcp": f"{hcp['area_ratio_p5'].min():.2f}–{hcp['area_ratio_p95'].max():.2f}" if len(hcp)
            else "not compared (not fs_LR 32k)"}


def _subject_maps(table: pd.DataFrame) -> dict:
    flipped = table[table["measure"] == "flipped triangles"]
    return {"subjects": int(table["subjects"].max()), "cohorts": ", ".join(sorted(table["cohort"].unique())),
            "flipped": int(flipped["max"].max()) if len(flipped) else "not measured"}


def _map_accuracy(table: pd.DataFrame) -> dict:
    difference = table["difference (points)"]
    ceiling = table["Bayes-optimal accuracy (%)"].dropna() if "Bayes-optimal accuracy (%)" in table else []
    return {"low": f"{difference.min():+.1f}", "high": f"{difference.max():+.1f}", "sets": len(table),
            "subjects": int(table["subjects"].max()),
            "ceiling": ", ".join(f"{value:.1f}%" for value in sorted(set(ceiling))) or "unknown (real subjects)"}


def _spread(table: pd.DataFrame) -> dict:
    return {"median": f"{table['own maps (px)'].median():.2f}", "largest": f"{table['own maps, max (px)'].max():.2f}"}


#: The Data page: what the run classified, what was left out and why, and the yardsticks.
DATA_SECTIONS = (
    Section("Cohorts", "01_preprocess", "cohorts.csv",
            ("cohort", "source", "task", "subjects", "label 1", "label 0", "age mean ± sd (range)", "sites",
             "QC exclusions", "metrics"),
            "This run used {n} cohorts: {names}.", _cohorts, ("example_subjects.png",)),
    Section("Quality control", "01_preprocess", "qc_exclusions.csv", ("cohort", "reason", "subjects"),
            "{n} subjects were left out, in {cohorts} cohort(s); every one is listed with its file and reason in "
            "the CSV.", _qc, summarize=_qc_counts),
    Section("Simulation realism", "01_preprocess", "abide_realism.csv",
            ("yardstick", "real ABIDE I", "cohort files*", "fresh draw*", "relative difference", "tolerance",
             "within"),
            "{within} of {n} yardsticks of the simulated autism cohort are within their tolerance of the real ABIDE I "
            "tables.", _realism),
    Section("Yardstick: the Bayes-optimal ceiling", "01_preprocess", "bayes_optimal_accuracy.csv",
            ("cohort", "bayes_accuracy", "balanced_accuracy_equal_priors"),
            "The best accuracy any classifier can reach on each simulated cohort (its planted effect and noise).",
            summarize=_overall_ceiling, figures=("*_planted_effects.png",)),
    Section("Yardstick: the linear reference", "01_preprocess", "linear_reference_check.csv",
            ("data", "n", "features", "accuracy", "accuracy_low", "accuracy_high", "auc", "bayes_accuracy"),
            "Regional means and logistic regression in repeated cross-validation, on simulated and real subjects; "
            "a network far below it has not learned."),
)

#: The Method page as run: the flat maps (the paper's Figures 1 and 2), their distortion, the images, the recipe.
METHOD_SECTIONS = (
    Section("Figure 1: cortex, conformal square, area-preserving square", "02_flatten", "flattening_runs.csv",
            ("template", "hemisphere", "vertices", "aspect", "conformal_iterations", "transport_iterations",
             "flipped", "seconds"),
            "{maps} template hemispheres were flattened with {flipped} flipped triangles in all, each in {seconds} s "
            "or less.", _flattening, ("figure1_*.png",)),
    Section("Figure 2: the atlas in 3D and flat", "02_flatten", None, (),
            "The Desikan–Killiany atlas on the cortex and on the flat maps.", None, ("figure2_atlas.png",)),
    Section("Distortion beside the HCP S1200 flat map", "02_flatten", "distortion_comparison.csv",
            ("hemisphere", "map", "flipped", "area_ratio_p5", "area_ratio_p95", "K_median", "DK_ratio_p5",
             "DK_ratio_p95"),
            "Triangle area ratios (p5 to p95) of the area-preserving maps lie within {low}–{high}; the HCP S1200 "
            "flat map's: {hcp}. Exact areas cost angles: K is the ratio of a triangle's two stretches.", _distortion,
            ("distortion_histograms_left.png",)),
    Section("Each subject's own map", "02_flatten", "subject_distortion.csv",
            ("cohort", "hemisphere", "measure", "subjects", "min", "median", "max"),
            "With flatten.mode per-subject, up to {subjects} subjects per hemisphere of {cohorts} were flattened; the "
            "most flipped triangles in any map: {flipped}.", _subject_maps,
            absent="This run shares one map per template and hemisphere (flatten.mode: template)."),
    Section("Alignment of subjects' maps", "02_flatten", "centroid_spread.csv",
            ("cohort", "hemisphere", "own maps, median region (px)", "own maps, largest (px)", "template maps (px)"),
            "Spread of the regions' centroids across subjects: median {median} px, largest {largest} px (one shared "
            "template map: none).", _spread, summarize=spread_summary,
            absent="With one shared map per template (flatten.mode: template) every region sits on the same pixels "
                   "in every subject's images."),
    Section("One arm on template-map and own-map images", "03_rasterize", "template_vs_own_maps_accuracy.csv",
            ("cohort", "hemisphere", "metric", "subjects", "majority class (%)", "template map accuracy (%)",
             "own maps accuracy (%)", "difference (points)", "difference 95% CI"),
            "The linear reference on each subject's images through its own map and through the template map, in the "
            "same folds: accuracy differences (own minus template) from {low} to {high} points over {sets} image "
            "sets of up to {subjects} subjects. Bayes-optimal ceiling of the cohort: {ceiling}.", _map_accuracy,
            absent="This run shares one map per template and hemisphere (flatten.mode: template)."),
    Section("Images", "03_rasterize", "image_stores.csv",
            ("cohort", "subjects", "size", "method", "flat maps", "dtype", "maps"),
            "Every metric of every hemisphere rasterized through its flat map.", None, ("*_examples.png",)),
    Section("Training recipe", "04_train_sex", "training_recipe.csv", ("setting", "paper", "this run"),
            "The paper's recipe beside this run's (the CPU default shrinks it to fit an hour)."),
)

# Digits that are part of a name, not a number: "Table N", "Figures N and M", "DenseNet-121", "ResNet-50",
# "HCP S1200", "3D", percentile names ("p5"), "95% CI", "p < 0.05" (the significance level the page states as a rule).
_ALLOWED = re.compile(r"(Tables?|Figures?) \d+( and \d+)?|DenseNet-121|ResNet-50|HCP S1200|\b[23]D\b|\bp\d{1,2}\b"
                      r"|95% CI|p < 0\.05")
_NUMBER = re.compile(r"\d+(\.\d+)?")


def typed_numbers(text: str) -> list[str]:
    """The numbers typed into a template's prose: digits outside ``{placeholders}`` and the allowed names."""
    prose = re.sub(r"\{[^{}]*\}", " ", text)
    prose = _ALLOWED.sub(" ", prose)
    return [match.group(0) for match in _NUMBER.finditer(prose)]


def _cell(value) -> str:
    if isinstance(value, float):
        if pd.isna(value):
            return ""
        return f"{value:.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    return str(value).replace("|", "/")


def _markdown_table(table: pd.DataFrame, columns: tuple[str, ...], rows: int = 20) -> str:
    """The chosen columns (a name ending in ``*`` takes every column that starts with the rest) as a markdown table."""
    def matching(column: str) -> list[str]:
        if column.endswith("*"):
            return [name for name in table if name.startswith(column[:-1])]
        return [column] if column in table else []

    columns = [name for column in columns for name in matching(column)]
    shown = table[columns].head(rows)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in shown.itertuples(index=False)]
    more = f"\n\n({len(table) - rows} more rows in the CSV.)" if len(table) > rows else ""
    return "\n".join(lines) + more


#: The generated report pages: path -> (title, introduction, sections).
PAGES = {
    "book/data": ("Data", "The cohorts this run classified, what quality control left out and why, how close the "
                  "simulated cohorts come to the real ABIDE I tables, and the two yardsticks of every accuracy.",
                  DATA_SECTIONS),
    "book/method": ("Method as run", "The flat maps (the paper's Figures 1 and 2) with their distortion beside the "
                    "HCP S1200 flat map, the images and the training recipe, as this run made them.",
                    METHOD_SECTIONS),
    "book/results": ("Results", "The paper's tables and figures as this run regenerated them: our numbers with their "
                     "95% CI, the paper's beside them, the cohort of each row named. The [claims page](claims.md) "
                     "turns them into verdicts.", SECTIONS),
}


def page_markdown(layout: ResultsLayout, src: Path, title: str, introduction: str,
                  sections: tuple[Section, ...]) -> str:
    """A generated report page (MyST markdown); figures are copied under ``src/book/figures/``.

    Raises
    ------
    TypedNumber
        When the introduction or a section's template has a number typed into its prose.
    """
    for name, text in [("introduction", introduction)] + [(s.title, s.title + " " + s.text) for s in sections]:
        found = typed_numbers(text)
        if found:
            raise TypedNumber(f"{title} page, section {name!r}: typed number(s) {found} in its text; fill numbers "
                              "from the run's tables ({placeholders}) or studylib.paper")
    parts = [f"# {title}\n", introduction + " Each section links to the notebook that made it.\n"]
    for section in sections:
        parts.append(f"## {section.title}\n")
        link = f"[{section.stage}](../notebooks/{section.stage}.ipynb)"
        table = None
        if section.table:
            path = layout.tables(section.stage) / section.table
            if not path.is_file():
                why = f"{section.absent} " if section.absent else ""
                parts.append(f"{why}Not produced by this run ({link} wrote no `{section.table}`).\n")
                continue
            try:
                table = pd.read_csv(path)
            except pd.errors.EmptyDataError:
                table = pd.DataFrame()
            if table.empty:
                parts.append(f"No rows in this run ({link}, `{section.table}`).\n")
                continue
        text = section.text
        if section.facts is not None:
            try:
                text = text.format(**section.facts(table))
            except (KeyError, IndexError, ValueError, TypeError) as error:
                text = f"(The summary sentence could not be filled from `{section.table}`: {error}.)"
        parts.append(f"{text} From {link}.\n")
        if table is not None:
            shown = section.summarize(table) if section.summarize is not None else table
            parts.append(_markdown_table(shown, section.columns) + "\n")
        for pattern in section.figures:
            figures = sorted(layout.figures(section.stage).glob(pattern))
            if not figures:
                parts.append(f"No figure matching `{pattern}` in this run.\n")
            # the networks' figures; the linear reference's numbers are in the tables beside them
            figures = [figure for figure in figures if "logistic regression" not in figure.name]
            for figure in figures[:6]:
                name = re.sub(r"[^A-Za-z0-9_.-]", "_", figure.name)  # a markdown link target without spaces
                target = src / "book" / "figures" / section.stage / name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(figure, target)
                parts.append(f"```{{image}} figures/{section.stage}/{name}\n:alt: {figure.stem}\n:width: 70%\n```\n")
    return "\n".join(parts)


def results_markdown(layout: ResultsLayout, src: Path, sections: tuple[Section, ...] = SECTIONS) -> str:
    """The Results page (see :func:`page_markdown`)."""
    title, introduction, _ = PAGES["book/results"]
    return page_markdown(layout, src, title, introduction, sections)
