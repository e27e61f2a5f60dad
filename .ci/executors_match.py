"""CI check: the smoke study's training, run again with the `local` executor, the `ray` executor on a local Ray
instance, and the `ray` executor joining a running two-node Ray cluster (both nodes on this machine, started with
`ray start` as on Slurm or Kubernetes), gives predictions identical to the serial run that
`studylib run --params params/smoke.yaml` just made; on the cluster, the jobs must have run on both nodes.

Usage: python .ci/executors_match.py  (after the smoke study; exits 1 on any difference)
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from studylib.images import open_stores
from studylib.params import ExecutorParams
from studylib.study.config import load_params
from studylib.study.layout import ResultsLayout
from studylib.train.experiments import Experiment, plan_autism, plan_sex

PROJECT = Path(__file__).resolve().parents[1]
RAY = Path(sys.executable).with_name("ray")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def two_node_cluster(cpus_per_node: int):
    """A head node and a worker node on this machine, started and stopped with the `ray` command line; yields the
    address to join."""
    address = f"127.0.0.1:{_free_port()}"
    common = ["--num-cpus", str(cpus_per_node), "--node-ip-address", "127.0.0.1", "--disable-usage-stats"]
    # Ray (2.59 on) starts a head with token authentication: whoever joins needs RAY_AUTH_MODE=token, and the token,
    # which `ray start --head` writes to ~/.ray/auth_token, shared here by both nodes and the driver
    before = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "token"
    try:
        for command in (["--head", "--port", address.split(":")[1], "--include-dashboard=false"],
                        ["--address", address]):
            started = subprocess.run([RAY, "start", *command, *common], capture_output=True, text=True)
            if started.returncode:
                raise RuntimeError(f"ray start {' '.join(command)} failed:\n{started.stdout[-2000:]}"
                                   f"{started.stderr[-2000:]}")
        yield address
    finally:
        subprocess.run([RAY, "stop", "--force"], capture_output=True, text=True)
        if before is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = before


def run_smoke_training(root: Path, executor: ExecutorParams, params, stores, layout) -> tuple[bool, list[str]]:
    """Train the smoke study's models under ``root`` with ``executor``; whether every prediction equals the serial
    run's, and one line per task."""
    passed, lines = True, []
    transfer = params.transfer
    for task in ("sex", "autism"):
        experiment = Experiment(root / task, stores, params.train.model_copy(), params.seed, "cpu", executor=executor)
        if task == "sex":
            plan_sex(experiment, transfer)
        else:
            plan_autism(experiment, transfer, [n for n in transfer.autism_cohorts if n in stores])
        experiment.run(progress=False)
        serial = pd.read_csv(layout.predictions(task), dtype={"subject": str})
        other = experiment.predictions()
        same = serial.equals(other.astype(serial.dtypes.to_dict()))
        nodes = experiment.executor.describe().get("nodes")
        lines.append(f"{task:<6} {len(experiment.jobs):3d} models: predictions "
                     f"{'identical to serial' if same else 'DIFFER from serial'}"
                     + (f"; ran on {nodes} Ray node(s)" if nodes else ""))
        passed &= same
        if executor.address and nodes != 2:
            lines.append(f"       the jobs ran on {nodes} node(s) of the two-node cluster, not on both")
            passed = False
    return passed, lines


def main() -> int:
    params = load_params(PROJECT / "params" / "smoke.yaml")
    layout = ResultsLayout.for_params("smoke", PROJECT / "results")
    names = [params.transfer.sex_cohort, *params.transfer.autism_cohorts]
    stores, _ = open_stores({name: layout.image_store(name) for name in names})
    status = 0
    with tempfile.TemporaryDirectory() as tmp:
        runs = {"local": ExecutorParams(kind="local", workers=2), "ray": ExecutorParams(kind="ray", workers=2)}
        for label, executor in runs.items():
            ok, lines = run_smoke_training(Path(tmp) / label, executor, params, stores, layout)
            print("\n".join(f"{label:<13} {line}" for line in lines), flush=True)
            status |= not ok
        with two_node_cluster(params.train.threads) as address:
            executor = ExecutorParams(kind="ray", workers=2, address=address)
            ok, lines = run_smoke_training(Path(tmp) / "ray-cluster", executor, params, stores, layout)
            print("\n".join(f"{'ray, 2 nodes':<13} {line}" for line in lines), flush=True)
            status |= not ok
    return status


if __name__ == "__main__":
    sys.exit(main())
