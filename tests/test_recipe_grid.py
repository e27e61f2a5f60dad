"""The recipe grid's summary over tuning draws pairs each recipe with the default of the same draw."""

from __future__ import annotations

import runpy

import pandas as pd
import pytest

from studylib.study.config import load_params
from tests.support import PROJECT


def _row(recipe, params, accuracy, auc, seconds, **change):
    settings = {**params.train.model_dump(), "size": params.raster.image_size, **change}
    return {"recipe": recipe, "cohort": "hcp", "images": "left_sulc right_sulc", **settings, "accuracy": accuracy,
            "auc": auc, "train_seconds": seconds, "linear_accuracy": 0.8, "fraction_of_linear": accuracy / 0.8}


def _write(folder, rows, drop=()):
    folder.mkdir(exist_ok=True)
    pd.DataFrame(rows).drop(columns=list(drop)).to_csv(folder / "recipe_grid.csv", index=False)


def test_summary_pairs_recipes_with_the_default_of_their_own_draw(tmp_path):
    summarise = runpy.run_path(str(PROJECT / "benchmarks" / "bench_recipe.py"))["summarise_draws"]
    params = load_params(PROJECT / "params" / "default.yaml")
    assert params.train.warmup_epochs > 0  # the old-grid case below relies on it
    _write(tmp_path / "tuning", [_row("an old name of today's default", params, 0.70, 0.80, 100.0),
                                 _row("lr 0.03", params, 0.75, 0.82, 110.0, lr=0.03)])
    _write(tmp_path / "tuning-seed8", [_row("default", params, 0.60, 0.70, 50.0),
                                       _row("lr 0.03", params, 0.62, 0.75, 50.0, lr=0.03),
                                       _row("96 px", params, 0.65, 0.72, 80.0, size=96)])
    # a grid written before the warm-up column: its rows had none, so its "default" is an earlier default
    _write(tmp_path / "tuning-seed9", [_row("default", params, 0.9, 0.9, 80.0),
                                       _row("96 px", params, 0.9, 0.9, 80.0, size=96)], drop=["warmup_epochs"])
    table = summarise(tmp_path, params).set_index(["recipe", "draw"])
    assert set(table.index) == {("default", "tuning"), ("lr 0.03", "tuning"), ("default", "tuning-seed8"),
                                ("lr 0.03", "tuning-seed8"), ("96 px", "tuning-seed8")}  # seed 9: nothing to pair
    assert table.loc[("lr 0.03", "tuning-seed8"), "accuracy gain"] == pytest.approx(0.02)
    assert table.loc[("lr 0.03", "tuning"), "auc gain"] == pytest.approx(0.02)
    assert table.loc[("96 px", "tuning-seed8"), "time ratio"] == pytest.approx(1.6)
    assert (table.loc["default", "accuracy gain"] == 0).all()
    # today's default runs on seed 9 too: the old "default" row is then paired with it, under its settings
    _write(tmp_path / "tuning-seed9", [_row("default", params, 0.9, 0.9, 80.0, warmup_epochs=0),
                                       _row("a new run of the default", params, 0.5, 0.5, 40.0)])
    table = summarise(tmp_path, params).set_index(["recipe", "draw"])
    assert table.loc[("an earlier default (warmup_epochs 0)", "tuning-seed9"), "accuracy gain"] == pytest.approx(0.4)
    assert table.loc[("default", "tuning-seed9"), "accuracy"] == 0.5
    # the default trained with another seed (--training-seed) is its own row, paired with the draw's default
    _write(tmp_path / "tuning-seed9", [{**_row("default", params, 0.6, 0.7, 40.0), "seed": 9},
                                       {**_row("default (training seed 1)", params, 0.65, 0.7, 40.0), "seed": 9,
                                        "training_seed": 1}])
    table = summarise(tmp_path, params).set_index(["recipe", "draw"])
    assert table.loc[("default (training seed 1)", "tuning-seed9"), "accuracy gain"] == pytest.approx(0.05)
    assert table.loc[("default", "tuning-seed9"), "accuracy"] == 0.6
