"""The default study's time budget (issue 13): each notebook's and the book's minutes beside the budget in the
parameter set (``budget`` in ``params/default.yaml``: the whole study within an hour on 2 CPU cores).

By default it reads the last run's ``provenance.json`` (a notebook's time is that of its last execution) and the
last book build's time. ``--run`` first runs every notebook again (``--force``) and builds the book, which takes
the full budget. Prints one line per part with its ratio to the budget and a verdict; exits non-zero when the total
is over budget. Quote the machine's load with the figures: other processes on 2 cores slow training by up to 10x.
It also prints the run's training speed (04's training images per second) beside the budget machine's
(``budget.reference_training_rate``): 2-core machines differ by 2x in how fast they train, so a run over budget on
a slower machine says that, not that the study grew.

Usage: ``python benchmarks/bench_budget.py [--params params/default.yaml] [--run]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from studylib.study.book import LAST_BUILD
from studylib.study.budget import SPEED_NOTEBOOK, budget_table, speed_sentence, training_rate
from studylib.study.config import load_params, params_name
from studylib.study.layout import ResultsLayout

PROJECT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=PROJECT / "params" / "default.yaml")
    parser.add_argument("--run", action="store_true", help="run every notebook and build the book first")
    args = parser.parse_args()
    params = load_params(args.params)
    layout = ResultsLayout.for_params(params_name(args.params), PROJECT / "results")
    if not params.budget.minutes:
        print(f"bench_budget: {args.params} sets no budget")
        return
    if args.run:
        cli = [sys.executable, "-m", "studylib.study.cli"]
        subprocess.run([*cli, "run", "--params", str(args.params), "--force"], cwd=PROJECT, check=True)
        subprocess.run([*cli, "book", "--params", str(args.params)], cwd=PROJECT, check=True)
    if not layout.provenance.is_file():
        print(f"bench_budget skipped: no run of {args.params} in {layout.root}; run `make study` (or pass --run)")
        return
    record = json.loads(layout.provenance.read_text())
    last_build = layout.book / LAST_BUILD
    book_seconds = json.loads(last_build.read_text())["seconds"] if last_build.is_file() else None
    table = budget_table(params.budget, record["stages"], book_seconds)
    print(f"time budget of {params_name(args.params)} ({params.budget.machine}); this machine: {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f}; run of {record['started']} (commit {record['git']['commit']})")
    for row in table.to_dict("records"):
        measured = "not measured" if row["measured minutes"] != row["measured minutes"] else \
            f"{row['measured minutes']:.1f} min"
        verdict = {True: "within", False: "OVER", None: "-"}[row["within budget"]]
        print(f"  {row['part']:<22} {measured:>14} of {row['budget minutes']:.1f} min  ratio {row['ratio']}  {verdict}")
    stages = {stage["name"]: stage for stage in record["stages"]}
    print(speed_sentence(params.budget, training_rate(layout.training_jobs("sex"), stages.get(SPEED_NOTEBOOK))))
    total = table[table["part"] == "total"].iloc[0]
    if total["within budget"] is False:
        sys.exit(f"bench_budget: the run took {total['measured minutes']:.1f} min, over its budget of "
                 f"{total['budget minutes']:.0f} min")


if __name__ == "__main__":
    main()
