"""Executors on this machine: wall time of the `local` executor (2 worker processes, 1 thread each) divided by the
`serial` executor (2 threads), on training jobs shaped like the `default` parameter set's.

Below 1 means the workers win. The jobs: EfficientNet-Lite0 at 64 px, 200 subjects, the default recipe (``train`` of
``params/default.yaml``), scratch and ImageNet arms, one image, 3 folds (6 models; `--quick`: 2 epochs, 2 folds, 4
models). Both runs train the same jobs from scratch into fresh folders, serial first, then local; the machine's load
average is printed before and after, since a busy machine makes any ratio meaningless. (Models differ between the two
runs: CPU results depend on the thread count, which is why `train.threads` is a fixed parameter.)
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from studylib.params import ExecutorParams
from studylib.study.config import load_params
from studylib.train.experiments import Experiment, plan_sex
from studylib.train.engine import available_cpus

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))  # the tests' small image stores

from tests.support import make_store  # noqa: E402


def _store(folder: Path):
    return make_store(folder, "hcp", ["thickness"], n=200, size=64, effect=0.3)


def _run(kind: str, threads: int, workers: int, stores: dict, root: Path, quick: bool) -> float:
    params = load_params(PROJECT / "params" / "default.yaml")
    changes = {"threads": threads} | ({"epochs": 2, "mixup_epochs": 1, "folds": 2} if quick else {})
    train = params.train.model_copy(update=changes)
    experiment = Experiment(root, stores, train, params.seed, "cpu",
                            executor=ExecutorParams(kind=kind, workers=workers))
    plan_sex(experiment, params.transfer)
    start = time.perf_counter()
    trained = experiment.run(progress=False)
    seconds = time.perf_counter() - start
    print(f"  {kind:<6} {workers} worker(s) x {threads} thread(s): {trained} models in {seconds:6.1f} s", flush=True)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    print(f"{available_cpus()} CPUs; load average before: {os.getloadavg()[0]:.2f}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        stores = {"hcp": _store(Path(tmp) / "stores")}
        serial = _run("serial", 2, 1, stores, Path(tmp) / "serial", args.quick)
        local = _run("local", 1, 2, stores, Path(tmp) / "local", args.quick)
    print(f"local / serial wall time: {local / serial:.2f} (below 1: the workers win); "
          f"load average after: {os.getloadavg()[0]:.2f}", flush=True)


if __name__ == "__main__":
    main()
