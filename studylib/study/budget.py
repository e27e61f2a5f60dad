"""The run's time budget: each notebook's (and the book's) measured minutes beside the parameter set's budget.

The budget (``budget`` in the parameters) is what a parameter set promises on the machine it is written for, e.g.
``default``: the whole study on 2 CPU cores within an hour, with shares held for work that later issues add to a
notebook. :func:`budget_table` compares a run's ``provenance.json`` with it; the book's reproducibility page and
``benchmarks/bench_budget.py`` show it.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from ..params import BudgetParams
from .stages import stage_names

__all__ = ["BOOK", "SPEED_NOTEBOOK", "budget_table", "check_budget_names", "speed_sentence", "training_rate"]

#: The budget's name for building the book.
BOOK = "book"

#: The notebook whose training throughput says how fast a machine trains: it trains the sex cohort's models and
#: little else, the same on every machine.
SPEED_NOTEBOOK = "04_train_sex"


def check_budget_names(budget: BudgetParams) -> None:
    """Raise ``ValueError`` naming a budget entry that is neither a notebook nor the book."""
    known = [*stage_names(), BOOK]
    unknown = [name for name in budget.minutes if name not in known]
    if unknown:
        raise ValueError(f"budget.minutes: {', '.join(map(repr, unknown))} is not a notebook or 'book' "
                         f"(known: {', '.join(known)})")


def budget_table(budget: BudgetParams, stages: list[dict[str, Any]],
                 book_seconds: float | None = None) -> pd.DataFrame:
    """One row per notebook (and the book): measured minutes, budget minutes and their ratio, plus a total row.

    Parameters
    ----------
    budget : BudgetParams
    stages : list of dict
        ``provenance.json``'s ``stages`` (``name``, ``status``, ``seconds``); a notebook's time is that of its
        last execution, also when this run skipped it.
    book_seconds : float, optional
        Time of the last book build, when measured.

    Returns
    -------
    DataFrame
        Columns ``part``, ``status``, ``measured minutes``, ``budget minutes``, ``ratio``, ``within budget``
        (None where either number is missing).
    """
    check_budget_names(budget)
    rows = [(stage["name"], stage.get("status", ""), stage.get("seconds")) for stage in stages]
    rows.append((BOOK, "measured" if book_seconds is not None else "not measured", book_seconds))
    table = pd.DataFrame(rows, columns=["part", "status", "seconds"])
    table["measured minutes"] = table["seconds"].astype(float) / 60
    table["budget minutes"] = table["part"].map(budget.minutes).astype(float)
    total_budget = budget.total_minutes or (sum(budget.minutes.values()) or None)
    measured = table["measured minutes"]
    total = {"part": "total", "status": "", "measured minutes": measured.sum() if measured.notna().all() else None,
             "budget minutes": total_budget}
    table = pd.concat([table.drop(columns="seconds"), pd.DataFrame([total])], ignore_index=True)
    table["measured minutes"] = table["measured minutes"].astype(float)
    table["budget minutes"] = table["budget minutes"].astype(float)
    table["ratio"] = (table["measured minutes"] / table["budget minutes"]).round(2)
    # object dtype: Python True/False/None, which pandas would otherwise turn into numpy booleans when every part
    # is measured (and ``verdict is False`` would then never hold)
    table["within budget"] = pd.Series([None if pd.isna(ratio) else bool(ratio <= 1.0) for ratio in table["ratio"]],
                                       index=table.index, dtype=object)
    table["measured minutes"] = table["measured minutes"].round(2)
    return table


def training_rate(jobs: Path, stage: dict[str, Any] | None) -> dict[str, float] | None:
    """Training images per second of a notebook's last execution: the subjects x epochs of the jobs under ``jobs``
    that trained during it (started after it began, finished before it ended), over its wall time.

    Parameters
    ----------
    jobs : path
        The notebook's job folders (``job.json``, ``done.json``, ``history.csv`` each).
    stage : dict, optional
        Its ``provenance.json`` entry (``seconds``; ``executed_at``: when it ended).

    Returns
    -------
    dict or None
        ``images``, ``seconds`` and ``rate``; None when the notebook has not run or trained nothing then (its jobs
        were finished by an earlier execution, so its time says nothing of the machine's speed).
    """
    if not stage or stage.get("seconds") is None or not stage.get("executed_at") or not Path(jobs).is_dir():
        return None
    end = datetime.fromisoformat(stage["executed_at"]).timestamp() + 2  # executed_at is rounded to the second
    start = end - stage["seconds"] - 4
    images = 0
    for done in sorted(Path(jobs).rglob("done.json")):
        began = (done.parent / "job.json").stat().st_mtime
        if began < start or done.stat().st_mtime > end:
            continue
        history = done.parent / "history.csv"
        epochs = len(pd.read_csv(history)) if history.is_file() else 0
        images += json.loads(done.read_text())["train_subjects"] * epochs
    if not images:
        return None
    return {"images": float(images), "seconds": float(stage["seconds"]), "rate": images / stage["seconds"]}


def speed_sentence(budget: BudgetParams, measured: dict[str, float] | None) -> str:
    """One sentence comparing the run's training rate (:func:`training_rate` of :data:`SPEED_NOTEBOOK`) with the
    budget's machine's, so that a reader can tell a slower machine from a slower study."""
    if measured is None:
        return (f"Training speed: not measured ({SPEED_NOTEBOOK} has not trained its models in its last "
                "execution).")
    text = (f"Training speed: {SPEED_NOTEBOOK} trained {measured['images']:,.0f} images (subjects x epochs) in "
            f"{measured['seconds']:.0f} s, {measured['rate']:.0f} images/s")
    if budget.reference_training_rate is None:
        return text + "; the budget states no rate of its machine to compare with."
    ratio = measured["rate"] / budget.reference_training_rate
    return text + (f"; the budget's machine: {budget.reference_training_rate:.0f} images/s. This machine trained at "
                   f"{ratio:.2f}x that speed, so the notebooks that train networks (04, 05, 07, 09) take about "
                   f"{1 / ratio:.1f}x their budget here for that reason alone.")
