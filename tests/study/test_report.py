"""The Results page: numbers come from the run's tables, never typed into its prose."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

from studylib.study.layout import ResultsLayout
from studylib.study.report import PAGES, SECTIONS, TypedNumber, page_markdown, results_markdown, typed_numbers


def test_typed_numbers_finds_digits_outside_placeholders_and_names():
    assert typed_numbers("accuracy {accuracy}% (95% CI {ci}); Table 1 and Figure 4; DenseNet-121") == []
    assert typed_numbers("the paper reports 67.85% accuracy") == ["67.85"]
    assert typed_numbers("p < 0.05 after Holm; 3 of {n} regions") == ["3"]


def test_every_page_and_section_template_is_free_of_typed_numbers():
    for page, (title, introduction, sections) in PAGES.items():
        assert typed_numbers(introduction) == [], page
        for section in sections:
            assert typed_numbers(section.title + " " + section.text) == [], (page, section.title)


def _layout(tmp_path) -> ResultsLayout:
    layout = ResultsLayout.for_params("mine", tmp_path / "results")
    folder = layout.tables("06_stack")
    folder.mkdir(parents=True, exist_ok=True)
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
    with pytest.raises(TypedNumber, match=r"Results page, section 'Table 1: sex classification': typed number\(s\) "
                                          r"\['3.2'\]"):
        results_markdown(_layout(tmp_path), tmp_path / "src", tuple(planted))
    title, introduction, sections = PAGES["book/data"]
    with pytest.raises(TypedNumber, match=r"Data page, section 'introduction': typed number\(s\) \['1035'\]"):
        page_markdown(_layout(tmp_path), tmp_path / "src", title, introduction + " All 1035 subjects.", sections)


def test_an_empty_table_and_a_summary(tmp_path):
    layout = _layout(tmp_path)
    folder = layout.tables("01_preprocess")
    folder.mkdir(parents=True)
    (folder / "qc_exclusions.csv").write_text("cohort,subject,file,reason\n")
    title, introduction, sections = PAGES["book/data"]
    page = page_markdown(layout, tmp_path / "src", title, introduction, sections)
    assert "No rows in this run ([01_preprocess](../notebooks/01_preprocess.ipynb), `qc_exclusions.csv`)" in page
    pd.DataFrame({"cohort": ["a", "a", "b"], "subject": ["1", "2", "3"], "file": "f",
                  "reason": ["no folder", "no folder", "no label"]}).to_csv(folder / "qc_exclusions.csv", index=False)
    page = page_markdown(layout, tmp_path / "src", title, introduction, sections)
    assert "3 subjects were left out, in 2 cohort(s)" in page
    assert "| a | no folder | 2 |" in page and "| b | no label | 1 |" in page


def test_a_template_mode_run_says_why_it_has_no_subject_maps(tmp_path):
    title, introduction, sections = PAGES["book/method"]
    page = page_markdown(_layout(tmp_path), tmp_path / "src", title, introduction, sections)
    assert ("This run shares one map per template and hemisphere (flatten.mode: template). Not produced by this run "
            "([02_flatten](../notebooks/02_flatten.ipynb) wrote no `subject_distortion.csv`)") in page


def test_table3_puts_the_papers_gains_beside_ours(tmp_path):
    layout = _layout(tmp_path)
    folder = layout.tables("07_ablation")
    folder.mkdir(parents=True)
    pd.DataFrame({"module": ["stacking", "mix-up"], "setting": ["mix-up on", "xgboost"], "cohort": "abide",
                  "arm": "2-stage", "first": ["xgboost", "on"], "second": ["mean", "off"],
                  "accuracy difference": [0.02, -0.01], "mcnemar p (Holm)": [0.5, 0.01], "auc difference": 0.0,
                  "delong p (Holm)": 1.0}).to_csv(folder / "ablation_gains.csv", index=False)
    page = results_markdown(layout, tmp_path / "src")
    assert "Of 2 ablation comparisons, 1 differ at p < 0.05" in page
    assert "| stacking | mix-up on | abide | 2-stage | xgboost | mean | 2 | 1.5 |" in page
    assert "| mix-up | xgboost | abide | 2-stage | on | off | -1 | 0.7 |" in page


def test_table_headlines_name_the_same_cohorts_linear_reference_and_its_bayes_ceiling():
    section = next(s for s in SECTIONS if s.title.startswith("Table 2: autism"))
    # the other cohort's and the other scheme's linear references come first: they must not be taken
    table = pd.DataFrame({
        "cohort": ["real", "real", "sim", "sim", "sim"], "scheme": ["kfold", "kfold", "site-out", "kfold", "kfold"],
        "arm": ["imagenet", "linear reference", "linear reference", "imagenet", "linear reference"],
        "stacking": ["xgboost"] * 5, "accuracy (%)": [60.0, 58.0, 55.0, 70.0, 68.0],
        "accuracy (%) 95% CI": ["50–70", "48–68", "45–65", "60–80", "58–78"],
        "Bayes-optimal accuracy (%)": [float("nan"), float("nan"), 81.5, 81.5, 81.5],
        "paper DenseNet-121 accuracy (%)": [67.85] * 5})
    facts = section.facts(table)
    assert facts["cohort"] == "sim" and facts["linear"] == "68.0%" and facts["ceiling"] == "81.5%"
    facts = section.facts(table[table["cohort"] == "real"])
    assert facts["linear"] == "58.0%" and facts["ceiling"] == "unknown (real subjects)"
    assert section.facts(table.drop(columns="Bayes-optimal accuracy (%)"))["ceiling"] == "unknown (real subjects)"


def test_map_accuracy_section_states_the_differences_and_the_ceiling():
    from studylib.study.report import METHOD_SECTIONS

    section = next(s for s in METHOD_SECTIONS if s.title.startswith("One arm on template-map"))
    table = pd.DataFrame({"subjects": [24, 24], "difference (points)": [-2.1, 1.5],
                          "Bayes-optimal accuracy (%)": [97.0, 97.0]})
    facts = section.facts(table)
    assert (facts["low"], facts["high"], facts["sets"], facts["ceiling"]) == ("-2.1", "+1.5", 2, "97.0%")
    assert section.facts(table.assign(**{"Bayes-optimal accuracy (%)": float("nan")}))["ceiling"] == \
        "unknown (real subjects)"


def test_site_out_section_reads_a_network_arm_beside_the_reference_of_the_same_site_folds():
    section = next(s for s in SECTIONS if s.title == "Leave-one-site-out")
    table = pd.DataFrame({"cohort": "abide", "arm": ["2-stage"] * 3 + ["linear reference"] * 3,
                          "backbone": "resnet18", "site": ["a", "b", "c"] * 2, "subjects": 10, "label 1": 5,
                          "accuracy": [0.5, 0.7, 0.6, 0.4, 0.8, 0.65]})
    for order in (table, table.iloc[::-1]):  # the reference's rows first: still the network's
        facts = section.facts(order)
        assert (facts["arm"], facts["low"], facts["high"], facts["median"], facts["linear"]) == \
            ("2-stage", "0.50", "0.70", "0.60", "0.65")
    assert section.facts(table[table["arm"] == "2-stage"])["linear"] == "not run"
