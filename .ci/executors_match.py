"""CI check: the smoke study's training, run again with the `local` and the `ray` executor, gives predictions
identical to the serial run that `studylib run --params params/smoke.yaml` just made.

Usage: python .ci/executors_match.py  (after the smoke study; exits 1 on any difference)
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import pandas as pd

from studylib.images import open_stores
from studylib.params import ExecutorParams
from studylib.study.config import load_params
from studylib.study.layout import ResultsLayout
from studylib.train.experiments import Experiment, plan_autism, plan_sex

PROJECT = Path(__file__).resolve().parents[1]


def main() -> int:
    params = load_params(PROJECT / "params" / "smoke.yaml")
    layout = ResultsLayout.for_params("smoke", PROJECT / "results")
    transfer = params.transfer
    names = [transfer.sex_cohort, *transfer.autism_cohorts]
    stores, _ = open_stores({name: layout.image_store(name) for name in names})
    status = 0
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("local", "ray"):
            executor = ExecutorParams(kind=kind, workers=2)
            train = params.train.model_copy()
            for task in ("sex", "autism"):
                root = Path(tmp) / kind / task
                experiment = Experiment(root, stores, train, params.seed, "cpu", executor=executor)
                if task == "sex":
                    plan_sex(experiment, transfer)
                else:
                    plan_autism(experiment, transfer, [n for n in transfer.autism_cohorts if n in stores])
                experiment.run(progress=False)
                serial = pd.read_csv(layout.predictions(task), dtype={"subject": str})
                other = experiment.predictions()
                same = serial.equals(other.astype(serial.dtypes.to_dict()))
                print(f"{kind:<5} {task:<6} {len(experiment.jobs):3d} models: predictions "
                      f"{'identical to serial' if same else 'DIFFER from serial'}", flush=True)
                status |= not same
    return status


if __name__ == "__main__":
    sys.exit(main())
