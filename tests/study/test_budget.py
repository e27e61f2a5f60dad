"""The time budget: measured minutes beside each part's budget, unknown parts refused, shown in the book."""

from __future__ import annotations

import pytest

from studylib.params import BudgetParams, ParamsError
from studylib.study.budget import budget_table
from studylib.study.config import load_params

from tests.support import PROJECT, minimal_params


def _stages(**seconds):
    return [{"name": name, "status": "ran", "seconds": value, "executed_at": "2026-12-01T00:00:00+00:00"}
            for name, value in seconds.items()]


def test_budget_table_gives_ratios_per_part_and_in_total():
    budget = BudgetParams(machine="2 CPU cores", minutes={"01_preprocess": 2, "04_train_sex": 10, "book": 1},
                          total_minutes=15)
    table = budget_table(budget, _stages(**{"01_preprocess": 60, "04_train_sex": 900}), book_seconds=30)
    rows = table.set_index("part")
    assert rows.loc["01_preprocess", "ratio"] == 0.5 and bool(rows.loc["01_preprocess", "within budget"])
    assert rows.loc["04_train_sex", "ratio"] == 1.5 and rows.loc["04_train_sex", "within budget"] == False  # noqa: E712
    assert rows.loc["book", "measured minutes"] == 0.5
    assert rows.loc["total", "measured minutes"] == 16.5 and rows.loc["total", "budget minutes"] == 15
    # Python booleans, also when every part is measured (as here), so that bench_budget's `is False` exit holds
    assert rows.loc["total", "within budget"] is False and rows.loc["01_preprocess", "within budget"] is True
    without_book = budget_table(budget, _stages(**{"01_preprocess": 60}))
    assert without_book.set_index("part").loc["total", "within budget"] is None  # not measured is not "within"


def test_budget_names_must_be_notebooks_or_the_book(write_params):
    content = minimal_params()
    content["budget"] = {"minutes": {"04_train": 5}}
    with pytest.raises(ParamsError, match="'04_train' is not a notebook or 'book'"):
        load_params(write_params(content))


def test_default_budget_holds_every_notebook_within_an_hour():
    budget = load_params(PROJECT / "params" / "default.yaml").budget
    from studylib.study.stages import stage_names

    assert set(budget.minutes) == {*stage_names(), "book"}
    assert sum(budget.minutes.values()) <= budget.total_minutes <= 60


def test_reproducibility_page_shows_the_budget():
    from studylib.study.provenance import render_markdown

    record = {"params_name": "default", "params_file": "params/default.yaml", "command": "studylib run",
              "started": "s", "finished": "f", "wall_seconds": 1, "data_dir": None,
              "git": {"commit": "abc", "uncommitted_changes": False},
              "platform": {"python": "3.11", "system": "Linux", "machine": "x86_64"}, "device": {"kind": "cpu"},
              "packages": {"torch": "2"}, "stages": _stages(**{"01_preprocess": 90}),
              "params": {"budget": {"machine": "2 CPU cores", "minutes": {"01_preprocess": 3, "book": 1},
                                    "total_minutes": 4}}}
    page = render_markdown(record, book_seconds=12)
    assert "Time budget of this parameter set (2 CPU cores)" in page
    assert "| 01_preprocess | ran | 1.5 | 3.0 | 0.5 | yes |" in page
    assert "| book | measured | 0.2 | 1.0 | 0.2 | yes |" in page


def _job(folder, subjects, epochs, began, ended):
    import json
    import os

    import pandas as pd

    folder.mkdir(parents=True)
    (folder / "job.json").write_text("{}")
    pd.DataFrame({"epoch": range(epochs), "seconds": 1.0}).to_csv(folder / "history.csv", index=False)
    (folder / "done.json").write_text(json.dumps({"train_subjects": subjects}))
    os.utime(folder / "job.json", (began, began))
    os.utime(folder / "done.json", (ended, ended))


def test_training_rate_counts_only_the_jobs_a_notebook_trained_in_its_last_execution(tmp_path):
    from datetime import datetime, timezone

    from studylib.params import BudgetParams
    from studylib.study.budget import speed_sentence, training_rate

    end = datetime(2026, 12, 4, 16, 5, 15, tzinfo=timezone.utc)
    stage = {"name": "04_train_sex", "seconds": 100.0, "executed_at": end.isoformat(timespec="seconds")}
    t = end.timestamp()
    _job(tmp_path / "a", 100, 20, t - 90, t - 50)
    _job(tmp_path / "b", 50, 20, t - 50, t - 1)
    _job(tmp_path / "earlier", 100, 20, t - 5000, t - 4000)  # finished by an earlier execution: costs it no time
    measured = training_rate(tmp_path, stage)
    assert measured == {"images": 3000.0, "seconds": 100.0, "rate": 30.0}
    assert training_rate(tmp_path, None) is None and training_rate(tmp_path / "none", stage) is None
    later = {**stage, "executed_at": datetime(2026, 12, 5, tzinfo=timezone.utc).isoformat()}
    assert training_rate(tmp_path, later) is None  # re-executed with every job already done

    sentence = speed_sentence(BudgetParams(minutes={"04_train_sex": 7.5}, reference_training_rate=60), measured)
    assert "3,000 images" in sentence and "30 images/s" in sentence and "0.50x" in sentence and "2.0x" in sentence
    assert "states no rate" in speed_sentence(BudgetParams(), measured)
    assert "not measured" in speed_sentence(BudgetParams(), None)
