"""The Results page: numbers come from the run's tables, never typed into its prose."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

from studylib.study.layout import ResultsLayout
from studylib.study.report import SECTIONS, TypedNumber, results_markdown, typed_numbers


def test_typed_numbers_finds_digits_outside_placeholders_and_names():
    assert typed_numbers("accuracy {accuracy}% (95% CI {ci}); Table 1 and Figure 4; DenseNet-121") == []
    assert typed_numbers("the paper reports 67.85% accuracy") == ["67.85"]
    assert typed_numbers("p < 0.05 after Holm; 3 of {n} regions") == ["3"]


def test_every_section_template_is_free_of_typed_numbers():
    for section in SECTIONS:
        assert typed_numbers(section.title + " " + section.text) == [], section.title


def _layout(tmp_path) -> ResultsLayout:
    layout = ResultsLayout.for_params("mine", tmp_path / "results")
    folder = layout.tables("06_stack")
    folder.mkdir(parents=True)
    pd.DataFrame({"cohort": ["hcp", "hcp"], "arm": ["imagenet", "linear reference"], "stacking": "xgboost",
                  "subjects": 200, "accuracy (%)": [71.25, 86.5], "accuracy (%) 95% CI": ["65.5–78.0", "81.5–91.0"],
                  "auc": [0.789, 0.933], "paper DenseNet-121 accuracy (%)": [95.06, None]}).to_csv(
        folder / "table1_sex_vs_paper.csv", index=False)
    return layout


def test_results_page_fills_numbers_from_the_run(tmp_path):
    page = results_markdown(_layout(tmp_path), tmp_path / "src")
    assert "(imagenet, xgboost) classified sex with 71.2% accuracy (95% CI 65.5–78.0)" in page
    assert "the paper reports 95.06% with DenseNet-121" in page and "reached 86.5%" in page
    assert "Not produced by this run ([06_stack](../notebooks/06_stack.ipynb) wrote no `table2_autism" in page


def test_a_typed_number_in_a_results_section_fails(tmp_path):
    planted = list(SECTIONS)
    planted[0] = dataclasses.replace(planted[0], text=planted[0].text + " This beats the paper by 3.2 points.")
    with pytest.raises(TypedNumber, match=r"section 'Table 1: sex classification': typed number\(s\) \['3.2'\]"):
        results_markdown(_layout(tmp_path), tmp_path / "src", tuple(planted))
