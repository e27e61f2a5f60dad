"""The run's time budget: each notebook's (and the book's) measured minutes beside the parameter set's budget.

The budget (``budget`` in the parameters) is what a parameter set promises on the machine it is written for, e.g.
``default``: the whole study on 2 CPU cores within an hour, with shares held for work that later issues add to a
notebook. :func:`budget_table` compares a run's ``provenance.json`` with it; the book's reproducibility page and
``benchmarks/bench_budget.py`` show it.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from ..params import BudgetParams
from .stages import stage_names

__all__ = ["BOOK", "budget_table", "check_budget_names"]

#: The budget's name for building the book.
BOOK = "book"


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
    table["within budget"] = [None if pd.isna(ratio) else bool(ratio <= 1.0) for ratio in table["ratio"]]
    table["measured minutes"] = table["measured minutes"].round(2)
    return table
